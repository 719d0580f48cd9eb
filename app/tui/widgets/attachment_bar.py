"""The files attached to the next message, as chips above the input; pressing a chip removes it."""
from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button

from ..attach import Attachment


class AttachmentBar(Horizontal):
    """One chip per attached file (``📎 notes.md · 12 lines ✕``); hidden when none is attached."""

    @dataclass
    class Removed(Message):
        """The user removed the attachment at ``index``."""

        index: int

    async def show(self, attachments: list[Attachment]) -> None:
        await self.remove_children()
        await self.mount_all(Button(f"📎 {a.chip} ✕", id=f"chip-{i}", classes="chip", compact=True,
                                    tooltip=f"{a.path}: press to remove")
                             for i, a in enumerate(attachments))
        self.display = bool(attachments)

    @on(Button.Pressed, ".chip")
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.Removed(int(event.button.id.removeprefix("chip-"))))
