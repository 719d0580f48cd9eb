"""Which live edgechat window writes which chat: one lease row per chat in the history database.

Two windows on one history each write their own chat. A window claims the chat it shows; another
window may show that chat too (it reads what is committed), but it cannot write into it while the
holder lives. A lease names its owner (a random id per store, so two stores in one process are two
owners), the owner's pid and that process's start time: a lease whose process has ended (a crash, a
SIGKILL) or whose pid now belongs to another process is stale and is taken over. The check and the
claim run in one ``BEGIN IMMEDIATE`` transaction, so two windows never both win.
"""
from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass

import psutil

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    chat_id INTEGER PRIMARY KEY REFERENCES chats(id) ON DELETE CASCADE,
    owner   TEXT NOT NULL,                  -- the store holding it (random, one per Store)
    pid     INTEGER NOT NULL,               -- its process
    started REAL NOT NULL                   -- that process's start time (a reused pid is not it)
);
"""
START_SLACK_S = 0.5      # psutil's create_time is rounded (jiffies on Linux): same process within this


@dataclass(frozen=True)
class Owner:
    """A store that may hold leases: its id, its process and when that process started."""

    token: str
    pid: int
    started: float

    @classmethod
    def here(cls) -> "Owner":
        p = psutil.Process()
        return cls(uuid.uuid4().hex, p.pid, p.create_time())


def alive(pid: int, started: float) -> bool:
    """True while the process that took a lease still runs (not merely a process with its pid)."""
    try:
        return abs(psutil.Process(pid).create_time() - started) < START_SLACK_S
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:                 # not ours to inspect: assume it lives
        return True


def claim(conn: sqlite3.Connection, chat_id: int, me: Owner) -> int | None:
    """Make ``me`` the writer of ``chat_id`` unless another live owner is.

    Returns:
        None when ``me`` holds it now (or the chat no longer exists), else the holder's pid.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT owner, pid, started FROM leases WHERE chat_id = ?", (chat_id,)).fetchone()
        if row and row[0] != me.token and alive(row[1], row[2]):
            conn.rollback()
            return row[1]
        conn.execute("INSERT OR REPLACE INTO leases (chat_id, owner, pid, started) VALUES (?,?,?,?)",
                     (chat_id, me.token, me.pid, me.started))
        conn.commit()
    except sqlite3.IntegrityError:       # the chat was deleted meanwhile: nobody holds it
        conn.rollback()
    except BaseException:
        conn.rollback()
        raise
    return None


def release(conn: sqlite3.Connection, me: Owner, chat_id: int | None = None) -> None:
    """Give up ``me``'s lease on ``chat_id`` (None: all of them)."""
    with conn:
        if chat_id is None:
            conn.execute("DELETE FROM leases WHERE owner = ?", (me.token,))
        else:
            conn.execute("DELETE FROM leases WHERE chat_id = ? AND owner = ?", (chat_id, me.token))


@dataclass(frozen=True)
class Refusal:
    """Why a window may not write a chat: a notice's title and text."""

    title: str
    text: str


class ChatLeases:
    """The chats one window writes: the one it shows, and those with a reply still to commit; it lets
    go of a chat once neither holds.

    Args:
        store: the chat history (``store.Store``: ``claim``, ``release``, ``get_chat``).
    """

    def __init__(self, store):
        self.store = store
        self.shown: int | None = None
        self._writing: dict[int, int] = {}       # chat id -> replies of it not committed yet

    def show(self, chat_id: int) -> None:
        """The window shows ``chat_id`` now: it holds it unless another window does."""
        left, self.shown = self.shown, chat_id
        if left is not None and left != chat_id:
            self.let_go(left)
        self.store.claim(chat_id)

    def writing(self, chat_id: int) -> None:
        """A reply of ``chat_id`` started: the chat is held until it is committed."""
        self._writing[chat_id] = self._writing.get(chat_id, 0) + 1

    def written(self, chat_id: int) -> None:
        """A reply of ``chat_id`` was committed (or failed)."""
        left = self._writing.get(chat_id, 0) - 1
        if left > 0:
            self._writing[chat_id] = left
        else:
            self._writing.pop(chat_id, None)
        self.let_go(chat_id)

    def let_go(self, chat_id: int) -> None:
        """Release ``chat_id`` unless it is shown or a reply of it is still to be committed."""
        if chat_id != self.shown and not self._writing.get(chat_id):
            self.store.release(chat_id)

    def may_write(self, chat_id: int) -> Refusal | None:
        """None when no other live window writes ``chat_id`` (this one holds it from now on while it
        shows it); else why not."""
        if self.store.get_chat(chat_id) is None:
            return Refusal("Chat deleted", "This chat was deleted in another edgechat window. "
                                           "Ctrl+N starts a new chat.")
        holder = self.store.claim(chat_id)
        if holder is None:
            self.let_go(chat_id)                # a chat not shown: held only for this change
            return None
        return Refusal("Read only here", f"This chat is open in another edgechat window (pid {holder}), "
                       "which writes it; here it can be read. Ctrl+N starts a new chat.")
