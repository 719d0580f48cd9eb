"""Saved chats keep their KV cache: one snapshot file per chat beside the chat database, bounded by an
LRU on total size (the least recently written or restored go first). A branch the user leaves keeps its
snapshot too (``park``), named by the branch's last message, under the same bound; going back to it
puts it back as the chat's (``unpark``).

The files are written by ``Engine.save_state`` (atomic: temp file + rename) from the reply worker, never
the UI thread; a write that fails (disk full, read-only) only costs the next reopen a re-prefill.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..runtime.errors import EdgechatError

DEFAULT_MAX_MIB = 512
DIR_NAME = "kv"


class SnapshotDir:
    """``root/chat-<id>.npz`` files, at most ``max_mib`` MiB together (0: keep none).

    Args:
        root: the directory (created on first write).
        max_mib: the LRU's bound in MiB.
    """

    def __init__(self, root: Path, max_mib: int = DEFAULT_MAX_MIB):
        self.root, self.max_bytes = Path(root), int(max_mib) << 20

    @classmethod
    def beside(cls, db_path: Path | None, max_mib: int = DEFAULT_MAX_MIB) -> "SnapshotDir | None":
        """The snapshot directory next to a chat database; None for a store kept in memory."""
        return None if db_path is None else cls(Path(db_path).parent / DIR_NAME, max_mib)

    def path(self, chat_id: int) -> Path:
        return self.root / f"chat-{int(chat_id)}.npz"

    def branch_path(self, chat_id: int, leaf: int) -> Path:
        return self.root / f"chat-{int(chat_id)}-branch-{int(leaf)}.npz"

    def park(self, chat_id: int, leaf: int) -> None:
        """The chat's snapshot becomes that of its branch ending at message ``leaf``."""
        try:
            os.replace(self.path(chat_id), self.branch_path(chat_id, leaf))
        except OSError:
            pass                                    # none, or not movable: the branch is re-read

    def unpark(self, chat_id: int, leaf: int) -> bool:
        """The snapshot of the branch ending at ``leaf`` becomes the chat's; False when there is none."""
        try:
            os.replace(self.branch_path(chat_id, leaf), self.path(chat_id))
            return True
        except OSError:
            return False

    def save(self, engine, chat_id: int) -> str | None:
        """Snapshot ``engine`` for ``chat_id`` and trim the LRU; returns why not, or None when saved."""
        if self.max_bytes <= 0:
            return "snapshots are off (--kv-snapshots-mib 0)"
        try:
            engine.save_state(self.path(chat_id))
            self.trim()
        except OSError as e:
            return f"cannot write the KV snapshot: {e.strerror or e}"
        except EdgechatError as e:          # a backend without snapshots
            return str(e)
        return None

    def restore(self, engine, chat_id: int) -> tuple[bool, str]:
        """Restore ``chat_id``'s snapshot into ``engine``: (restored, note); a hit counts as a use."""
        path = self.path(chat_id)
        ok = engine.load_state(path)
        if ok:
            try:
                os.utime(path)
            except OSError:
                pass
        return ok, engine.state_note

    def delete(self, chat_id: int) -> None:
        """The chat's snapshot and those of its branches."""
        self.path(chat_id).unlink(missing_ok=True)
        if self.root.is_dir():
            for p in self.root.glob(f"chat-{int(chat_id)}-branch-*.npz"):
                p.unlink(missing_ok=True)

    def trim(self) -> None:
        """Delete the least recently used snapshots until the rest fit, and temp files left by a crash."""
        if not self.root.is_dir():
            return
        files = []
        for p in self.root.iterdir():
            try:
                st = p.stat()
            except OSError:
                continue
            if p.suffix == ".tmp" and st.st_mtime < time.time() - 3600:
                p.unlink(missing_ok=True)          # an interrupted write, long dead
            elif p.suffix == ".npz":
                files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size
