"""Telling the user about a prompt beyond the window: one notice before prefill, and progress on a
terminal while a long prompt is read."""
from __future__ import annotations

import time
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
        self._t0 = 0.0
        self._drawn = False

    def __call__(self, fit: PromptFit) -> None:
        if self.fit is None:
            self._t0 = time.monotonic()
            line = notice(fit)
            if line:
                self._write(f"edgechat: {line}\n")
        self.fit = fit
        if self.tty and fit.done:
            self._progress(fit)

    def _progress(self, fit: PromptFit) -> None:
        elapsed = time.monotonic() - self._t0
        total = max(fit.to_feed, fit.done)
        left = elapsed / fit.done * (total - fit.done)
        if fit.done >= total:
            self.close()
        elif self._drawn or elapsed + left > PROGRESS_AFTER_S:
            self._write(f"\r\x1b[Kedgechat: reading the prompt: {fit.done:,}/{total:,} tokens "
                        f"({100 * fit.done // total}%), about {left:.0f} s left")
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
