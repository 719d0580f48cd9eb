"""Prompt-lookup drafting: guess the next tokens by finding the last few tokens earlier in the stream.

A chat's long replies often repeat text already in the context (fix this code, rewrite this, quote
that): when the stream's last ``n`` tokens occurred before, the tokens that followed them then are a
cheap draft of what follows now (Saxena's prompt lookup decoding; llama.cpp's ``lookup``). The longest
n-gram wins, and among equal ones the most recent occurrence.
"""
from __future__ import annotations

import numpy as np

from .drafting import Draft

MAX_NGRAM = 6          # longest suffix looked for (a longer match picks the right one of many)
MIN_NGRAM = 3          # shortest: shorter matches guess wrong too often to pay for their verify batches
SEARCH_SPAN = 1 << 15  # tokens searched back from the end (bounds the cost per token in a long chat)


class PromptLookup:
    """Drafts from the token stream itself (no model).

    Args:
        max_ngram: the longest suffix of the stream looked for.
        min_ngram: the shortest one.
        span: how many of the latest tokens are searched.
    """

    name = "lookup"

    def __init__(self, max_ngram: int = MAX_NGRAM, min_ngram: int = MIN_NGRAM, span: int = SEARCH_SPAN):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("need 1 <= min_ngram <= max_ngram")
        self.max_ngram, self.min_ngram, self.span = max_ngram, min_ngram, span

    def prepare(self, inp) -> None:
        """Nothing to catch up with: the stream is searched as it is."""

    def propose(self, inp, k: int) -> Draft:
        """A ``Draft`` of up to ``k`` tokens after ``inp``'s stream (a ``DraftInput``)."""
        return Draft(self.find(inp.tail(self.span), k))

    def find(self, stream: np.ndarray, k: int) -> list[int]:
        """Up to ``k`` tokens that followed the latest earlier occurrence of the stream's longest
        matching suffix; [] when no suffix of ``min_ngram`` tokens or more occurred before.

        Args:
            stream: int32 ``[n]`` token ids so far, the last one included.
            k: the most tokens wanted.
        """
        h = stream[-self.span:]
        n = h.shape[0]
        if k < 1 or n <= self.min_ngram:
            return []
        ends = np.flatnonzero(h[:n - 1] == h[n - 1])     # ends: [m] earlier positions of the last token
        best = None
        for j in range(1, self.max_ngram):               # ends whose previous j tokens also match
            ends = ends[ends >= j]
            ends = ends[h[ends - j] == h[n - 1 - j]]
            if ends.size == 0:
                break
            if j + 1 >= self.min_ngram:
                best = int(ends[-1])                     # the most recent of the longest match so far
        if best is None and self.min_ngram == 1 and n > 1:
            hit = np.flatnonzero(h[:n - 1] == h[n - 1])
            best = int(hit[-1]) if hit.size else None
        if best is None:
            return []
        return h[best + 1:best + 1 + k].tolist()
