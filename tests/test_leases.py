"""Two windows on one history: chat leases between stores (in this process and in others, live and
dead), the TUI with a chat another window writes (read only, caught up when it is reopened or
written), a prompt beyond the window told in the TUI, and the reminder of unsaved messages."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from edgechat.app import leases
from edgechat.app.store import open_store
from edgechat.app.tui.app import EdgechatApp, unsaved_reminder
from tui_support import make_args, scripted_engine, send, wait_reply, wait_until

SIZE = (100, 32)


def holder_process(db, chat_id: int) -> subprocess.Popen:
    """Another process that claims ``chat_id`` in ``db``, says so, and waits."""
    code = textwrap.dedent(f"""
        import sys, time
        from edgechat.app.store import open_store
        store = open_store({str(db)!r})
        assert store.claim({chat_id}) is None
        print("held", flush=True)
        time.sleep(120)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_two_stores_never_both_hold_a_chat(db):
    a, b = open_store(db), open_store(db)
    chat = a.create_chat("c")
    assert a.claim(chat.id) is None and a.claim(chat.id) is None      # holding it again is fine
    assert b.claim(chat.id) == a._owner.pid                           # b is told who holds it
    a.release(chat.id)
    assert b.claim(chat.id) is None and a.claim(chat.id) == b._owner.pid
    b.close()                                                          # closing lets go of all
    assert a.claim(chat.id) is None
    a.close()
    assert sqlite3.connect(db).execute("SELECT count(*) FROM leases").fetchone() == (0,)


def test_a_live_process_holds_its_chat_and_a_killed_one_does_not(db):
    store = open_store(db)
    chat = store.create_chat("c")
    other = holder_process(db, chat.id)
    try:
        assert store.claim(chat.id) == other.pid
    finally:
        other.kill()                          # SIGKILL: its lease stays in the file, stale
        other.wait()
    assert sqlite3.connect(db).execute("SELECT pid FROM leases").fetchall() == [(other.pid,)]
    assert store.claim(chat.id) is None
    store.close()


def test_a_lease_whose_pid_now_names_another_process_is_stale(db):
    store = open_store(db)
    chat = store.create_chat("c")
    conn = sqlite3.connect(db)
    with conn:                                # this process's pid, but not this process's start time
        conn.execute("INSERT INTO leases VALUES (?, 'gone', ?, 0.0)", (chat.id, store._owner.pid))
    assert not leases.alive(store._owner.pid, 0.0)
    assert store.claim(chat.id) is None
    conn.close()
    store.close()


def test_a_database_from_before_leases_gets_the_table(db):
    from test_store import V1_SCHEMA
    conn = sqlite3.connect(db)
    conn.executescript(V1_SCHEMA)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    store = open_store(db)
    chat = store.create_chat("c")
    assert store.problem is None and store.claim(chat.id) is None
    store.close()


@pytest.mark.asyncio
async def test_a_chat_another_window_writes_is_read_only_and_caught_up(db):
    engine = scripted_engine(ctx=2048)
    other = open_store(db)                    # the other window
    theirs = other.create_chat("Theirs")
    other.claim(theirs.id)
    other.add_message(theirs.id, "user", "first question")
    other.add_message(theirs.id, "assistant", "first answer", finish="stop")
    app = EdgechatApp(make_args(), open_store(db), engine=engine, volatile=False)
    told = []
    async with app.run_test(size=SIZE) as pilot:
        notify = app.notify
        app.notify = lambda message, **kw: (told.append(message), notify(message, **kw))
        mine = app.chat.id
        assert mine != theirs.id and app.history == []             # its own new chat
        await app._switch_to(theirs.id)
        assert [m.content for m in app.history] == ["first question", "first answer"]
        await send(app, pilot, "may I?")
        assert any("open in another edgechat window" in m for m in told)
        assert app.query_one("#prompt").value == "may I?"           # kept, not sent
        other.add_message(theirs.id, "user", "second question")      # the other window goes on
        await app._switch_to(mine)
        await app._switch_to(theirs.id)                               # reopened: it shows it
        assert [m.content for m in app.history][-1] == "second question"
        other.add_message(theirs.id, "assistant", "second answer", finish="stop")
        other.release(theirs.id)                                      # the other window left it
        app.query_one("#prompt").value = ""
        await send(app, pilot, "now me")
        await wait_reply(app, pilot)
        contents = [m.content for m in other.messages(theirs.id)]
        assert contents[:5] == ["first question", "first answer", "second question", "second answer", "now me"]
        assert len(contents) == 6 and [m.content for m in app.history] == contents
        assert other.claim(theirs.id) == app.store._owner.pid          # it writes there now
    other.close()
    engine.close()


@pytest.mark.asyncio
async def test_a_chat_deleted_in_another_window_is_not_written(db):
    engine = scripted_engine(ctx=2048)
    app = EdgechatApp(make_args(), open_store(db), engine=engine, volatile=False)
    told = []
    async with app.run_test(size=SIZE) as pilot:
        notify = app.notify
        app.notify = lambda message, **kw: (told.append(message), notify(message, **kw))
        await send(app, pilot, "hello")
        app.store.release(app.chat.id)                 # as if another window had taken it over,
        other = open_store(db)
        other.delete_chat(app.chat.id)                 # and deleted it
        other.close()
        await send(app, pilot, "still there?")
        assert any("deleted in another edgechat window" in m for m in told)
        assert app.query_one("#prompt").value == "still there?"
    engine.close()
    assert sqlite3.connect(db).execute("SELECT count(*) FROM messages").fetchone() == (0,)


@pytest.mark.asyncio
async def test_a_prompt_beyond_the_window_is_told_in_the_tui(db):
    engine = scripted_engine(ctx=256)
    app = EdgechatApp(make_args(ctx=256), open_store(db), engine=engine, volatile=False)
    told = []
    async with app.run_test(size=SIZE) as pilot:
        notify = app.notify
        app.notify = lambda message, **kw: (told.append((message, kw.get("title"))), notify(message, **kw))
        app.query_one("#prompt").value = "word " * 600
        await app.query_one("#prompt").action_submit()
        await wait_until(pilot, lambda: told)
        await wait_reply(app, pilot)
    engine.close()
    message, title = told[0]
    assert title == "Longer than the window"
    assert message.startswith("The prompt is ") and "the window (--ctx) holds 256" in message


def test_the_reminder_names_the_messages_a_failed_save_kept_in_memory(db):
    store = open_store(db)
    chat = store.create_chat("Kept chat")
    store.add_message(chat.id, "user", "on disk")
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")     # the file cannot grow: SQLITE_FULL
    store.add_message(chat.id, "assistant", "only in memory " + "x" * 100_000, finish="stop")
    store.add_message(chat.id, "user", "also only in memory")
    lost = store.unsaved()
    assert [m.content[:14] for _, m in lost] == ["only in memory", "also only in m"]
    text = unsaved_reminder(store.problem, lost)
    store.close()
    lines = text.splitlines()
    assert "database or disk is full" in lines[0] and "these 2 messages" in lines[1]
    assert lines[2].startswith("  “Kept chat”, assistant: only in memory xxx") and lines[2].endswith("…")
    assert lines[3] == "  “Kept chat”, you: also only in memory"
    assert open_store(db).messages(chat.id)[-1].content == "on disk"     # the file has the rest
