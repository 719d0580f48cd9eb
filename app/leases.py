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
