"""The chat database's schema, its migrations, and opening a file safely (``store.py`` uses it).

Version 2 (branches): a message names the message it follows (``parent_id``; NULL for a chat's first),
so an edited message starts a branch beside the old one, and a chat names the last message of the
branch it shows (``leaf_id``). The migration from version 1 makes each message follow the one before it
in its chat and each chat show its latest message: every chat reads as it did.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from . import leases

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE chats (
    id       INTEGER PRIMARY KEY,
    title    TEXT NOT NULL,
    model    TEXT NOT NULL DEFAULT '',      -- as given to runtime.load; '' = the packaged default
    system   TEXT NOT NULL DEFAULT '',      -- system prompt
    settings TEXT NOT NULL DEFAULT '{}',    -- JSON: sampling settings, pin_system
    created  REAL NOT NULL,
    updated  REAL NOT NULL,
    leaf_id  INTEGER                        -- the last message of the branch shown (NULL: none)
);
CREATE TABLE messages (
    id      INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    role    TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL,
    finish  TEXT,                           -- replies: 'stop' | 'length' | 'cancelled'
    stats   TEXT,                           -- replies: JSON of runtime.events.Stats
    created REAL NOT NULL,
    parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE   -- the message it follows
);
CREATE INDEX messages_by_chat ON messages (chat_id, id);
CREATE INDEX messages_by_parent ON messages (parent_id);
"""

# version -> the statements that bring a database of that version to the next one
MIGRATIONS = {
    1: """
ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE;
UPDATE messages SET parent_id = (SELECT max(p.id) FROM messages p
                                 WHERE p.chat_id = messages.chat_id AND p.id < messages.id);
ALTER TABLE chats ADD COLUMN leaf_id INTEGER;
UPDATE chats SET leaf_id = (SELECT max(m.id) FROM messages m WHERE m.chat_id = chats.id);
CREATE INDEX messages_by_parent ON messages (parent_id);
""",
}


class StoreProblem(Exception):
    """Why the database file cannot be used; the text is shown to the user as is."""


def connect(path: Path) -> sqlite3.Connection:
    """Open and check the file before anything writes to it; create the schema in a new file and
    migrate an older one (in one transaction: a failed migration leaves the file as it was)."""
    conn = sqlite3.connect(path, timeout=5.0)
    try:
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise StoreProblem(broken(path, str(e))) from None
        if ok != "ok":
            raise StoreProblem(broken(path, f"integrity check: {ok}"))
        if version > SCHEMA_VERSION:
            raise StoreProblem(
                f"Chat history {path} was written by a newer edgechat (schema {version}; this one "
                f"reads {SCHEMA_VERSION}). It was left untouched; chats are kept in memory for this "
                "session. Upgrade edgechat to see them.")
        if version == 0 and tables:
            raise StoreProblem(broken(path, "not an edgechat database"))
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        if version == 0:
            with conn:
                create(conn)
        elif version < SCHEMA_VERSION:
            migrate(conn, version, path)
        add_leases(conn)
        return conn
    except BaseException:
        conn.close()
        raise


def migrate(conn: sqlite3.Connection, version: int, path: Path) -> None:
    """Bring a database of ``version`` to ``SCHEMA_VERSION``, all steps in one transaction."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        for v in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[v].split(";\n"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.commit()
    except sqlite3.Error as e:
        conn.rollback()
        raise StoreProblem(f"Chat history {path} (schema {version}) could not be upgraded to schema "
                           f"{SCHEMA_VERSION} ({e}). It was left untouched; chats are kept in memory "
                           "for this session.") from None


def memory(schema: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA foreign_keys = ON")
    if schema:
        create(conn)
    return conn


def create(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA + leases.SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def add_leases(conn: sqlite3.Connection) -> None:
    """The leases table in a file an earlier edgechat wrote (a read-only file goes on without it:
    its first write falls back to memory anyway)."""
    try:
        conn.executescript(leases.SCHEMA)
    except sqlite3.OperationalError:
        pass


def broken(path: Path, why: str) -> str:
    return (f"Chat history {path} cannot be read ({why}). It was left untouched; chats are kept in "
            "memory for this session. Move the file away to start a new history.")


def chat_row(row: tuple) -> tuple:
    """A ``chats`` row as ``Chat``'s fields."""
    id_, title, model, system, settings, created, updated, leaf = row
    return id_, title, model, system, json.loads(settings or "{}"), created, updated, leaf


def message_row(row: tuple) -> tuple:
    """A ``messages`` row as ``Message``'s fields."""
    id_, chat_id, role, content, finish, stats, created, parent = row
    return id_, chat_id, role, content, finish, json.loads(stats) if stats else None, created, parent
