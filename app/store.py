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
from .store_schema import SCHEMA_VERSION, StoreProblem, chat_row, connect, memory, message_row

__all__ = ["SCHEMA_VERSION", "Chat", "Message", "Store", "StoreProblem", "open_store"]

DB_NAME = DB_FILE
LEAF = object()          # add_message's default parent: the last message of the branch shown

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
    leaf: int | None = None          # the last message of the branch shown


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
    parent: int | None = None        # the message it follows (None: the chat's first)


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
        self._conn = connect(path) if path is not None else memory()
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
        return [Chat(*chat_row(r)) for r in rows]

    def get_chat(self, chat_id: int) -> Chat | None:
        row = self._conn.execute("SELECT * FROM chats WHERE id = ?", (chat_id,)).fetchone()
        return Chat(*chat_row(row)) if row else None

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
        """The branch the chat shows, first message first (its leaf and the messages it follows)."""
        rows = self._conn.execute(
            "WITH RECURSIVE path(id) AS (SELECT leaf_id FROM chats WHERE id = ? "
            "UNION ALL SELECT m.parent_id FROM messages m JOIN path ON m.id = path.id "
            "WHERE m.parent_id IS NOT NULL) "
            "SELECT messages.* FROM messages JOIN path ON messages.id = path.id ORDER BY messages.id",
            (chat_id,)).fetchall()
        return [Message(*message_row(r)) for r in rows]

    def add_message(self, chat_id: int, role: str, content: str, finish: str | None = None,
                    stats: dict | None = None, created: float | None = None, parent=LEAF) -> Message:
        """Add a message after ``parent`` (default: the end of the branch shown; None: as the chat's
        first message, a new branch beside it) and commit it at once; it ends the branch shown and
        the chat becomes the most recent. ``created``: when it was written (default: now)."""
        now = time.time() if created is None else created
        if parent is LEAF:
            parent = self._conn.execute("SELECT leaf_id FROM chats WHERE id = ?", (chat_id,)).fetchone()
            parent = parent[0] if parent else None
        cur = self._write(
            "INSERT INTO messages (chat_id, role, content, finish, stats, created, parent_id) "
            "VALUES (?,?,?,?,?,?,?)",
            (chat_id, role, content, finish, json.dumps(stats) if stats is not None else None, now, parent),
            ("UPDATE chats SET updated = ?, leaf_id = last_insert_rowid() WHERE id = ?", (now, chat_id)))
        return Message(cur.lastrowid, chat_id, role, content, finish, stats, now, parent)

    def delete_message(self, message_id: int) -> None:
        """Delete a message and the branches that follow it; a chat that showed it shows its parent."""
        self._write("UPDATE chats SET leaf_id = (SELECT parent_id FROM messages WHERE id = ?) "
                    "WHERE leaf_id = ?", (message_id, message_id),
                    ("DELETE FROM messages WHERE id = ?", (message_id,)))

    def clear_messages(self, chat_id: int) -> None:
        self._write("DELETE FROM messages WHERE chat_id = ?", (chat_id,),
                    ("UPDATE chats SET leaf_id = NULL WHERE id = ?", (chat_id,)))

    # branches ------------------------------------------------------------------------------------
    def siblings(self, message_id: int) -> list[int]:
        """The messages that follow the same message as ``message_id`` (its branches), oldest first."""
        rows = self._conn.execute(
            "SELECT s.id FROM messages s JOIN messages m ON m.id = ? "
            "WHERE s.chat_id = m.chat_id AND s.parent_id IS m.parent_id ORDER BY s.id",
            (message_id,)).fetchall()
        return [r[0] for r in rows]

    def show_branch(self, message_id: int) -> None:
        """Show the branch through ``message_id``: it and, after it, the latest message at each step."""
        leaf = message_id
        while True:
            row = self._conn.execute("SELECT max(id) FROM messages WHERE parent_id = ?", (leaf,)).fetchone()
            if row[0] is None:
                break
            leaf = row[0]
        self._write("UPDATE chats SET leaf_id = ? WHERE id = (SELECT chat_id FROM messages WHERE id = ?)",
                    (leaf, message_id))

    def end_branch_at(self, message_id: int) -> None:
        """Show the branch up to ``message_id``: it ends the branch shown (the next message added
        follows it); the messages after it stay, as branches."""
        self._write("UPDATE chats SET leaf_id = ? WHERE id = (SELECT chat_id FROM messages WHERE id = ?)",
                    (message_id, message_id))

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
        return [(self.get_chat(m.chat_id), m) for m in (Message(*message_row(r)) for r in rows)]

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
        mem = memory(schema=False)
        try:
            self._conn.backup(mem)
        except sqlite3.Error:
            mem.close()
            mem = memory()
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


