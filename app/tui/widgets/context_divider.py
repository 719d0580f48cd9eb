"""The line in the transcript where the model's context window begins."""
from __future__ import annotations

from textual.widgets import Static


class ContextDivider(Static):
    """Says how many tokens have left the window and that the attention sinks keep the chat stable."""

    def show(self, evicted: int, capacity: int, sinks: int, pinned_system: bool) -> None:
        keep = ("the pinned system prompt stays in the sink region"
                if pinned_system else f"the first {sinks} tokens stay as attention sinks")
        self.update(f"▲ {evicted:,} tokens above have left the {capacity:,}-token window · {keep}, "
                    "so the model stays stable ▲")
