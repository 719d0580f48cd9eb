"""Helpers for the TUI tests: CLI-like arguments, a real engine, and driving the app with a Pilot."""
from __future__ import annotations

import argparse
import time

from edgechat.runtime import load

REPLY_TIMEOUT_S = 180


def make_args(**overrides) -> argparse.Namespace:
    """The Namespace app/cli.py passes to run_tui: greedy, short replies unless overridden."""
    args = dict(model=None, backend="auto", threads=None, ctx=2048, sinks=4, pin_system=False,
                gpu_layers=0, system=None, temp=0.0, top_k=None, top_p=None, min_p=None,
                repeat_penalty=None, seed=None, max_tokens=16, verbose=False)
    args.update(overrides)
    return argparse.Namespace(**args)


def load_engine(ctx: int):
    """The real default model (packaged SmolLM2-135M) with a cache of ``ctx`` tokens."""
    return load(None, ctx=ctx)


async def wait_reply(app, pilot, timeout: float = REPLY_TIMEOUT_S) -> None:
    """Wait until the reply in progress (if any) is finished and drawn."""
    start = time.monotonic()
    while app.reply is not None:
        assert time.monotonic() - start < timeout, "the reply did not finish in time"
        await pilot.pause(0.05)
    await pilot.pause()


async def send(app, pilot, text: str, wait: bool = True) -> None:
    """Type ``text`` into the input key by key, submit it, and (by default) wait for the reply.

    With ``wait=False`` the input's submit action runs instead of an Enter key press: a Pilot key
    press waits until the process is idle (up to 1 s), and a reply keeps it busy.
    """
    prompt = app.query_one("#prompt")
    prompt.focus()
    await pilot.press(*text)
    if wait:
        await pilot.press("enter")
        await wait_reply(app, pilot)
    else:
        await prompt.action_submit()
        await wait_until(pilot, lambda: prompt.value == "", timeout=10)   # the app has taken it
        await pilot.pause(0)                                             # and finished handling it


async def start_reply(app, pilot, text: str):
    """Send ``text`` and return the Reply once its first piece is drawn."""
    await send(app, pilot, text, wait=False)
    reply = app.reply
    await wait_until(pilot, lambda: reply.view.markdown.source)
    return reply


async def wait_until(pilot, condition, timeout: float = REPLY_TIMEOUT_S) -> None:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        await pilot.pause(0.02)


def check_context_map(app, stored: list[str]) -> None:
    """Turns before the divider have left the window and are dimmed; the rest are not; none is lost.

    Args:
        app: the running EdgechatApp, after a reply that made the cache evict.
        stored: the contents of the chat's messages in the database, in order.
    """
    from edgechat.app.tui.widgets import ContextDivider
    cache = app.status.cache
    views = [v for v in app.transcript.views if v.role != "system"]
    divider = app.query_one(ContextDivider)
    children = list(app.transcript.children)
    assert cache["evicted"] > 0 and divider.display
    text = str(divider.render())
    assert f"{cache['evicted']:,} tokens" in text and "attention sinks" in text
    above = [v for v in views if children.index(v) < children.index(divider)]
    below = [v for v in views if children.index(v) > children.index(divider)]
    assert above and below
    assert all(v.window in ("evicted", "sinks") and v.has_class("-evicted") for v in above)
    assert all(v.window in (None, "partial") and not v.has_class("-evicted") for v in below)
    assert below[-1].window is None
    assert [v.content for v in views] == stored          # nothing silently dropped
