"""app/kv_snapshots.py: one snapshot per chat beside the database, an LRU bounded in MiB. The engine
side is faked at its save_state / load_state seam (the snapshot format has its own tests)."""
from __future__ import annotations

import os
import time

from edgechat.app.kv_snapshots import SnapshotDir

MiB = 1 << 20


class FakeEngine:
    """Writes a snapshot of ``size`` bytes; restores whatever file exists."""

    def __init__(self, size: int):
        self.size, self.state_note = size, ""

    def save_state(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * self.size)
        return self.size

    def load_state(self, path):
        ok = path.is_file()
        self.state_note = "restored" if ok else "no snapshot"
        return ok


def test_lru_keeps_at_most_the_bound_dropping_the_least_recently_used(tmp_path):
    d = SnapshotDir.beside(tmp_path / "chats.db", max_mib=3)
    assert d.root == tmp_path / "kv"
    e = FakeEngine(MiB)
    for chat in (1, 2, 3):
        assert d.save(e, chat) is None
        os.utime(d.path(chat), (time.time() - 100 + chat, time.time() - 100 + chat))
    assert d.restore(e, 1) == (True, "restored")           # a restore counts as a use
    assert d.save(e, 4) is None                            # 4 MiB > 3: the least recently used goes
    assert sorted(p.name for p in d.root.glob("*.npz")) == ["chat-1.npz", "chat-3.npz", "chat-4.npz"]
    assert d.restore(e, 2) == (False, "no snapshot")


def test_delete_and_off_and_stale_temp_files(tmp_path):
    d = SnapshotDir(tmp_path / "kv", max_mib=8)
    e = FakeEngine(1000)
    d.save(e, 7)
    stale, fresh = d.root / "chat-7.npz.abc.tmp", d.root / "chat-8.npz.def.tmp"
    stale.write_bytes(b"partial"), fresh.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    d.trim()
    assert not stale.exists() and fresh.exists()           # a write in progress is left alone
    d.delete(7)
    assert not d.path(7).exists()
    assert "off" in SnapshotDir(tmp_path / "kv2", max_mib=0).save(e, 1)
    assert SnapshotDir.beside(None) is None                # a store in memory keeps no snapshots
