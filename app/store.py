"""Chat history in sqlite: chats with their settings, and their messages.

The database lives in ``platformdirs.user_data_dir("edgechat")`` (``EDGECHAT_HOME`` overrides it) as
``chats.db``, in WAL mode, with its schema version in ``PRAGMA user_version``. A user message is
committed when it is sent, a reply when it finishes or is stopped. Windows sharing the file each
write their own chats: ``claim`` takes a chat's lease (``leases.py``; the table is an addition an
older edgechat ignores, so the schema version stays).

Nothing here raises on a bad database: a broken file, one written by a newer edgechat, a read-only
directory or a full disk sets ``Store.problem`` to a one-line explanation and the store goes on in
memory, never writing to (or over) the file.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..models.paths import DB_FILE, data_dir
from . import chat_search, leases

SCHEMA_VERSION = 1
DB_NAME = DB_FILE

_SCHEMA = """
CREATE TABLE chats (
    id       INTEGER PRIMARY KEY,
    title    TEXT NOT NULL,
    model    TEXT NOT NULL DEFAULT '',      -- as given to runtime.load; '' = the packaged default
    system   TEXT NOT NULL DEFAULT '',      -- system prompt
    settings TEXT NOT NULL DEFAULT '{}',    -- JSON: sampling settings, pin_system
    created  REAL NOT NULL,
    updated  REAL NOT NULL
);
CREATE TABLE messages (
    id      INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    role    TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL,
    finish  TEXT,                           -- replies: 'stop' | 'length' | 'cancelled'
    stats   TEXT,                           -- replies: JSON of runtime.events.Stats
    created REAL NOT NULL
);
CREATE INDEX messages_by_chat ON messages (chat_id, id);
"""


@dataclass
class Chat:
    """One saved conversation and the settings it runs with."""

    id: int
    title: str
    model: str = ""
    system: str = ""
    settings: dict = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0


@dataclass
class Message:
    """One message of a chat; ``finish`` and ``stats`` are set on replies."""

    id: int
    chat_id: int
    role: str
    content: str
    finish: str | None = None
    stats: dict | None = None
    created: float = 0.0


class StoreProblem(Exception):
    """Why the database file cannot be used; the text is shown to the user as is."""


class Store:
    """Chats and messages in one sqlite connection, used from one thread (the UI's).

    Args:
        path: the database file, or None for a store in memory only.
        problem: why the store is in memory although a file was wanted.
    """

    def __init__(self, path: Path | None = None, problem: str | None = None):
        self.path = path
        self.problem = problem
        self.on_problem: Callable[[str], None] | None = None   # told when a write falls back
        self._conn = _connect(path) if path is not None else _memory()
        self.fts = chat_search.add_index(self._conn)   # False: this sqlite has no FTS5, search uses LIKE
        self._owner = leases.Owner.here()
        self._claimed: set[int] = set()      # chats this store holds the lease of
        self._saved_upto: int | None = None  # the last message id the file holds, after a fall back

    @property
    def in_memory(self) -> bool:
        return self.path is None

    # chats ---------------------------------------------------------------------------------------
    def list_chats(self) -> list[Chat]:
        """All chats, the most recently used first."""
        rows = self._conn.execute("SELECT * FROM chats ORDER BY updated DESC, id DESC").fetchall()
        return [_chat(r) for r in rows]

    def get_chat(self, chat_id: int) -> Chat | None:
        row = self._conn.execute("SELECT * FROM chats WHERE id = ?", (chat_id,)).fetchone()
        return _chat(row) if row else None

    def create_chat(self, title: str = "New chat", model: str = "", system: str = "",
                    settings: dict | None = None) -> Chat:
        now = time.time()
        cur = self._write(
            "INSERT INTO chats (title, model, system, settings, created, updated) VALUES (?,?,?,?,?,?)",
            (title, model, system, json.dumps(settings or {}), now, now))
        return self.get_chat(cur.lastrowid)

    def update_chat(self, chat_id: int, **fields) -> None:
        """Change ``title``, ``model``, ``system`` and/or ``settings`` of a chat."""
        unknown = set(fields) - {"title", "model", "system", "settings"}
        if unknown:
            raise TypeError(f"unknown chat fields: {sorted(unknown)}")
        if "settings" in fields:
            fields["settings"] = json.dumps(fields["settings"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._write(f"UPDATE chats SET {cols}, updated = ? WHERE id = ?",
                    (*fields.values(), time.time(), chat_id))

    def delete_chat(self, chat_id: int) -> None:
        self._write("DELETE FROM chats WHERE id = ?", (chat_id,))

    # messages ------------------------------------------------------------------------------------
    def messages(self, chat_id: int) -> list[Message]:
        rows = self._conn.execute("SELECT * FROM messages WHERE chat_id = ? ORDER BY id",
                                  (chat_id,)).fetchall()
        return [_message(r) for r in rows]

    def add_message(self, chat_id: int, role: str, content: str, finish: str | None = None,
                    stats: dict | None = None, created: float | None = None) -> Message:
        """Append a message and commit it at once; the chat becomes the most recent. ``created``:
        when it was written (default: now)."""
        now = time.time() if created is None else created
        cur = self._write(
            "INSERT INTO messages (chat_id, role, content, finish, stats, created) VALUES (?,?,?,?,?,?)",
            (chat_id, role, content, finish, json.dumps(stats) if stats is not None else None, now),
            ("UPDATE chats SET updated = ? WHERE id = ?", (now, chat_id)))
        return Message(cur.lastrowid, chat_id, role, content, finish, stats, now)

    def delete_message(self, message_id: int) -> None:
        self._write("DELETE FROM messages WHERE id = ?", (message_id,))

    def clear_messages(self, chat_id: int) -> None:
        self._write("DELETE FROM messages WHERE chat_id = ?", (chat_id,))

    def search(self, text: str, limit: int = chat_search.LIMIT) -> list[chat_search.Hit]:
        """Messages of every chat that match ``text``, the newest first (``chat_search``)."""
        return chat_search.search(self._conn, text, self.fts, limit)

    def unsaved(self) -> list[tuple[Chat, Message]]:
        """Messages that are only in memory though a file was wanted (all of them when the file
        could not be opened, those since the fall back when a write failed), oldest first."""
        if not (self.in_memory and self.problem):
            return []
        rows = self._conn.execute("SELECT * FROM messages WHERE id > ? ORDER BY id",
                                  (self._saved_upto or 0,)).fetchall()
        return [(self.get_chat(m.chat_id), m) for m in map(_message, rows)]

    # leases --------------------------------------------------------------------------------------
    def claim(self, chat_id: int) -> int | None:
        """Become the writer of ``chat_id`` unless another live edgechat window is.

        Returns:
            None when this store holds it now, else the pid of the window that does.
        """
        if chat_id in self._claimed:
            return None
        try:
            holder = leases.claim(self._conn, chat_id, self._owner)
        except sqlite3.OperationalError as e:
            self._write_failed(e)                # in memory from now on: nobody else writes there
            holder = None
        if holder is None:
            self._claimed.add(chat_id)
        return holder

    def release(self, chat_id: int) -> None:
        """Let another window write ``chat_id``."""
        if chat_id in self._claimed:
            self._claimed.discard(chat_id)
            try:
                leases.release(self._conn, self._owner, chat_id)
            except sqlite3.OperationalError as e:
                self._write_failed(e)

    def close(self) -> None:
        """Give up this store's leases and close the file."""
        try:
            leases.release(self._conn, self._owner)
        except sqlite3.Error:
            pass
        self._conn.close()

    # writes --------------------------------------------------------------------------------------
    def _write(self, sql: str, params: tuple, *more: tuple[str, tuple]) -> sqlite3.Cursor:
        """Run statements in one transaction; if the file refuses, go on in memory and redo them."""
        try:
            return self._transaction(sql, params, *more)
        except sqlite3.OperationalError as e:      # disk full, read-only, I/O error, locked
            if self.path is None:
                raise
            self._write_failed(e)
            return self._transaction(sql, params, *more)

    def _write_failed(self, e: sqlite3.Error) -> None:
        if self.path is None:
            raise e
        self._fall_back(f"Cannot write chat history to {self.path} ({e}). "
                        "Chats are kept in memory for this session.")

    def _transaction(self, sql: str, params: tuple, *more: tuple[str, tuple]) -> sqlite3.Cursor:
        with self._conn:
            cur = self._conn.execute(sql, params)
            for s, p in more:
                self._conn.execute(s, p)
        return cur

    def _fall_back(self, problem: str) -> None:
        """Copy what the file holds into memory and use that from now on."""
        mem = _memory(schema=False)
        try:
            self._conn.backup(mem)
        except sqlite3.Error:
            mem.close()
            mem = _memory()
        self._conn.close()
        self._conn = mem
        self.fts = chat_search.add_index(mem)
        self._saved_upto = mem.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0]
        self.path = None
        self.problem = problem
        if self.on_problem:
            self.on_problem(problem)


