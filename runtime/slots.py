"""Several conversations kept warm on one engine: cache slots, chosen by the longest shared prefix.

Each slot is a ``ChatState`` (a ``TokenCache`` of its own and the conversation it holds); the engine
continues one of them at a time (``Engine.use_state``: O(1), no copy, no re-prefill), as llama.cpp's
server keys its prompt cache on the token prefix. A request goes to the slot whose conversation shares
the longest token prefix with it; a request that shares nothing takes an unused slot, else the least
recently used one. Backends without caches of their own (llama.cpp) have one slot: the engine's cache.
"""
from __future__ import annotations

from .chat_state import ChatState
from .conversation import Conversation

SLOT_RAM_SHARE = 0.5    # spare caches may take at most this share of the RAM available at start


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
    """Up to ``slots`` conversations on one engine: slot ids 0..slots-1.

    Not thread-safe: the engine's one user (the server's engine thread) calls it.
    """

    def __init__(self, engine, slots: int):
        self._engine = engine
        self.slots = slots if engine.holds_several else 1
        self._states: dict[int, ChatState] = {0: engine.state}   # slot 0: the engine's own cache
        self.live = 0
        self._clock = 0
        self._last_used: dict[int, int] = {}     # slot -> when it was last taken

    def take(self, messages: list[dict] | None, busy: frozenset = frozenset()) -> tuple[int, int]:
        """Make the best slot for ``messages`` live (None: a prompt that is not a conversation takes
        the least useful slot); slots in ``busy`` are not taken. Returns (slot id, tokens it shares
        with the request)."""
        scores = {i: self._score(i, messages) for i in self._last_used if i not in busy}
        best = max(scores, key=lambda i: (scores[i], self._last_used[i]), default=None)
        if best is None or scores[best] == 0:
            best = self._fresh_slot(busy)
        self._make_live(best)
        self._clock += 1
        self._last_used[best] = self._clock
        return best, scores.get(best, 0)

    def state(self, slot: int) -> ChatState:
        """The slot's conversation and cache (made when first asked)."""
        if slot not in self._states:
            self._states[slot] = self._engine.new_state()
        return self._states[slot]

    def _score(self, slot: int, messages: list[dict] | None) -> int:
        if not messages:
            return 0
        return shared_tokens(self._states[slot].conv, messages)

    def _fresh_slot(self, busy: frozenset) -> int:
        """A slot never used yet if one is left, else the least recently used one not busy."""
        unused = [i for i in range(self.slots) if i not in self._last_used and i not in busy]
        if unused:
            return unused[0]
        return min((i for i in self._last_used if i not in busy), key=self._last_used.get)

    def _make_live(self, slot: int) -> None:
        self._engine.use_state(self.state(slot))
        self.live = slot
