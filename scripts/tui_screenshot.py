"""Write an SVG screenshot of the chat TUI (100x30) for the README: app/tui/screenshot.svg.

A short chat with the default model in a 256-token cache, so the context map shows: the first turns
dimmed above the divider that says how many tokens left the window.

    python scripts/tui_screenshot.py [--out PATH]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from edgechat.app.store import Store
from edgechat.app.tui.app import EdgechatApp
from edgechat.models.resolve import resolve
from edgechat.runtime import load

ROOT = Path(__file__).resolve().parent.parent
SIZE = (100, 30)
QUESTIONS = ["Tell me about the sun.", "And the moon?", "What about Mars?", "And Jupiter?",
             "And Saturn?"]


def chat_args() -> argparse.Namespace:
    return argparse.Namespace(model=None, backend="auto", threads=None, ctx=256, sinks=4,
                              pin_system=False, gpu_layers=0, system="You are a friendly astronomy tutor.",
                              temp=0.0, top_k=None, top_p=None, min_p=None, repeat_penalty=None,
                              seed=None, max_tokens=40, verbose=False)


async def take(out: Path) -> None:
    args = chat_args()
    engine = load(resolve(None), ctx=args.ctx)
    store = Store(None)
    for title in ("Trip to Lisbon", "Rust lifetimes", "Sourdough schedule"):
        store.add_message(store.create_chat(title).id, "user", title)
    app = EdgechatApp(args, store, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        for question in QUESTIONS:
            app.query_one("#prompt").value = question
            await pilot.press("enter")
            while app.reply is not None:
                await pilot.pause(0.05)
            if any(v.window == "evicted" for v in app.transcript.views):
                break
        await pilot.pause(0.2)
        app.transcript.scroll_to_center(app.query_one("#window-divider"), animate=False)
        await pilot.pause(0.2)
        app.save_screenshot(str(out.name), path=str(out.parent))
    engine.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "app" / "tui" / "screenshot.svg")
    out = parser.parse_args().out.resolve()
    start = time.monotonic()
    asyncio.run(take(out))
    print(f"wrote {out} in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
