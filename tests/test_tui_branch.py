"""Editing a sent message and its branches in the TUI: ``e`` on a focused message of yours writes it
again as a new branch and regenerates the reply, the earlier branch is kept; ``<``/``>`` and /branch N
show the branches ("1/2" on the message); keys act on the focused message, never on the input; the
branch shown is kept across a restart. On the real default model: going back to a branch of a
1,500-token chat restores its KV snapshot (only the new turn is read), and without the snapshot the
engine rolls back and re-reads it (both times printed)."""
from __future__ import annotations

import pytest

from edgechat.app.store import open_store
from edgechat.app.tui.app import EdgechatApp
from edgechat.app.tui.screens import EditScreen
from edgechat.app.tui.widgets import StatusBar
from test_tui_kv import LONG, NEW_TURN_MAX, WINDOW_MIN          # the 1,500-token chat of the snapshot test
from tui_support import engine_fixture, load_engine, make_args, send, wait_reply, wait_until

pytestmark = pytest.mark.asyncio
SIZE = (100, 32)
RE_READ = ("rolled back: read ", "rebuilt: re-read ")   # the status bar after a switch, not restored
engine = engine_fixture(ctx=2048)


def shown(app) -> list[tuple[str, str]]:
    return [(v.role, v.content) for v in app.transcript.views]


def role_line(app, content: str) -> str:
    view = next(v for v in app.transcript.views if v.content == content)
    return str(view.query_one(".role").render())


async def test_edit_makes_a_branch_and_the_keys_switch_between_them(engine, db):
    app = EdgechatApp(make_args(max_tokens=6), open_store(db), engine=engine, volatile=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "one")
        await send(app, pilot, "two")
        first_branch = shown(app)
        prompt = app.query_one("#prompt")
        await pilot.press(*"e<>")                            # typed into the input: no edit, no switch
        assert prompt.value == "e<>" and shown(app) == first_branch
        prompt.value = ""
        app.transcript.views[2].focus()                      # "two"
        await pilot.press("e")
        assert isinstance(app.screen, EditScreen)
        app.screen.query_one("#edit-text").text = "two, edited"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.reply is not None or len(app.transcript.views) == 4, timeout=30)
        await wait_reply(app, pilot)
        assert shown(app)[:3] == first_branch[:2] + [("user", "two, edited")]
        assert shown(app)[3][1].startswith("You asked: two, edited")
        assert role_line(app, "two, edited").endswith("‹ 2/2 ›")
        assert role_line(app, "one") == "You"                           # no branches there
        app.transcript.views[2].focus()
        await pilot.press("less_than_sign")
        await wait_until(pilot, lambda: shown(app) == first_branch, timeout=10)
        assert role_line(app, "two").endswith("‹ 1/2 ›") and app.focused.content == "two"
        await pilot.press("greater_than_sign")
        await wait_until(pilot, lambda: shown(app)[2] == ("user", "two, edited"), timeout=10)
        prompt.focus()
        await send(app, pilot, "/branch 1", wait=False)
        await wait_until(pilot, lambda: shown(app) == first_branch, timeout=10)
        await send(app, pilot, "/edit three")                           # edits the last message of yours
        assert [c for r, c in shown(app) if r == "user"] == ["one", "three"]
        chat_id = app.chat.id
    app.store.close()
    assert [m.content for m in open_store(db).messages(chat_id) if m.role == "user"] == ["one", "three"]

    app = EdgechatApp(make_args(max_tokens=6), open_store(db), engine=engine, volatile=False)
    async with app.run_test(size=SIZE) as pilot:                        # after a restart
        await app._switch_to(chat_id)
        await wait_until(pilot, lambda: app.chat.id == chat_id, timeout=10)
        assert [c for r, c in shown(app) if r == "user"] == ["one", "three"]
        assert role_line(app, "three").endswith("‹ 3/3 ›")
    app.store.close()


def ttft(app) -> float:
    return app.last_stats["restore_s"] + app.last_stats["ttft_s"]


async def test_going_back_to_a_branch_restores_its_snapshot_or_re_reads_it(db):
    real = load_engine(ctx=2048)
    app = EdgechatApp(make_args(max_tokens=8), open_store(db), engine=real, volatile=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            chat = app.store.create_chat("Harbour notes")
            long_message = app.store.add_message(chat.id, "user", LONG)
            app.store.add_message(chat.id, "assistant", "I have read your notes.")
            await app._switch_to(chat.id)
            await send(app, pilot, "Thanks.")                           # branch A, its snapshot written
            assert app.last_stats["prompt_tokens"] >= WINDOW_MIN
            await app.edit_message(long_message.id, "A short question instead.")   # branch B
            await wait_reply(app, pilot)
            status = app.query_one(StatusBar)
            assert status.kv_note.startswith(RE_READ)

            await app.show_branch(long_message.id)                      # back to A: its snapshot
            await send(app, pilot, "Good.")
            assert status.kv_note == "restored" and app.last_stats["prompt_tokens"] <= NEW_TURN_MAX
            assert status.cache.used >= WINDOW_MIN
            restored = ttft(app)

            siblings = app.store.siblings(long_message.id)
            await app.show_branch(siblings[1])                          # B (restored) and a turn there
            await send(app, pilot, "More.")
            a_leaf = app.store.messages(chat.id)                        # (B's messages)
            app.host.snapshots.delete(chat.id)                          # no snapshot of A left
            await app.show_branch(long_message.id)
            await send(app, pilot, "Again.")
            assert status.kv_note.startswith(RE_READ)
            assert app.last_stats["prompt_tokens"] >= WINDOW_MIN and a_leaf
            re_read = ttft(app)
            assert [m.content for m in app.store.messages(chat.id)][:2] == [LONG, "I have read your notes."]
        app.store.close()
    finally:
        real.close()
    print(f"back to a branch of a {WINDOW_MIN:,}+ token chat: restored {restored:.3f} s, "
          f"re-read {re_read:.3f} s ({re_read / restored:.1f}x)")


async def test_regenerate_keeps_the_old_reply_as_a_branch(engine, db):
    """Ctrl+R (or /regen) answers your last message again; the reply it replaces stays beside it
    ("2/2" on the new one), ``<`` shows it again, and a restart keeps both."""
    app = EdgechatApp(make_args(max_tokens=6), open_store(db), engine=engine, volatile=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "one")
        await send(app, pilot, "two")
        first = app.history[-1].id
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: app.reply is not None or app.history[-1].id != first, timeout=30)
        await wait_reply(app, pilot)
        second = app.history[-1].id
        assert second != first and [m.role for m in app.history] == ["user", "assistant"] * 2
        assert app.store.siblings(second) == [first, second]
        assert app.transcript.views[-1].branch == (2, 2)
        await send(app, pilot, "/regen")
        third = app.history[-1].id
        assert app.store.siblings(third) == [first, second, third] and app.transcript.views[-1].branch == (3, 3)
        app.transcript.views[-1].focus()
        await pilot.press("less_than_sign")
        await wait_until(pilot, lambda: app.history[-1].id == second, timeout=10)
        assert app.transcript.views[-1].branch == (2, 3) and app.focused.message_id == second
        chat_id = app.chat.id
    app.store.close()
    store = open_store(db)
    assert store.messages(chat_id)[-1].id == second                     # the branch shown is kept
    assert len(store.messages(chat_id)) == 4
    store.close()
