"""The native backend: our C++/SIMD engine (edgechat._native) over a read-only mmap of the GGUF."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import EdgechatError, InsufficientMemory, UnsupportedModel
from ..ggufload import ModelFile

MAX_CTX = 2**31 - 1      # the C++ engine counts cache slots in int


class NativeBackend:
    """Runs a llama/qwen2/qwen3 GGUF with our kernels; the KV cache is the sink ring (kv_ring.cpp)."""

    name = "native"

    def __init__(self, model: ModelFile, *, ctx: int = 2048, sinks: int = 4, threads: int = 1):
        from ... import _native
        problem = model.native_problem()
        if problem:
            raise UnsupportedModel(problem)
        if ctx > MAX_CTX:
            raise EdgechatError(f"--ctx {ctx} is beyond the native backend's limit ({MAX_CTX})")
        tensors = [(t.name, t.type, list(t.shape), t.data) for t in model.tensors]
        try:
            self._m = _native.Model(model.config, tensors, ctx, sinks, threads)
        except ValueError as e:
            raise UnsupportedModel(f"native backend: {e}") from None
        except MemoryError:
            raise InsufficientMemory(f"native backend: cannot allocate the buffers for a {ctx}-token cache") from None
        self.n_vocab = int(model.config["n_vocab"])
        self.n_ctx = ctx
        self.info = {"isa": self._m.isa, "threads": self._m.threads}

    def eval(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Append ids; logits (len(ids), n_vocab) or (n_vocab,)."""
        return self._m.eval(np.ascontiguousarray(ids, dtype=np.int32), all_logits)

    def reset(self, sinks: int | None = None) -> None:
        self._m.reset(self._m.cache_info()["sinks"] if sinks is None else sinks)

    def truncate(self, n_past: int) -> bool:
        return self._m.truncate(n_past)

    def cache_info(self) -> dict:
        return self._m.cache_info()

    def close(self) -> None:
        self._m = None
