"""Telling the user about a prompt beyond the window: one notice before prefill, and progress on a
terminal while a long prompt is read."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

from ..runtime.prefill import PromptFit

PROGRESS_AFTER_S = 1.0     # draw progress when reading the prompt is estimated to take longer


def notice(fit: PromptFit) -> str | None:
    """One line for a prompt whose earliest tokens cannot stay in the window (None when it fits)."""
    if not fit.overflows:
        return None
    head = f"the prompt is {fit.tokens:,} tokens and the window (--ctx) holds {fit.window:,}"
    if fit.skipped:
        return (f"{head}: --truncate-prompt keeps the first {fit.sinks} (attention sinks) and the last "
                f"{fit.window - fit.sinks:,}, and skips the {fit.skipped:,} between them")
    return (f"{head}: the earliest {fit.leaving:,} will leave the window while it is read "
            "(--truncate-prompt skips them instead)")


@dataclass(frozen=True)
class Progress:
    """How far reading a prompt has come, and the time left at the pace so far."""

    done: int                  # tokens read
    total: int                 # tokens to read
    elapsed_s: float
    left_s: float

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    @property
    def worth_showing(self) -> bool:
        """Reading the whole prompt takes longer than ``PROGRESS_AFTER_S`` (estimated)."""
        return self.elapsed_s + self.left_s > PROGRESS_AFTER_S

    def line(self) -> str:
        """E.g. ``1,024/4,096 tokens (25%), about 6 s left``."""
        return (f"{self.done:,}/{self.total:,} tokens ({100 * self.done // max(self.total, 1)}%), "
                f"about {self.left_s:.0f} s left")


class PrefillClock:
    """``Engine.chat``'s ``on_prefill`` fits in, ``Progress`` out: the clock starts at the first call
    (before any token is read)."""

    def __init__(self):
        self._t0: float | None = None

    def __call__(self, fit: PromptFit) -> Progress:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        elapsed = now - self._t0
        total = max(fit.to_feed, fit.done)
        left = elapsed / fit.done * (total - fit.done) if fit.done else 0.0
        return Progress(fit.done, total, elapsed, left)


class PrefillReporter:
    """``Engine.chat``'s ``on_prefill``: the notice on ``stream`` first, then a progress line that
    redraws itself when ``stream`` is a terminal and the prompt takes more than ``PROGRESS_AFTER_S``.

    Args:
        stream: where to write (stderr).
        tty: draw progress (default: ``stream.isatty()``).
    """

    def __init__(self, stream: TextIO, tty: bool | None = None):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.fit: PromptFit | None = None
        self.streamed = 0                  # reply tokens streamed (counted by the caller)
        self._clock = PrefillClock()
        self._drawn = False

    def __call__(self, fit: PromptFit) -> None:
        progress = self._clock(fit)
        if self.fit is None:
            line = notice(fit)
            if line:
                self._write(f"edgechat: {line}\n")
        self.fit = fit
        if self.tty and fit.done:
            self._progress(progress)

    def _progress(self, p: Progress) -> None:
        if p.finished:
            self.close()
        elif self._drawn or p.worth_showing:
            self._write(f"\r\x1b[Kedgechat: reading the prompt: {p.line()}")
            self._drawn = True

    def close(self) -> None:
        """Erase the progress line (the reply starts where it was)."""
        if self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):        # the terminal is gone: nothing to tell
            pass
