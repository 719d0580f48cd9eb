"""One sequence's cache: a backend ring (sinks, window, positions) and the token ids it represents.

``TokenCache`` is the only owner of that state: feeding, rolling back (or rebuilding from the sinks
and a tail when the ring has evicted past the point), skipping a prompt's middle, speculation's
checkpoint, snapshots. ``step`` feeds several caches in one forward pass over the weights (a batched
decode step; the native backend), each cache keeping its own ring.
"""
from __future__ import annotations

from array import array
from typing import Sequence

import numpy as np

from .info import CacheInfo


class TokenCache:
    """A backend ring and the logical token ids it represents.

    Args:
        backend: the model's backend.
        handle: the backend's cache object (``backend.new_cache``); None: the backend's own cache.
    """

    def __init__(self, backend, handle=None):
        self._b = backend
        self.handle = handle
        self._fed = array("i")            # logical tokens the cache represents, in order (4 bytes each)
        self._skip = 0                    # logical tokens skipped by a rebuild or a skipped prompt middle
        self._info = self._bound().cache_info()

    # ---- what it holds --------------------------------------------------------------------------

    @property
    def fed(self) -> array:
        """The logical token ids the cache represents: read it, do not change it."""
        return self._fed

    @property
    def skip(self) -> int:
        """Logical tokens after the sinks that are counted as fed but not in the ring."""
        return self._skip

    @property
    def info(self) -> CacheInfo:
        """The cache after the last change (positions in logical tokens)."""
        return self._info

    @property
    def n_ctx(self) -> int:
        return self._b.n_ctx

    # ---- changes --------------------------------------------------------------------------------

    def feed(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray | None:
        """Append ids under the sink policy; logits (len(ids), vocab) with ``all_logits``, else (vocab,)."""
        if not ids:
            return None
        out = self._bound().eval(ids, all_logits)
        self._fed.extend(ids)
        self._refresh()
        return out

    def reset(self, sinks: int) -> None:
        """Empty the ring (``sinks`` pinned entries from now on)."""
        self._bound().reset(sinks)
        self._fed, self._skip = array("i"), 0
        self._refresh()

    def truncate(self, n: int) -> bool:
        """Make the cache represent fed[:n] if the ring still holds what that needs (no rebuild)."""
        if n >= len(self._fed):
            return True
        if n >= self._info.sinks + self._skip and self._bound().truncate(n - self._skip):
            del self._fed[n:]
            self._refresh()
            return True
        return False

    def rollback(self, n: int) -> int:
        """Make the cache represent fed[:n]; returns tokens re-fed for a rebuild (0 if none): when the
        ring has evicted past n, it is rebuilt from the sinks and the tail that fits half the window."""
        if self.truncate(n):
            return 0
        sinks = self._info.sinks
        keep = self._fed[:n]
        tail_start = max(sinks, n - (self._b.n_ctx - sinks) // 2)   # half the window for what comes next
        refeed = keep[:sinks] + keep[tail_start:]
        self.reset(sinks)
        self.feed(list(refeed))
        self._fed, self._skip = keep, tail_start - sinks
        self._refresh()
        return len(refeed)

    def skip_to(self, target: Sequence[int], start: int) -> None:
        """Hold the sinks of ``target`` and nothing else, counting its ids up to ``start`` as fed."""
        sinks = self._info.sinks
        self.reset(sinks)
        self.feed(list(target[:sinks]))
        self._fed, self._skip = array("i", target[:start]), start - sinks
        self._refresh()

    # ---- speculation ----------------------------------------------------------------------------

    def spec_room(self) -> int:
        """The longest exact verify batch (see the backend's ``spec_room``)."""
        return self._bound().spec_room()

    def checkpoint(self, n: int) -> None:
        """Keep what the next ``n`` tokens overwrite, so a rollback into them is exact."""
        self._bound().checkpoint(n)

    # ---- snapshots ------------------------------------------------------------------------------

    def can_export(self) -> bool:
        return hasattr(self._b, "export_state")

    def export_state(self) -> tuple[dict, np.ndarray, int]:
        """(the backend ring's arrays, the token ids, skip)."""
        return self._bound().export_state(), np.frombuffer(self._fed, dtype=np.int32).copy(), self._skip

    def import_state(self, state: dict, fed: np.ndarray, skip: int) -> bool:
        """Load ``export_state``'s parts; False when the backend refused them (the cache is then empty)."""
        if not self._bound().import_state(state):
            self.reset(self._info.sinks)
            return False
        self._fed, self._skip = array("i", fed.astype(np.int32).tobytes()), int(skip)
        self._refresh()
        return True

    def close(self) -> None:
        """Give the ring's memory back (a cache of its own; the backend's own cache stays)."""
        if self.handle is not None:
            self._b.drop_cache(self.handle)
            self.handle = None

    # ---- internals ------------------------------------------------------------------------------

    def _bound(self):
        self._b.bind(self.handle)
        return self._b

    def _refresh(self) -> None:
        self._info = self._b.cache_info().shifted(self._skip)

    def _stepped(self, ids: Sequence[int]) -> None:
        self._fed.extend(ids)
        self._b.bind(self.handle)
        self._refresh()


def step(caches: Sequence[TokenCache], ids: Sequence[Sequence[int]]) -> np.ndarray:
    """One forward pass over several caches of one backend (the weights read once): ``ids[i]``
    appended to ``caches[i]``. Returns the logits of each one's last token, (len(caches), vocab),
    equal to each cache's own ``feed``."""
    b = caches[0]._b
    flat = [t for seq in ids for t in seq]
    out = b.step([c.handle for c in caches], flat, [len(seq) for seq in ids])
    for c, seq in zip(caches, ids):
        c._stepped(seq)
    return out
