"""Backends: the native C++ engine and llama.cpp, behind one token-level interface (base.py)."""
from __future__ import annotations

from pathlib import Path

from ..info import DEFAULT_SINKS


def make_backend(name: str, mf, path: str | Path, *, ctx: int, threads: int, kv_type: str,
                 sinks: int = DEFAULT_SINKS, gpu_layers: int = 0, evict_chunk: int | None = None, seqs: int = 1):
    """The backend ``name`` ("native" or "llama.cpp") on a GGUF file.

    Args:
        name: the engine.
        mf: the file read by ``ggufload.read_model`` (the native engine loads from it).
        path: the file (llama.cpp loads it itself).
        ctx, sinks, threads, kv_type: the cache and compute options (kv_type "f16" or "q8_0").
        gpu_layers, evict_chunk: llama.cpp only.
        seqs: llama.cpp only: the sequences its context holds (the native engine makes caches on demand).
    """
    if name == "native":
        from .native import NativeBackend
        return NativeBackend(mf, ctx=ctx, sinks=sinks, threads=threads, kv_type=kv_type)
    from .llama_cpp import LlamaCppBackend
    return LlamaCppBackend(str(path), ctx=ctx, sinks=sinks, threads=threads, gpu_layers=gpu_layers,
                           evict_chunk=evict_chunk, kv_type=kv_type, seqs=seqs)
