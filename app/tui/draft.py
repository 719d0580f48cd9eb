"""The App's draft: files attached to the next message (``/attach PATH``, a pasted path), shown as
chips above the input and sent with it as fenced blocks. Mixed into ``EdgechatApp``."""
from __future__ import annotations

from ...runtime.prefill import fit
from ..prompt_notice import notice
from .attach import Attachment, AttachRefused, message_with, read_attachment
from .widgets import AttachmentBar, PromptInput


class Draft:
    """Needs ``attachments`` (a list), ``engine``, ``args`` and ``notify``."""

    attachments: list[Attachment]

    async def attach(self, path: str) -> None:
        """Attach the file at ``path`` to the next message; a refused one is one notice; a file longer
        than the window gets the long-prompt notice now, before it is sent."""
        if not path.strip():
            self.notify("/attach PATH adds a text file to your next message.", severity="warning")
            return
        try:
            attachment = read_attachment(path)
        except AttachRefused as e:
            self.notify(str(e), title="Cannot attach", severity="warning", timeout=8)
            return
        self.attachments.append(attachment)
        await self.query_one(AttachmentBar).show(self.attachments)
        self._warn_if_longer_than_window(attachment)

    def _warn_if_longer_than_window(self, attachment: Attachment) -> None:
        engine = self.engine
        if engine is None or not hasattr(engine, "tokenize"):
            return
        cache = engine.cache_info()
        tokens = len(engine.tokenize(attachment.fenced()))
        line = notice(fit(tokens, cache.capacity, cache.sinks, cache.used,
                          bool(getattr(self.args, "truncate_prompt", False))))
        if line:
            self.notify(f"{attachment.name}: {line}.", title="Longer than the window", severity="warning",
                        timeout=15)

    async def on_attachment_bar_removed(self, message: AttachmentBar.Removed) -> None:
        del self.attachments[message.index]
        await self.query_one(AttachmentBar).show(self.attachments)
        self.query_one(PromptInput).focus()

    async def on_prompt_input_path_pasted(self, message: PromptInput.PathPasted) -> None:
        await self.attach(message.path)

    async def _take_draft(self, text: str) -> str:
        """The message to send: ``text`` with the attached files, which are cleared."""
        message = message_with(text, self.attachments)
        if self.attachments:
            self.attachments = []
            await self.query_one(AttachmentBar).show([])
        return message
