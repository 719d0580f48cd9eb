"""A conversation and the cache that holds it: each turn keeps what the cache already holds, rolls
back (or rebuilds from the sinks and a tail) where the message list changed, and returns only the
new ids to feed. ``Engine`` keeps one; serve keeps one per cache slot and steps several at once.
"""
from __future__ import annotations

from array import array

import numpy as np

from .conversation import Conversation
from .events import Stats
from .prefill import PromptFit, fit
from .reply import THINK_OPEN
from .token_cache import TokenCache


class ChatState:
    """A ``TokenCache`` and the ``Conversation`` it holds.

    Args:
        cache: the sequence's cache.
        conv: the conversation (empty, or the one the cache holds).
        pin_system: the sink region is BOS + the whole system prompt (capped at half the window).
        sinks: the sink count otherwise.
    """

    def __init__(self, cache: TokenCache, conv: Conversation, *, pin_system: bool, sinks: int):
        self.cache = cache
        self.conv = conv
        self.pin_system = pin_system
        self.sinks = sinks

    def sync(self, messages: list[dict], variables: dict | None = None) -> tuple[list[int], Stats]:
        """Make the cache hold the conversation ``messages`` + the generation prompt (rendered with the
        template ``variables``) but its last token; returns the ids to feed (at least that one: its
        logits are needed) and the turn's stats so far (prompt tokens, tokens re-fed by a rebuild)."""
        keep = self.conv.prepare(messages, variables)
        target = self.conv.ids
        common = self._pin(self._common(target, keep))
        stats = Stats(rebuild_tokens=self.cache.rollback(common))
        if common == len(target):          # all cached: re-feed the last token for its logits
            self.cache.rollback(common - 1)
            common -= 1
        stats.prompt_tokens = len(target) - common
        return list(target[common:]), stats

    def fit_prompt(self, new: list[int], stats: Stats, truncate: bool) -> tuple[list[int], PromptFit]:
        """How the turn's tokens fit the window (told before any is fed); with ``truncate``, the
        sinks and the last window's worth only (the rest counted as skipped). Returns the ids to feed."""
        c = self.cache.info
        f = fit(len(new), c.capacity, c.sinks, len(self.cache.fed), truncate)
        if f.skipped:
            start = len(self.conv.ids) - (c.capacity - c.sinks)
            self.cache.skip_to(self.conv.ids, start)
            new = list(self.conv.ids[start:])
            stats.prompt_tokens = c.sinks + len(new)
        return new, f

    def thinking(self, tokenizer, reasoning: bool | None) -> tuple[bool, bool]:
        """(split a <think> block off the reply, the block is open already): asked, or (None) when
        the chat template knows ``<think>``; open when the generation prompt ends with the tag."""
        if reasoning is None:
            reasoning = THINK_OPEN in self.conv.template.template_str
        if not reasoning:
            return False, False
        tail = tokenizer.detokenize(list(self.conv.ids[-4:])).rstrip()
        return True, tail.endswith(THINK_OPEN)

    def read_whole(self) -> bool:
        """The cache holds every id of the conversation (not cancelled inside its prompt)."""
        return len(self.cache.fed) == len(self.conv.ids)

    def finish(self, text: str, reasoning: str = "") -> int:
        """The reply joins the conversation; its closing ids are fed when the prompt was read whole
        (else the next turn reads on from where the prompt stopped). A reply with a reasoning block
        joins as its answer alone, as the template writes it in the history: the cache rolls back to
        where the two differ and reads the answer again, unless the ring has evicted that point
        (then the cache keeps the block and the next turn goes on from it).

        Returns:
            tokens read again to drop the reasoning (0: none; -1: kept, the ring had evicted it).
        """
        whole = self.read_whole()
        closing = self.conv.finish(text)
        if not whole:
            return 0
        self.cache.feed(closing)
        if not reasoning:
            return 0
        ids = self.conv.rerender_last()
        if ids is None:
            return 0
        common = self._common(ids, 0)
        if not self.cache.truncate(common):
            return -1                      # the ring evicted past it (a rollback would rebuild): keep it
        self.cache.feed(list(ids[common:]))
        self.conv.adopt(ids)
        return len(ids) - common

    def _common(self, target: array, start: int) -> int:
        """Length of the common prefix of what the cache holds and ``target``; the first ``start``
        ids are known to agree."""
        fed = self.cache.fed
        n = min(len(fed), len(target))
        start = min(start, n)
        if start == n:
            return n
        a = np.frombuffer(fed, dtype=np.int32)[start:n]      # no copy
        b = np.frombuffer(target, dtype=np.int32)[start:n]
        diff = np.flatnonzero(a != b)
        return start + int(diff[0]) if diff.size else n

    def _pin(self, common: int) -> int:
        """--pin-system: the sink region is BOS + the whole system prompt; when the cache is empty or
        the system prompt changed, start over with it (returns the ids still in common)."""
        if not self.pin_system or (self.cache.fed and common >= self.cache.info.sinks):
            return common
        msgs, ends = self.conv.messages, self.conv.ends
        sinks = self.sinks
        if msgs and msgs[0]["role"] == "system":
            sinks = max(1, min(ends[0], self.cache.n_ctx // 2))
        self.cache.reset(sinks)
        return 0
