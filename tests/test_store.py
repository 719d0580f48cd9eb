"""The chat store: commit points, schema version, and every way the database file can be unusable."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgechat.app.store import DB_NAME, SCHEMA_VERSION, open_store


# the chat database as edgechat wrote it before branches (schema version 1, commit f9aa0f0), kept
# verbatim: the migration is tested on files written with it
V1_SCHEMA = """
CREATE TABLE chats (
    id       INTEGER PRIMARY KEY,
    title    TEXT NOT NULL,
    model    TEXT NOT NULL DEFAULT '',
    system   TEXT NOT NULL DEFAULT '',
    settings TEXT NOT NULL DEFAULT '{}',
    created  REAL NOT NULL,
    updated  REAL NOT NULL
);
CREATE TABLE messages (
    id      INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    role    TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL,
    finish  TEXT,
    stats   TEXT,
    created REAL NOT NULL
);
CREATE INDEX messages_by_chat ON messages (chat_id, id);
"""


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / DB_NAME


def peek(path: Path, sql: str, *params) -> list[tuple]:
    """Read through a second connection: only committed rows are visible."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_new_database_is_wal_and_versioned(db):
    store = open_store(db)
    assert store.problem is None and not store.in_memory
    assert peek(db, "PRAGMA journal_mode") == [("wal",)]
    assert peek(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    store.close()


def test_default_location_follows_edgechat_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECHAT_HOME", str(tmp_path / "home"))
    store = open_store()
    assert store.path == tmp_path / "home" / DB_NAME and store.path.is_file()
    store.close()


def test_each_message_is_committed_when_added(db):
    store = open_store(db)
    chat = store.create_chat("c", model="m", system="be brief", settings={"temp": 0.0, "pin_system": True})
    store.add_message(chat.id, "user", "hello")
    # the user message is on disk before any reply exists
    assert peek(db, "SELECT role, content, finish FROM messages") == [("user", "hello", None)]
    store.add_message(chat.id, "assistant", "partial", finish="cancelled", stats={"decode_tps": 9.5})
    rows = peek(db, "SELECT role, content, finish, stats FROM messages ORDER BY id")
    assert rows[1][:3] == ("assistant", "partial", "cancelled")
    assert json.loads(rows[1][3]) == {"decode_tps": 9.5}
    store.close()


def test_chats_keep_their_settings_across_reopen(db):
    store = open_store(db)
    a = store.create_chat("a", model="smollm2-135m", system="sys", settings={"temp": 0.2, "seed": 7})
    b = store.create_chat("b")
    store.add_message(a.id, "user", "x")                  # a becomes the most recent
    store.update_chat(b.id, title="renamed")
    store.add_message(a.id, "assistant", "y", finish="stop")
    store.close()

    store = open_store(db)
    chats = store.list_chats()
    assert [c.title for c in chats] == ["a", "renamed"]
    a2 = chats[0]
    assert (a2.model, a2.system, a2.settings) == ("smollm2-135m", "sys", {"temp": 0.2, "seed": 7})
    assert [(m.role, m.content, m.finish) for m in store.messages(a.id)] == [
        ("user", "x", None), ("assistant", "y", "stop")]
    store.close()


def test_delete_chat_deletes_its_messages_and_clear_keeps_the_chat(db):
    store = open_store(db)
    a, b = store.create_chat("a"), store.create_chat("b")
    for chat in (a, b):
        store.add_message(chat.id, "user", "hi")
    store.delete_chat(a.id)
    store.clear_messages(b.id)
    assert [c.title for c in store.list_chats()] == ["b"]
    assert peek(db, "SELECT count(*) FROM messages") == [(0,)]
    store.close()


def _assert_in_memory_and_working(store):
    assert store.in_memory
    chat = store.create_chat("still works")
    store.add_message(chat.id, "user", "hello")
    assert [m.content for m in store.messages(chat.id)] == ["hello"]


def test_broken_file_is_left_untouched(db):
    garbage = b"this is not a database\n" * 100
    db.write_bytes(garbage)
    store = open_store(db)
    assert store.problem and str(db) in store.problem and "left untouched" in store.problem
    _assert_in_memory_and_working(store)
    store.close()
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in db.parent.iterdir()) == [DB_NAME]    # no -wal/-shm either


def test_truncated_database_is_left_untouched(db):
    store = open_store(db)
    chat = store.create_chat("c")
    for i in range(300):
        store.add_message(chat.id, "user", f"message {i} " * 20)
    store.close()
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    broken = db.read_bytes()
    store = open_store(db)
    assert store.problem and "cannot be read" in store.problem
    _assert_in_memory_and_working(store)
    store.close()
    assert db.read_bytes() == broken


def test_newer_schema_is_not_touched(db):
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE chats (id INTEGER PRIMARY KEY, future_column TEXT)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    store = open_store(db)
    assert store.problem and "newer edgechat" in store.problem
    assert f"schema {SCHEMA_VERSION + 1}" in store.problem
    _assert_in_memory_and_working(store)
    store.close()
    assert db.read_bytes() == before
    assert peek(db, "PRAGMA journal_mode") == [("delete",)]     # WAL was not switched on


def test_someone_elses_database_is_not_touched(db):
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE recipes (name TEXT)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    store = open_store(db)
    assert store.problem and "not an edgechat database" in store.problem
    store.close()
    assert db.read_bytes() == before


