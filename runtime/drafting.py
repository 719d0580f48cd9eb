"""What drafters and the speculative loop share: a draft, a drafter's input, a history view."""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Draft:
    """Proposed tokens and, for a sampled draft, the distribution each was drawn from."""

    tokens: list[int]
    q: list[tuple[np.ndarray, np.ndarray]] | None = None   # per token (ids [n], probs [n]); None: point masses


class Drafter(Protocol):
    name: str

    def propose(self, inp: "DraftInput", k: int) -> Draft:
        """Up to ``k`` tokens that may follow ``inp``'s stream (fewer or none is fine)."""

    def prepare(self, inp: "DraftInput") -> None:
        """Catch up with the target's stream after its prompt was fed (counts as prefill time)."""


@dataclass
class DraftInput:
    """What a drafter sees: the target's logical stream (fed tokens), the token about to be fed, the
    sampler, and how the target's ring maps the stream (``sinks``; ``skip`` tokens dropped by a rebuild)."""

    fed: array
    tok: int | None      # None in ``prepare`` (the prompt was fed, nothing sampled yet)
    sampler: object
    sinks: int
    skip: int

    def tail(self, n: int) -> np.ndarray:
        """The last ``n`` tokens of fed + [tok], int32 (a copy of at most n tokens)."""
        t = np.empty(min(n, len(self.fed) + 1), np.int32)
        t[:-1] = self.fed[len(self.fed) - (t.shape[0] - 1):] if t.shape[0] > 1 else []
        t[-1] = self.tok
        return t


class Prefix:
    """``history[:n]`` of an ``array`` without copying it (the sampler slices its last few ids)."""

    def __init__(self, a: array, n: int):
        self._a, self._n = a, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, s: slice):
        start, stop, _ = s.indices(self._n)
        return self._a[start:stop]