def open_store(path: Path | str | None = None) -> Store:
    """Open the chat database (default: ``data_dir()/chats.db``); never raises for file problems.

    Returns:
        A ``Store`` on the file, or in memory with ``problem`` saying why the file is not used.
    """
    path = Path(path) if path is not None else data_dir() / DB_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Store(path)
    except StoreProblem as e:
        problem = str(e)
    except (sqlite3.Error, OSError) as e:
        problem = (f"Cannot open chat history {path} ({e}); is the directory read-only or the disk "
                   "full? Chats are kept in memory for this session.")
    return Store(None, problem=problem)


# helpers -----------------------------------------------------------------------------------------
def _connect(path: Path) -> sqlite3.Connection:
    """Open and check the file before anything writes to it; create the schema in a new file."""
    conn = sqlite3.connect(path, timeout=5.0)
    try:
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise StoreProblem(_broken(path, str(e))) from None
        if ok != "ok":
            raise StoreProblem(_broken(path, f"integrity check: {ok}"))
        if version > SCHEMA_VERSION:
            raise StoreProblem(
                f"Chat history {path} was written by a newer edgechat (schema {version}; this one "
                f"reads {SCHEMA_VERSION}). It was left untouched; chats are kept in memory for this "
                "session. Upgrade edgechat to see them.")
        if version == 0 and tables:
            raise StoreProblem(_broken(path, "not an edgechat database"))
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        if version == 0:
            with conn:
                _create(conn)
        _add_leases(conn)
        return conn
    except BaseException:
        conn.close()
        raise


def _memory(schema: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA foreign_keys = ON")
    if schema:
        _create(conn)
    return conn


def _create(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA + leases.SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _add_leases(conn: sqlite3.Connection) -> None:
    """The leases table in a file an earlier edgechat wrote (a read-only file goes on without it:
    its first write falls back to memory anyway)."""
    try:
        conn.executescript(leases.SCHEMA)
    except sqlite3.OperationalError:
        pass


def _broken(path: Path, why: str) -> str:
    return (f"Chat history {path} cannot be read ({why}). It was left untouched; chats are kept in "
            "memory for this session. Move the file away to start a new history.")


def _chat(row: tuple) -> Chat:
    id_, title, model, system, settings, created, updated = row
    return Chat(id_, title, model, system, json.loads(settings or "{}"), created, updated)


def _message(row: tuple) -> Message:
    id_, chat_id, role, content, finish, stats, created = row
    return Message(id_, chat_id, role, content, finish, json.loads(stats) if stats else None, created)
