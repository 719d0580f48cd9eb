"""A reply's reasoning (its ``<think>`` block): dimmed and collapsible above the answer, open while it
streams, collapsed once the answer starts."""
from __future__ import annotations

from textual.widgets import Collapsible, Static


class ReasoningBlock(Collapsible):
    """``▶ Thought for 42 tokens``; expands to the reasoning text."""

    def __init__(self, text: str = "", tokens: int = 0, streaming: bool = False):
        self.text, self.tokens, self.streaming = text, tokens, streaming
        self._static = Static(text, classes="reasoning-text", markup=False)
        super().__init__(self._static, title=self._heading(), collapsed=not streaming)

    def add(self, piece: str) -> None:
        """A piece of reasoning streamed in."""
        self.text += piece
        self.tokens += 1
        self._static.update(self.text)
        self.title = self._heading()

    def done(self) -> None:
        """The answer starts (or the reply ended): collapse."""
        self.streaming = False
        self.collapsed = True
        self.title = self._heading()

    def _heading(self) -> str:
        what = "Thinking…" if self.streaming else "Thought"
        return f"{what} ({self.tokens:,} tokens)" if self.tokens else what
