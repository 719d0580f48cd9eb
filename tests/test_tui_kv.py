"""Saved chats keep their KV cache (app/kv_snapshots.py, the TUI's EngineHost), on the real default
model through Textual's Pilot.

A chat whose window holds 1,500+ tokens is replied to once without a snapshot (re-prefilled: the status
bar says why, the whole window is fed), then after another chat took the engine it is reopened and
replied to again (restored: only the new turn is fed), then again after a restart of the app; deleting
the chat deletes its snapshot. Counts are asserted; times are printed (the machine is shared).
"""
from __future__ import annotations

import pytest

from edgechat.app.store import open_store
from edgechat.app.tui.app import EdgechatApp
from edgechat.app.tui.widgets import StatusBar
from tui_support import load_engine, make_args, send, wait_until

SIZE = (100, 32)
WINDOW_MIN = 1500          # the bar: a window of 1,500+ tokens
NEW_TURN_MAX = 40          # a short new turn with its template scaffolding
pytestmark = pytest.mark.asyncio

LONG = " ".join(f"Note {i}: the harbour keeps its lamps lit through the storms of the northern winter."
                for i in range(110))


@pytest.fixture(scope="module")
def real_engine():
    eng = load_engine(ctx=2048)
    yield eng
    eng.close()


def make_app(engine, db) -> EdgechatApp:
    return EdgechatApp(make_args(max_tokens=8), open_store(db), engine=engine, volatile=False)


def ttft(app) -> float:
    return app.last_stats["restore_s"] + app.last_stats["ttft_s"]


async def open_chat(app, pilot, chat_id: int) -> None:
    await app._switch_to(chat_id)
    await wait_until(pilot, lambda: app.chat.id == chat_id)


async def test_reopened_chat_restores_its_cache(real_engine, db):
    app = make_app(real_engine, db)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        long_chat = app.store.create_chat("Harbour notes")
        app.store.add_message(long_chat.id, "user", LONG)
        app.store.add_message(long_chat.id, "assistant", "I have read your notes.")
        await open_chat(app, pilot, long_chat.id)
        await send(app, pilot, "Thanks.")                     # no snapshot yet: the window is fed whole
        status = app.query_one(StatusBar)
        assert status.kv_note == "re-prefilled (no snapshot)"
        assert app.last_stats["prompt_tokens"] >= WINDOW_MIN
        prefill_ttft = ttft(app)
        snap = app.host.snapshots.path(long_chat.id)
        assert snap.is_file()

        await app.action_new_chat()                            # another chat takes the engine
        await send(app, pilot, "Hi")
        assert status.kv_note == ""                            # a new chat has nothing to restore
        await open_chat(app, pilot, long_chat.id)
        await send(app, pilot, "Good.")
        assert status.kv_note == "restored"
        assert app.last_stats["prompt_tokens"] <= NEW_TURN_MAX and app.last_stats["rebuild_tokens"] == 0
        assert status.cache.used >= WINDOW_MIN
        restored_ttft = ttft(app)
    app.store.close()

    app = make_app(real_engine, db)                            # a restart: the file is all there is
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await open_chat(app, pilot, long_chat.id)
        await send(app, pilot, "Bye.")
        assert app.query_one(StatusBar).kv_note == "restored"
        assert app.last_stats["prompt_tokens"] <= NEW_TURN_MAX
        restart_ttft = ttft(app)
        await app._delete_chat(long_chat.id)
        assert not snap.exists()
    app.store.close()
    print(f"TTFT re-prefill {prefill_ttft:.3f} s, restored {restored_ttft:.3f} s "
          f"({restored_ttft / prefill_ttft:.2f}x), after restart {restart_ttft:.3f} s "
          f"({restart_ttft / prefill_ttft:.2f}x)")