_CHILD = """
import json, sys
from edgechat.app.store import open_store
store = open_store(sys.argv[1])
chat = store.create_chat("in memory")
store.add_message(chat.id, "user", "hello")
print(json.dumps({"in_memory": store.in_memory, "problem": store.problem,
                  "messages": len(store.messages(chat.id))}))
"""


def test_read_only_directory_keeps_the_chat_in_memory(tmp_path):
    """The store runs in a child process; as root, the child loses the capability to ignore modes."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root ignores directory modes and setpriv (util-linux) is missing")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    try:
        out = subprocess.run([*prefix, sys.executable, "-c", _CHILD, str(ro / DB_NAME)],
                             capture_output=True, text=True, timeout=60)
    finally:
        ro.chmod(0o755)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["in_memory"] and result["messages"] == 1
    assert "Cannot open chat history" in result["problem"] and "in memory" in result["problem"]
    assert list(ro.iterdir()) == []


def test_full_disk_mid_session_goes_on_in_memory(db):
    store = open_store(db)
    told = []
    store.on_problem = told.append
    chat = store.create_chat("c")
    store.add_message(chat.id, "user", "kept")
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")     # the file cannot grow: SQLITE_FULL
    store.add_message(chat.id, "assistant", "x" * 100_000, finish="stop")
    assert store.in_memory and told == [store.problem]
    assert "database or disk is full" in store.problem and "in memory" in store.problem
    # what was on disk came along, and the write that failed was redone in memory
    assert [m.content[:4] for m in store.messages(chat.id)] == ["kept", "xxxx"]
    store.add_message(chat.id, "user", "next turn")
    assert len(store.messages(chat.id)) == 3
    store.close()
    assert peek(db, "SELECT content FROM messages") == [("kept",)]


def write_v1(path: Path) -> dict[int, list[tuple]]:
    """A version-1 database as edgechat wrote it: three chats with interleaved messages and an empty
    one; returns each chat's (role, content, finish) in order, read back from the file."""
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.execute("PRAGMA user_version = 1")
    with conn:
        for i in range(4):
            conn.execute("INSERT INTO chats (title, settings, created, updated) VALUES (?, '{}', ?, ?)",
                         (f"chat {i}", i, i))
        for n in range(12):                              # chat 1, 2, 3 take turns; chat 4 stays empty
            chat, role = 1 + n % 3, ("user", "assistant")[n // 3 % 2]
            conn.execute("INSERT INTO messages (chat_id, role, content, finish, created) VALUES (?,?,?,?,?)",
                         (chat, role, f"message {n}", "stop" if role == "assistant" else None, n))
    kept = {c: conn.execute("SELECT role, content, finish FROM messages WHERE chat_id = ? ORDER BY id",
                            (c,)).fetchall() for c in range(1, 5)}
    conn.close()
    return kept


def test_a_version_1_database_is_migrated_and_keeps_every_chat(tmp_path):
    original = tmp_path / "v1.db"
    kept = write_v1(original)
    copy = tmp_path / DB_NAME
    shutil.copy(original, copy)
    store = open_store(copy)
    assert store.problem is None and peek(copy, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    chats = {c.id: c for c in store.list_chats()}
    assert sorted(chats) == [1, 2, 3, 4]
    for chat_id, messages in kept.items():
        assert [(m.role, m.content, m.finish) for m in store.messages(chat_id)] == messages
    added = store.add_message(1, "user", "after the upgrade")
    assert store.messages(1)[-1] == added and added.parent == store.messages(1)[-2].id
    assert [h.message_id for h in store.search("upgrade")] == [added.id]     # the index covers it
    store.close()
    assert peek(original, "PRAGMA user_version") == [(1,)]                  # the copy was upgraded only


def test_an_edit_is_a_branch_beside_the_old_one(db):
    store = open_store(db)
    chat = store.create_chat("c")
    u1 = store.add_message(chat.id, "user", "one")
    a1 = store.add_message(chat.id, "assistant", "reply one")
    u2 = store.add_message(chat.id, "user", "two")
    store.add_message(chat.id, "assistant", "reply two")
    edited = store.add_message(chat.id, "user", "two, edited", parent=a1.id)
    store.add_message(chat.id, "assistant", "reply to the edit")
    contents = lambda: [m.content for m in store.messages(chat.id)]          # noqa: E731
    assert contents() == ["one", "reply one", "two, edited", "reply to the edit"]
    assert store.siblings(edited.id) == store.siblings(u2.id) == [u2.id, edited.id]
    assert store.siblings(u1.id) == [u1.id]
    store.show_branch(u2.id)                                               # back to the first branch
    assert contents() == ["one", "reply one", "two", "reply two"]
    first = store.add_message(chat.id, "user", "one, edited", parent=None)   # a new first message
    assert contents() == ["one, edited"] and store.siblings(first.id) == [u1.id, first.id]
    store.show_branch(u1.id)                                               # its latest branch
    assert contents() == ["one", "reply one", "two, edited", "reply to the edit"]
    store.delete_message(store.messages(chat.id)[-1].id)                   # regenerate: the leaf goes
    assert contents() == ["one", "reply one", "two, edited"]
    store.close()
    reopened = open_store(db)                                              # the branch shown is kept
    assert [m.content for m in reopened.messages(chat.id)] == ["one", "reply one", "two, edited"]
    reopened.close()
