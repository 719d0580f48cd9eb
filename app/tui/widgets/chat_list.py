"""The sidebar's list of saved chats."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ...store import Chat


class ChatList(OptionList):
    """Saved chats, the most recent first; Enter opens one, Delete deletes it, F2 renames it."""

    BINDINGS = [
        Binding("delete", "delete_chat", "Delete chat", show=False),
        Binding("f2", "rename_chat", "Rename", show=False),
    ]

    @dataclass
    class DeleteRequested(Message):
        """The user asked to delete a chat."""

        chat_id: int

    @dataclass
    class RenameRequested(Message):
        """The user asked to rename a chat."""

        chat_id: int

    def show(self, chats: list[Chat], current: int | None) -> None:
        """List ``chats`` and highlight the ``current`` one."""
        self.set_options(Option(self._prompt(c, c.id == current), id=str(c.id)) for c in chats)
        if current is not None:
            self.highlighted = self.get_option_index(str(current))

    @staticmethod
    def _prompt(chat: Chat, current: bool) -> Text:
        text = Text(("● " if current else "  ") + chat.title, no_wrap=True, overflow="ellipsis")
        if current:
            text.stylize("bold")
        return text

    def _highlighted_chat(self) -> int | None:
        option = self.highlighted_option
        return int(option.id) if option is not None else None

    def action_delete_chat(self) -> None:
        if (chat_id := self._highlighted_chat()) is not None:
            self.post_message(self.DeleteRequested(chat_id))

    def action_rename_chat(self) -> None:
        if (chat_id := self._highlighted_chat()) is not None:
            self.post_message(self.RenameRequested(chat_id))
