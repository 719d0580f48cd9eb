"""Stop strings found in the streamed text, across token boundaries, and never emitted.

Text that could still be the start of a stop string is held back until the next piece settles it.
"""
from __future__ import annotations


class StopMatcher:
    """Feed text pieces; get back what may be emitted, and whether a stop string was reached."""

    def __init__(self, stops: list[str]):
        self._stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that is safe to emit after ``piece``; once a stop string is found, the text before
        it and nothing after (``stopped`` is then True)."""
        if self.stopped:
            return ""
        text = self._held + piece
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held, self.stopped = "", True
            return text[:cut]
        keep = self._partial(text)
        self._held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        """At the end of the reply: the text held back (it did not become a stop string)."""
        text, self._held = self._held, ""
        return "" if self.stopped else text

    def _partial(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for s in self._stops:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best
