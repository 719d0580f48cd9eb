"""KV snapshots (Engine.save_state / load_state, runtime/snapshot.py) on the default model.

Oracles: the engine that wrote the snapshot (the restored engine's next reply must be the same text
and feed only the new tokens), and a fresh engine (a refused snapshot must leave the output a fresh
run gives, and the prompt fed whole). Atomicity: a writer killed with SIGKILL at random points leaves a
file that reads and checks, holding one of the two states it was alternating between.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

THREADS = 2
CTX = 256
REPLY = 24
LONG = "Tell me about the sea, the ships, the harbours and the storms of the north. " * 25   # > CTX tokens


def _load(path, **kw):
    from edgechat.runtime import load
    return load(path, threads=THREADS, **{"ctx": CTX, **kw})


def _reply(engine, messages):
    *_, done = engine.chat(messages, temp=0, max_tokens=REPLY)
    return done


def _first_turn(engine):
    done = _reply(engine, [{"role": "user", "content": LONG}])
    assert done.cache.evicted > 0                       # the ring wrapped: not a token prefix any more
    return engine.conversation.messages + [{"role": "user", "content": "And the storms?"}]


@pytest.fixture(scope="module")
def saved(default_model, tmp_path_factory):
    """A snapshot after one long turn (native, f16), and the writer's own next reply."""
    path = tmp_path_factory.mktemp("snap") / "chat.npz"
    e = _load(default_model)
    nxt = _first_turn(e)
    e.save_state(path)
    ref = _reply(e, nxt)
    e.close()
    return path, nxt, ref


@pytest.fixture(scope="module")
def fresh(default_model, saved):
    """A fresh engine's reply to the same conversation (what a refused snapshot must give)."""
    e = _load(default_model)
    done = _reply(e, saved[1])
    e.close()
    return done


@pytest.mark.parametrize("backend,kv_type", [("native", "f16"), ("native", "q8_0"), ("llama.cpp", "f16")])
def test_restore_feeds_only_new_tokens(default_model, tmp_path, backend, kv_type):
    """After eviction: the restored engine feeds only the new turn and replies exactly as the writer."""
    path = tmp_path / "s.npz"
    e = _load(default_model, backend=backend, kv_type=kv_type)
    nxt = _first_turn(e)
    before = e.cache_info()
    e.save_state(path)
    ref = _reply(e, nxt)
    e.close()
    r = _load(default_model, backend=backend, kv_type=kv_type)
    assert r.load_state(path), r.state_note
    assert r.state_note == "restored"
    assert r.cache_info() == before
    got = _reply(r, nxt)
    r.close()
    assert got.text == ref.text
    assert got.stats.prompt_tokens == ref.stats.prompt_tokens < 20      # the new turn only


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])


def _other_version(path: Path) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("header").tobytes())
    header["version"] = 999
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)


def _bad_header(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("header.npy", b"not a numpy file")


@pytest.mark.parametrize("damage", [_corrupt, _truncate, _other_version, _bad_header])
def test_damaged_snapshot_is_refused(default_model, saved, fresh, tmp_path, damage):
    path = tmp_path / "s.npz"
    path.write_bytes(saved[0].read_bytes())
    damage(path)
    e = _load(default_model)
    assert not e.load_state(path)
    assert e.state_note and "\n" not in e.state_note
    print(f"{damage.__name__}: {e.state_note}")
    assert e.cache_info().n_past == 0
    done = _reply(e, saved[1])
    e.close()
    assert done.text == fresh.text and done.stats.prompt_tokens == fresh.stats.prompt_tokens


@pytest.mark.parametrize("other", ["ctx", "kv_type", "sinks", "model", "backend"])
def test_other_settings_are_refused(default_model, quantized_default, saved, fresh, other):
    kw = {"ctx": {"ctx": CTX * 2}, "kv_type": {"kv_type": "f16"}, "sinks": {"sinks": 8},  # saved: auto = q8_0
          "backend": {"backend": "llama.cpp"}, "model": {}}[other]
    model = quantized_default("Q4_0") if other == "model" else default_model
    e = _load(model, **kw)
    assert not e.load_state(saved[0])
    print(f"{other}: {e.state_note}")
    assert e.state_note.startswith("snapshot is for")
    if other == "model":
        assert "another model" in e.state_note
    assert e.cache_info().n_past == 0
    done = _reply(e, saved[1])
    e.close()
    ref = _load(model, **kw)                     # a fresh engine of the same settings: the oracle
    want = _reply(ref, saved[1])
    ref.close()
    assert done.text == want.text and done.stats.prompt_tokens == want.stats.prompt_tokens


def test_missing_snapshot_is_a_note(default_model, tmp_path):
    e = _load(default_model)
    assert not e.load_state(tmp_path / "none.npz") and e.state_note == "no snapshot"
    e.close()


WRITER = """
import sys, numpy as np
from edgechat.runtime import snapshot
src, dst = sys.argv[1:3]
states = []
for p in src.split(","):
    with np.load(p) as z:
        import json
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("header").tobytes())
    states.append((header, arrays))
print("ready", flush=True)
i = 0
while True:
    snapshot.write(dst, *states[i % 2])
    i += 1
"""


def test_kill_while_writing_leaves_old_or_new(default_model, saved, tmp_path):
    """SIGKILL at random moments of a writer alternating two snapshots over one path: the path always
    holds a whole snapshot that reads and checks (one of the two), never a broken one."""
    from edgechat.runtime import snapshot
    a = saved[0]
    b = tmp_path / "b.npz"
    e = _load(default_model)
    _reply(e, [{"role": "user", "content": "Hi"}])
    e.save_state(b)
    expect = snapshot.expected(e)
    e.close()
    dst = tmp_path / "live.npz"
    dst.write_bytes(a.read_bytes())
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(6):
        p = subprocess.Popen([sys.executable, "-c", WRITER, f"{a},{b}", str(dst)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        header, _ = snapshot.read(dst, expect)       # raises if broken
        seen.add(len(header["messages"]))
    assert seen <= {2, 3} and seen                   # a: 2 messages + ... (one of the two states)
