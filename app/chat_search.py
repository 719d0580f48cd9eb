"""Searching every chat's messages: sqlite FTS5 where the sqlite build has it, LIKE otherwise.

The FTS5 index is an external-content table over ``messages`` kept in step by triggers; like the leases
table it is an addition an older edgechat ignores (it only writes through the triggers), so it does not
change the schema version. Each word of a query matches words it starts (``drag`` finds "dragon"); all
words must match. LIKE matches the query as one substring, case-insensitively (ASCII).
"""
from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

INDEX = """
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
"""
MARK_OPEN, MARK_CLOSE = "\x02", "\x03"      # around the match in ``Hit.snippet``
CONTEXT_WORDS = 10                           # words of context around a match
LIMIT = 100                                  # results shown


@dataclass(frozen=True)
class Hit:
    """A message that matches: where it is, and the match in context."""

    message_id: int
    chat_id: int
    title: str
    role: str
    snippet: str          # the match between MARK_OPEN and MARK_CLOSE, with context, on one line
    created: float


def add_index(conn: sqlite3.Connection) -> bool:
    """Create the FTS5 index (and fill it from the messages) unless it is there; False when this
    sqlite has no FTS5 (or the file is read only): search then uses LIKE."""
    try:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'").fetchone()
        if not exists:
            conn.executescript("BEGIN;" + INDEX + "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');"
                               "COMMIT;")
        conn.execute("SELECT rowid FROM messages_fts LIMIT 0")
        return True
    except sqlite3.OperationalError:
        if conn.in_transaction:
            conn.rollback()
        return False


def search(conn: sqlite3.Connection, text: str, fts: bool, limit: int = LIMIT) -> list[Hit]:
    """Messages of every chat matching ``text``, the newest first (an empty query matches none)."""
    words = re.findall(r"\w+", text)
    if not words:
        return []
    if fts:
        query = " ".join(f'"{w}"*' for w in words)
        rows = conn.execute(
            "SELECT m.id, m.chat_id, c.title, m.role, snippet(messages_fts, 0, ?, ?, '…', ?), m.created "
            "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid JOIN chats c ON c.id = m.chat_id "
            "WHERE messages_fts MATCH ? ORDER BY m.created DESC, m.id DESC LIMIT ?",
            (MARK_OPEN, MARK_CLOSE, 2 * CONTEXT_WORDS, query, limit)).fetchall()
        return [Hit(*r[:4], " ".join(r[4].split()), r[5]) for r in rows]
    needle = text.strip()
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute(
        "SELECT m.id, m.chat_id, c.title, m.role, m.content, m.created FROM messages m "
        "JOIN chats c ON c.id = m.chat_id WHERE m.content LIKE ? ESCAPE '\\' "
        "ORDER BY m.created DESC, m.id DESC LIMIT ?", (f"%{escaped}%", limit)).fetchall()
    return [Hit(*r[:4], snippet(r[4], needle), r[5]) for r in rows]


def snippet(content: str, needle: str) -> str:
    """The first match of ``needle`` in ``content`` (case-insensitive), marked, with about
    ``CONTEXT_WORDS`` words either side, on one line."""
    flat = " ".join(content.split())
    at = flat.lower().find(" ".join(needle.split()).lower())
    if at < 0:
        return flat[:80]
    end = at + len(" ".join(needle.split()))
    before, match, after = flat[:at].split(" "), flat[at:end], flat[end:].split(" ")
    head = ("…" if len(before) > CONTEXT_WORDS else "") + " ".join(before[-CONTEXT_WORDS:])
    tail = " ".join(after[:CONTEXT_WORDS + 1]) + ("…" if len(after) > CONTEXT_WORDS + 1 else "")
    return f"{head}{MARK_OPEN}{match}{MARK_CLOSE}{tail}"
