"""Keys and slash commands."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from ..commands import COMMANDS as SLASH_COMMANDS

KEYS = [
    ("Enter", "send the message; during a reply, queue it"),
    ("Up / Down", "earlier messages you sent"),
    ("Esc, Ctrl+C", "stop the reply (the partial reply is kept)"),
    ("Ctrl+N", "new chat"),
    ("Ctrl+B", "show or hide the chat list"),
    ("Ctrl+F", "search every chat; Enter opens the chat at the message"),
    ("Del / F2", "in the chat list: delete / rename a chat"),
    ("F3", "system prompt and sampling settings of this chat"),
    ("F4", "choose the model of this chat"),
    ("Ctrl+R", "a new reply; the old one stays a branch"),
    ("e / < >", "on a focused message (click, Tab): edit yours as a new branch / show its branches"),
    ("Ctrl+Y", "copy the last reply to the clipboard"),
    ("Ctrl+S", "export this chat to Markdown"),
    ("F1", "this help"),
    ("Ctrl+Q", "quit"),
]
COMMANDS = [(c.usage, c.help) for c in SLASH_COMMANDS]
WINDOW = (
    "The model sees a window of the latest tokens of the chat (its KV cache). When the chat "
    "outgrows it, the oldest turns leave the window: they stay in the transcript, dimmed, above a "
    "line that says how many tokens left. The first tokens stay as attention sinks, which keeps the "
    "model stable however long the chat gets; --pin-system (or the switch in F3) makes the whole "
    "system prompt the sink."
)


def key_table(rows: list[tuple[str, str]]) -> Table:
    """Two columns, no borders: what to press or type, and what it does."""
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(ratio=1)
    for row in rows:
        table.add_row(*map(Text, row))
    return table


class HelpScreen(ModalScreen[None]):
    """The key and command reference; Esc, F1 or q closes it."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide"):
            yield Label("Keys", classes="question")
            yield Static(key_table(KEYS))
            yield Label("Commands", classes="question section")
            yield Static(key_table(COMMANDS))
            yield Label("The context window", classes="question section")
            yield Static(WINDOW)
