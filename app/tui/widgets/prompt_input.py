"""The message input, with a history of what was sent (Up/Down) and slash-command suggestions."""
from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Input

from ..attach import pasted_path
from ..commands import NAMES as SLASH_COMMANDS


class PromptInput(Input):
    """Single-line input; Up/Down walk through earlier messages; a pasted file path attaches the file."""

    @dataclass
    class PathPasted(Message):
        """The user pasted the path of an existing file."""

        path: str

    BINDINGS = [
        Binding("up", "history(-1)", "Previous message", show=False),
        Binding("down", "history(1)", "Next message", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(suggester=SuggestFromList(SLASH_COMMANDS, case_sensitive=False), **kwargs)
        self.history: list[str] = []
        self._pos = 0               # index into history; len(history) = the draft being typed
        self._draft = ""

    def _on_paste(self, event: events.Paste) -> None:
        path = pasted_path(event.text)
        if path is None:                  # Input's own handler inserts the text
            return
        event.prevent_default()
        event.stop()
        self.post_message(self.PathPasted(path))

    def remember(self, text: str) -> None:
        """Add a sent message to the history and go back to an empty draft."""
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._pos, self._draft = len(self.history), ""

    def action_history(self, step: int) -> None:
        pos = min(max(self._pos + step, 0), len(self.history))
        if pos == self._pos:
            return
        if self._pos == len(self.history):
            self._draft = self.value
        self._pos = pos
        self.value = self.history[pos] if pos < len(self.history) else self._draft
        self.cursor_position = len(self.value)
