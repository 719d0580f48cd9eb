"""A prompt against the window: how it fits (told before prefill), and feeding it in chunks.

A prompt longer than the cache cannot be held whole: its earliest tokens (after the sinks) leave the
window while the rest is read. ``PromptFit`` says so before any token is fed (``Engine.chat`` hands
it to its ``on_prefill`` callback, then again after each chunk with ``done`` updated). With
``truncate`` the engine skips the tokens that would leave anyway: the sinks and the last window's
worth are fed, the rest never is (the cache ends as it would after reading them, less their
influence on what stays, at a fraction of the cost).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

# tokens per backend call when a prompt is longer: between two chunks a cancel is seen, Ctrl-C
# (SIGINT) gets its turn and the progress callback is told
PREFILL_CHUNK = 256


@dataclass(frozen=True)
class PromptFit:
    """The tokens a turn feeds against the cache's capacity.

    Attributes:
        tokens: prompt tokens of this turn (before any truncation).
        window: cache capacity in tokens, sinks included (``--ctx``).
        sinks: pinned entries.
        room: how many of this turn's tokens the cache can hold at once (the capacity, less the
            sinks when earlier tokens already fill them).
        skipped: tokens ``truncate`` leaves out (never fed).
        done: tokens fed so far.
    """

    tokens: int
    window: int
    sinks: int
    room: int
    skipped: int = 0
    done: int = 0

    @property
    def overflows(self) -> bool:
        """True when the earliest tokens of this prompt cannot stay in the window."""
        return self.tokens > self.room

    @property
    def leaving(self) -> int:
        """Prompt tokens that leave the window (or are skipped) before the reply starts."""
        return max(0, self.tokens - self.room)

    @property
    def to_feed(self) -> int:
        return self.tokens - self.skipped

    def fed(self, done: int) -> "PromptFit":
        return replace(self, done=done)

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "window": self.window, "sinks": self.sinks,
                "beyond_window": self.overflows, "leaving": self.leaving,
                "truncated": self.skipped > 0, "skipped": self.skipped}


def fit(tokens: int, window: int, sinks: int, held: int, truncate: bool) -> PromptFit:
    """How ``tokens`` new tokens fit a cache of ``window`` entries that holds ``held`` tokens.

    With ``truncate`` and a prompt beyond the room, all but the sinks and the last window's worth
    (``window - sinks``) of the conversation are skipped.
    """
    room = window - min(sinks, held)
    f = PromptFit(tokens=tokens, window=window, sinks=sinks, room=room)
    if truncate and f.overflows:
        f = replace(f, skipped=tokens - (window - sinks) - max(0, sinks - held))
    return f


def feed_chunks(feed: Callable[[list[int]], object], ids: list[int], cancelled: Callable[[], bool],
                told: Callable[[int], None] | None) -> object | None:
    """Feed ``ids`` ``PREFILL_CHUNK`` at a time; the last chunk's result, or None when cancelled
    between two chunks. ``told(n)`` hears the tokens fed so far after each chunk."""
    out = None
    for start in range(0, len(ids), PREFILL_CHUNK):
        if start and cancelled():
            return None
        out = feed(ids[start:start + PREFILL_CHUNK])
        if told is not None:
            told(min(start + PREFILL_CHUNK, len(ids)))
    return out
