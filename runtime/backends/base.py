"""The backend protocol both engines (native C++ and llama.cpp) implement."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..info import BackendInfo, CacheInfo


class Backend(Protocol):
    """A model with a sink-ring KV cache. All positions are managed by the backend.

    Cache policy (StreamingLLM): capacity ``ctx`` entries; the first ``sinks`` tokens ever fed are
    pinned; the rest is a ring of ``ctx - sinks`` entries; when full, the oldest non-sink entries are
    evicted (one at a time natively, ``evict_chunk`` at a time in llama.cpp). Positions are re-indexed
    inside the cache (sinks 0..S-1, window after them in order).
    """

    name: str            # "native" | "llama.cpp"
    n_vocab: int
    n_ctx: int
    info: BackendInfo

    def eval(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Append ``ids`` to the cache; float32 logits ``(len(ids), n_vocab)`` or ``(n_vocab,)``."""

    def reset(self, sinks: int | None = None) -> None:
        """Empty the cache; optionally change the number of pinned sink entries."""

    def truncate(self, n_past: int) -> bool:
        """Roll the cache back to the state after the first ``n_past`` tokens ever fed.

        Returns False (and changes nothing) when the ring has evicted tokens that state still held.
        """

    def spec_room(self) -> int:
        """Speculation: the longest verify batch (sampled token + drafts) whose logits equal one-token
        decodes and that ``checkpoint`` + ``truncate`` can roll back exactly; 0 where none is."""

    def checkpoint(self, n: int) -> None:
        """Speculation: keep what the next ``n`` tokens overwrite, so ``truncate`` back to any point
        among them leaves the cache as if only the tokens up to it had been fed (across an eviction)."""

    def cache_info(self) -> CacheInfo:
        """The cache now, computed by the backend (it alone knows how it evicts)."""

    def bind(self, cache) -> None:
        """Make ``cache`` the one the methods above work on: None, the backend's own; or (backends
        that keep several, with ``new_cache(sinks)`` and ``step(caches, tokens, counts)``) one of its
        ``new_cache``s. ``runtime.token_cache.TokenCache`` calls it before each of them."""

    def close(self) -> None:
        """Free native resources."""
