"""Reading a long prompt: a progress bar with tokens done / total and the time left, in the reply's place."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from ...prompt_notice import Progress


class PrefillBar(Horizontal):
    """``Reading the prompt ▕████──▏ 25%  1,024/4,096 tokens, about 6 s left · Esc stops``."""

    def compose(self) -> ComposeResult:
        yield Label("Reading the prompt", classes="what")
        yield ProgressBar(show_eta=False)
        yield Label(classes="figures")

    def show(self, progress: Progress) -> None:
        self.query_one(ProgressBar).update(total=progress.total, progress=progress.done)
        self.query_one(".figures", Label).update(
            f"{progress.done:,}/{progress.total:,} tokens, about {progress.left_s:.0f} s left · Esc stops")
