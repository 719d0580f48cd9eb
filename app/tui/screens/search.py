"""Search every chat (Ctrl+F, /search): results as you type, each with its chat, date and the match in
context; Enter opens the chat at that message."""
from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from ...chat_search import MARK_CLOSE, MARK_OPEN, Hit

ROLES = {"user": "you", "assistant": "assistant", "system": "system"}


def hit_text(hit: Hit) -> Text:
    """``title · date`` then ``role: …context [match] context…`` (the match highlighted)."""
    text = Text.assemble((hit.title, "bold"), " · ",
                         (time.strftime("%Y-%m-%d %H:%M", time.localtime(hit.created)), "dim"),
                         "\n", (f"{ROLES.get(hit.role, hit.role)}: ", "dim"))
    for i, part in enumerate(hit.snippet.replace(MARK_CLOSE, MARK_OPEN).split(MARK_OPEN)):
        text.append(part, "bold reverse" if i % 2 else "")
    return text


class SearchScreen(ModalScreen[Hit | None]):
    """Dismisses with the chosen ``Hit``, or None on Escape.

    Args:
        search: ``Store.search``.
        query: the text to start with (``/search TEXT``).
    """

    BINDINGS = [Binding("escape", "dismiss(None)", "Close"),
                Binding("down", "results", "Results", show=False)]

    def __init__(self, search, query: str = ""):
        super().__init__()
        self._search, self.start_text, self.hits = search, query, []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="search-dialog"):
            yield Label("Search all chats", classes="question")
            yield Input(self.start_text, placeholder="words to find", id="search-input")
            yield Label("", id="search-summary", classes="hint")
            yield OptionList(id="search-results")
            yield Label("Enter opens the chat at the message · Down to the results · Esc closes",
                        classes="hint")

    def on_mount(self) -> None:
        self.query_one("#search-input", Input).focus()
        self._show(self.start_text)

    @on(Input.Changed, "#search-input")
    def _changed(self, event: Input.Changed) -> None:
        self._show(event.value)

    def _show(self, query: str) -> None:
        self.hits = self._search(query) if query.strip() else []
        results = self.query_one("#search-results", OptionList)
        results.set_options(Option(hit_text(h), id=str(i)) for i, h in enumerate(self.hits))
        n = len(self.hits)
        summary = "" if not query.strip() else f"{n} message{'s' * (n != 1)}" if n else "no message matches"
        self.query_one("#search-summary", Label).update(summary)

    @on(Input.Submitted, "#search-input")
    def _submitted(self) -> None:
        if self.hits:
            self.dismiss(self.hits[0])

    def action_results(self) -> None:
        results = self.query_one("#search-results", OptionList)
        if self.hits and not results.has_focus:
            results.focus()
            results.highlighted = 0

    @on(OptionList.OptionSelected, "#search-results")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.hits[int(event.option.id)])
