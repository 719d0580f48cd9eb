"""Several conversations kept warm on one engine: cache slots, chosen by the longest shared prefix.

The engine holds one live cache; the others are parked ``EngineState``s (a spare cache of the same
geometry, the token stream it represents and the conversation it holds). Switching conversation swaps
the buffers (O(1), no copy, no re-prefill), as llama.cpp's server keys its prompt cache on the token
prefix. A request goes to the slot whose conversation shares the longest token prefix with it; a
request that shares nothing takes an unused slot, else the least recently used one.
Backends without spare caches (llama.cpp) have one slot: the engine's own cache.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass

from .conversation import Conversation

SLOT_RAM_SHARE = 0.5    # spare caches may take at most this share of the RAM available at start


@dataclass
class EngineState:
    """A parked cache and the conversation it holds (see ``Engine.swap_state``)."""

    cache: object              # the backend's spare cache (opaque)
    fed: array                 # logical token ids the cache represents
    skip: int                  # tokens skipped by a rebuild (after the sinks)
    conv: Conversation


def slots_that_fit(requested: int, cache_bytes: int, available: int) -> int:
    """How many slots (at least 1: the engine's own cache) fit when each spare one takes
    ``cache_bytes`` and spare caches may take ``SLOT_RAM_SHARE`` of ``available`` bytes."""
    if cache_bytes <= 0:
        return max(1, requested)
    spare = int(available * SLOT_RAM_SHARE) // cache_bytes
    return max(1, min(requested, spare + 1))


def shared_tokens(conv: Conversation, messages: list[dict]) -> int:
    """Tokens of the leading messages ``conv`` holds unchanged in ``messages`` (a token prefix of
    the rendered request: the conversation keeps the ids of the messages it shares)."""
    held, k = conv.messages, 0
    n = min(len(held), len(messages))
    while k < n and held[k]["role"] == messages[k]["role"] and held[k]["content"] == messages[k]["content"]:
        k += 1
    return conv.ends[k - 1] if k else 0


class SlotPool:
    """Up to ``slots`` conversations on one engine: slot ids 0..slots-1, one of them live.

    Not thread-safe: the engine's one user (the server's engine thread) calls it.
    """

    def __init__(self, engine, slots: int):
        self._engine = engine
        self._spare = engine.new_state() if slots > 1 else None     # None: the backend has no spare caches
        self.slots = slots if self._spare is not None else 1
        self.live = 0
        self._parked: dict[int, EngineState] = {}
        self._clock = 0
        self._last_used: dict[int, int] = {}     # slot -> when it was last taken

    def take(self, messages: list[dict] | None) -> tuple[int, int]:
        """Make the best slot for ``messages`` live (None: a prompt that is not a conversation takes
        the least useful slot). Returns (slot id, tokens it shares with the request)."""
        scores = {i: self._score(i, messages) for i in self._last_used}
        best = max(scores, key=lambda i: (scores[i], self._last_used[i]), default=None)
        if best is None or scores[best] == 0:
            best = self._fresh_slot()
        self._make_live(best)
        self._clock += 1
        self._last_used[best] = self._clock
        return best, scores.get(best, 0)

    def _score(self, slot: int, messages: list[dict] | None) -> int:
        if not messages:
            return 0
        conv = self._engine.conversation if slot == self.live else self._parked[slot].conv
        return shared_tokens(conv, messages)

    def _fresh_slot(self) -> int:
        """A slot never used yet if one is left, else the least recently used one."""
        unused = [i for i in range(self.slots) if i not in self._last_used]
        if unused:
            return unused[0]
        return min(self._last_used, key=self._last_used.get)

    def _make_live(self, slot: int) -> None:
        if slot == self.live:
            return
        state = self._parked.pop(slot, None)
        if state is None:
            state, self._spare = self._spare or self._engine.new_state(), None
        self._engine.swap_state(state)
        self._parked[self.live] = state          # now holds what was live
        self.live = slot
