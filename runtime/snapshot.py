"""KV snapshots: an engine's whole state (the cache as it is, sinks and ring and positions; the token
stream and the conversation with its message ends) in one file, restored instead of re-prefilled.

A snapshot holds what the cache holds, not a token prefix: after eviction the ring is no longer a prefix
of the tokens, so it could not be rebuilt from one without recomputing everything.

Format: an uncompressed numpy ``.npz`` (a zip of ``.npy`` arrays): ``header`` is a small JSON document
(format version, model identity, ctx, sinks, kv type, backend, counters, the conversation's messages,
and a BLAKE2b checksum of every other array), the rest are raw arrays (the backend's cache buffers, the
token stream, the conversation's ids and message ends). Written to a temporary file in the same
directory, flushed to disk, then renamed over the old one: a crash leaves the old file or the new one.
Read with ``allow_pickle=False``; anything that does not match, is truncated or corrupt is refused with
a one-line reason and nothing in the engine changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from array import array
from pathlib import Path

import numpy as np

from .errors import EdgechatError

VERSION = 1
MAX_HEADER = 64 << 20        # bytes of JSON header we are willing to parse (messages included)


class SnapshotRefused(EdgechatError):
    """A snapshot that cannot be used here; ``str(e)`` is the one-line reason."""


def model_identity(path: str | Path, data_offset: int) -> str:
    """File size + BLAKE2b of the GGUF header and tensor-info block (every byte before the tensor data):
    the same weights file, without reading the weights."""
    path = Path(path)
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(data_offset))
    return f"{path.stat().st_size}:{h.hexdigest()}"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def write(path: str | Path, header: dict, arrays: dict[str, np.ndarray]) -> int:
    """Write atomically (temp file + fsync + rename); returns the file's size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = dict(header, version=VERSION, checksum=_checksum(arrays))
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, header=blob, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def read(path: str | Path, expect: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check a snapshot: its version, then every key of ``expect`` (identity, ctx, ...), then the
    checksum of the arrays.

    Raises:
        SnapshotRefused: with the reason, for a missing, truncated, corrupt or non-matching file.
    """
    path = Path(path)
    if not path.is_file():
        raise SnapshotRefused("no snapshot")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":                  # a zip file (np.savez) starts so
            raise SnapshotRefused("not an edgechat snapshot")
    try:
        with np.load(path, allow_pickle=False) as z:
            header = _header(z)
            _match(header, expect)
            arrays = {name: z[name] for name in z.files if name != "header"}
        if not all(isinstance(a, np.ndarray) for a in arrays.values()):
            raise SnapshotRefused("not an edgechat snapshot (a member is not an array)")
    except SnapshotRefused:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise SnapshotRefused(f"unreadable snapshot ({type(e).__name__}: {str(e)[:80]})") from None
    if _checksum(arrays) != header.get("checksum"):
        raise SnapshotRefused("corrupt snapshot (checksum mismatch)")
    return header, arrays


def _header(z) -> dict:
    if "header" not in z.files:
        raise SnapshotRefused("not an edgechat snapshot (no header)")
    raw = z["header"]
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_HEADER:
        raise SnapshotRefused("not an edgechat snapshot (bad header)")
    header = json.loads(raw.tobytes().decode())
    if not isinstance(header, dict):
        raise SnapshotRefused("not an edgechat snapshot (bad header)")
    return header


def _match(header: dict, expect: dict) -> None:
    if header.get("version") != VERSION:
        raise SnapshotRefused(f"snapshot format version {header.get('version')}, this edgechat reads {VERSION}")
    for key, want in expect.items():
        got = header.get(key)
        if got != want:
            what = "another model" if key == "model" else f"{key} {got}, now {want}"
            raise SnapshotRefused(f"snapshot is for {what}")


# ---- engine state <-> header + arrays ---------------------------------------------------------------

def expected(engine) -> dict:
    """What a snapshot must say to be restored into ``engine``."""
    i = engine.info
    return {"model": engine.model_identity, "backend": i.backend, "ctx": i.ctx, "sinks": i.sinks,
            "pin_system": i.pin_system, "kv_type": engine.cache_info().kv_type}


def capture(engine) -> tuple[dict, dict[str, np.ndarray]]:
    """The engine's state as (header, arrays); the caller holds the engine's turn."""
    cache, conv = engine.cache, engine.conversation
    if not cache.can_export():
        raise SnapshotRefused(f"the {engine.info.backend} backend cannot save its cache")
    state, fed, skip = cache.export_state()
    c = conv.state()
    arrays = {f"cache_{k}": np.asarray(v) for k, v in state.items() if isinstance(v, np.ndarray)}
    arrays.update(fed=fed, conv_ids=np.frombuffer(c["ids"], dtype=np.int32).copy(),
                  conv_ends=np.asarray(c["ends"], dtype=np.int64))
    header = dict(expected(engine), skip=skip, messages=c["messages"], windowed=c["windowed"],
                  cache={k: v for k, v in state.items() if not isinstance(v, np.ndarray)})
    return header, arrays


def restore(engine, header: dict, arrays: dict[str, np.ndarray]) -> None:
    """Put a checked snapshot into ``engine`` (its turn held); on failure the cache is emptied.

    Raises:
        SnapshotRefused: the arrays do not fit the cache, or the conversation does not add up.
    """
    fed, ids, ends = arrays.get("fed"), arrays.get("conv_ids"), arrays.get("conv_ends")
    msgs = header.get("messages")
    if fed is None or ids is None or ends is None or not isinstance(msgs, list) or len(ends) != len(msgs):
        raise SnapshotRefused("snapshot conversation is incomplete")
    state = dict(header.get("cache") or {}, **{k[6:]: v for k, v in arrays.items() if k.startswith("cache_")})
    skip = int(header.get("skip", 0))
    if len(fed) - skip != state.get("n_past"):
        raise SnapshotRefused("snapshot token stream does not match its cache")
    if not engine.cache.import_state(state, fed, skip):
        raise SnapshotRefused("snapshot cache does not fit this cache")
    engine.conversation.restore(msgs, array("i", ids.astype(np.int32).tobytes()), [int(e) for e in ends],
                                bool(header.get("windowed")))
