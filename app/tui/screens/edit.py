"""Edit a message you sent: the reply is generated again from there, the earlier branch is kept."""
from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, TextArea


class EditScreen(ModalScreen[str | None]):
    """Dismisses with the edited text, or None on Escape (or when nothing is left)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "save", "Send")]

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Edit your message: the reply is written again, the earlier branch is kept",
                        classes="question")
            yield TextArea(self.text, id="edit-text", soft_wrap=True)
            with Horizontal(classes="buttons"):
                yield Label("Ctrl+S sends · Esc cancels · < > on a message switch branches", classes="hint")
                yield Button("Send", variant="primary", id="send")

    def on_mount(self) -> None:
        area = self.query_one("#edit-text", TextArea)
        area.focus()
        area.move_cursor(area.document.end)

    @on(Button.Pressed, "#send")
    def action_save(self) -> None:
        self.dismiss(self.query_one("#edit-text", TextArea).text.strip() or None)
