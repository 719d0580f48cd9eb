"""The native backend: our C++/SIMD engine (edgechat._native) over a read-only mmap of the GGUF."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import EdgechatError, InsufficientMemory, UnsupportedModel
from ..ggufload import ModelFile
from ..info import BackendInfo, CacheInfo, ring_window_start

MAX_CTX = 2**31 - 1      # the C++ engine counts cache slots in int


class NativeBackend:
    """Runs a llama/qwen2/qwen3/gemma3 GGUF with our kernels; the KV cache is the sink ring (kv_ring.cpp)."""

    name = "native"

    def __init__(self, model: ModelFile, *, ctx: int = 2048, sinks: int = 4, threads: int = 1,
                 kv_type: str = "f16"):
        from ... import _native
        problem = model.native_problem()
        if problem:
            raise UnsupportedModel(problem)
        if ctx > MAX_CTX:
            raise EdgechatError(f"--ctx {ctx} is beyond the native backend's limit ({MAX_CTX})")
        tensors = [(t.name, t.type, list(t.shape), t.data) for t in model.tensors]
        try:
            # the views are of read_model's read-only file mmap: repacked weights may hand their pages back
            config = dict(model.config, release_source=True)
            self._m = _native.Model(config, tensors, ctx, sinks, threads, kv_type)
        except ValueError as e:
            raise UnsupportedModel(f"native backend: {e}") from None
        except MemoryError:
            raise InsufficientMemory(f"native backend: cannot allocate the buffers for a {ctx}-token cache") from None
        self.n_vocab = int(model.config["n_vocab"])
        self.n_ctx = ctx
        self.info = BackendInfo(isa=self._m.isa, threads=self._m.threads)
        # speculation: verify batches up to this long give the logits of one-token decodes, bit for bit
        self.exact_batch = min(int(self._m.exact_batch), ctx - sinks)
        self.max_step_tokens = int(self._m.max_batch)    # tokens of one ``step``, all caches together
        self._bound = None                 # the cache in use (None: the model's own)

    def eval(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Append ids; logits (len(ids), n_vocab) or (n_vocab,)."""
        return self._m.eval(np.ascontiguousarray(ids, dtype=np.int32), all_logits)

    def reset(self, sinks: int | None = None) -> None:
        self._m.reset(self._m.cache_info()["sinks"] if sinks is None else sinks)

    def truncate(self, n_past: int) -> bool:
        return self._m.truncate(n_past)

    def new_cache(self, sinks: int, kv_type: str = ""):
        """An empty cache of this model's geometry (allocated now; its pages are touched as used), with
        f16 or q8_0 rows (default: the engine's own cache's)."""
        try:
            return self._m.new_cache(sinks, kv_type)
        except MemoryError:
            raise InsufficientMemory(f"native backend: cannot allocate another {self.n_ctx}-token cache") from None

    def bind(self, cache) -> None:
        """Make ``cache`` (from ``new_cache``; None: the model's own) the one eval and the cache methods
        work on (O(1): the engine keeps a pointer to it)."""
        if cache is not self._bound:
            self._m.use_cache(cache)
            self._bound = cache

    def drop_cache(self, cache) -> None:
        """Forget a cache from ``new_cache`` (its memory goes when nothing holds it)."""
        if cache is self._bound:
            self.bind(None)

    def step(self, caches: list, tokens: Sequence[int], counts: Sequence[int]) -> np.ndarray:
        """One forward pass over several caches (None: the model's own), the weights read once:
        ``counts[i]`` of ``tokens`` (laid end to end) appended to ``caches[i]``. Returns the logits of
        each one's last token, (len(caches), n_vocab), bit for bit those of each one's own eval."""
        return self._m.step(list(caches), np.ascontiguousarray(tokens, dtype=np.int32), list(counts))

    def spec_room(self) -> int:
        """The longest verify batch (sampled token + drafts) that is exact: logits equal to one-token
        decodes, and a rollback into it leaves the cache as if only the kept tokens had been fed."""
        return min(self.exact_batch, self.n_ctx - self._m.cache_info()["sinks"])

    def checkpoint(self, n: int) -> None:
        """Speculation: keep what the next ``n`` tokens (a verify batch, n <= window) overwrite in the
        ring, so ``truncate`` back to any point among them succeeds even across an eviction."""
        self._m.checkpoint(n)

    def cache_info(self) -> CacheInfo:
        """The ring now; it evicts one entry at a time."""
        c = self._m.cache_info()       # capacity, used, sinks, evicted, bytes, n_past
        return CacheInfo(capacity=c["capacity"], used=c["used"], sinks=c["sinks"], evicted=c["evicted"],
                         window_start=ring_window_start(c["n_past"], c["sinks"], c["evicted"]),
                         bytes=c["bytes"], kv_type=c["kv_type"], n_past=c["n_past"])

    def export_state(self) -> dict:
        """The ring's slots in use: ``k``, ``v`` (flat uint8: layer, kv head, used, row_bytes), ``n_past``,
        ``sinks``, ``used``, ``row_bytes`` (copied with the GIL released)."""
        return self._m.export_state()

    def import_state(self, state: dict) -> bool:
        """Load ``export_state()``'s arrays; False (cache unchanged) when they do not fit this cache."""
        return self._m.import_state(int(state["sinks"]), int(state["n_past"]),
                                    np.ascontiguousarray(state["k"], dtype=np.uint8),
                                    np.ascontiguousarray(state["v"], dtype=np.uint8))

    def close(self) -> None:
        self._m = None
