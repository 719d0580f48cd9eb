"""One message in the transcript: a role line and a Markdown body."""
from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, Markdown

from ...prompt_notice import Progress
from .prefill_bar import PrefillBar
from .reasoning import ReasoningBlock

FINISH_NOTES = {
    "cancelled": "■ stopped: the partial reply is kept",
    "length": "… cut at the reply length limit",
    "error": "✖ the server's stream broke off: the partial reply is kept",
}
PENDING_NOTE = "▍ writing… Esc stops"
WINDOW_NOTES = {
    "evicted": "left the context window: the model no longer sees this",
    "sinks": "left the context window, but for its first tokens, kept as attention sinks",
    "partial": "its start has left the context window",
}


class MessageView(Vertical):
    """A message of one role; ``-evicted``/``-partial`` dim it, ``-stopped``/``-pending`` mark a reply.

    A stored message can be focused (click, Tab): ``e`` edits it (yours), ``<``/``>`` show its other
    branches; the role line says which branch it is (``2/3``).
    """

    BINDINGS = [
        Binding("e", "edit", "Edit"),
        Binding("less_than_sign", "branch(-1)", "Prev branch"),
        Binding("greater_than_sign", "branch(1)", "Next branch"),
    ]

    @dataclass
    class EditRequested(Message):
        """``e`` on a focused message."""

        view: "MessageView"

    @dataclass
    class BranchRequested(Message):
        """``<`` or ``>`` on a focused message: the previous or next branch."""

        view: "MessageView"
        step: int

    def __init__(self, role: str, content: str = "", label: str | None = None,
                 finish: str | None = None, message_id: int | None = None, pending: bool = False,
                 reasoning: str = ""):
        classes = [f"message -{role}"] + ["-pending"] * pending + ["-stopped"] * (finish == "cancelled")
        super().__init__(classes=" ".join(classes))
        self.role = role
        self.content = content
        self.label = label or {"user": "You", "assistant": "Assistant", "system": "System"}[role]
        self.finish = finish
        self.message_id = message_id
        self.pending = pending                 # a reply still being written
        self.window: str | None = None         # None (in the window), "evicted", "sinks", "partial"
        self.stopped_reading: Progress | None = None   # stopped while the prompt was read
        self.branch: tuple[int, int] | None = None     # (this one, of how many) when it has siblings
        self.can_focus = message_id is not None and role != "system"
        self.reasoning = reasoning               # the reply's <think> block, as stored

    def compose(self) -> ComposeResult:
        yield Label(self._role_line(), classes="role")
        if self.reasoning:
            yield ReasoningBlock(self.reasoning)
        yield Markdown(self.content)
        yield Label(self._note(), classes="note")

    def on_mount(self) -> None:
        self._refresh_note()

    async def add_reasoning(self, piece: str) -> ReasoningBlock:
        """A piece of the reply's reasoning: into its block (made, open, on the first piece)."""
        blocks = self.query(ReasoningBlock)
        if blocks:
            block = blocks.first()
        else:
            block = ReasoningBlock(streaming=True)
            await self.mount(block, before=self.markdown)
        block.add(piece)
        return block

    def end_reasoning(self) -> None:
        """The answer starts: the reasoning block (if any) collapses."""
        for block in self.query(ReasoningBlock):
            if block.streaming:
                block.done()

    def _role_line(self) -> str:
        if self.branch is None:
            return self.label
        return f"{self.label}  ‹ {self.branch[0]}/{self.branch[1]} ›"

    def set_branch(self, index: int, count: int) -> None:
        """This message is branch ``index`` (1-based) of ``count``; one alone shows nothing."""
        self.branch = (index, count) if count > 1 else None
        if self.is_mounted:
            self.query_one(".role", Label).update(self._role_line())

    def action_edit(self) -> None:
        self.post_message(self.EditRequested(self))

    def action_branch(self, step: int) -> None:
        self.post_message(self.BranchRequested(self, step))

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    async def show_prefill(self, progress: Progress | None) -> None:
        """Reading a long prompt: how far it has come (None: done, the bar goes)."""
        bars = self.query(PrefillBar)
        if progress is None or progress.finished:
            await bars.remove()
        elif bars:
            bars.first().show(progress)
        elif progress.worth_showing:
            bar = PrefillBar()
            await self.mount(bar, before=self.markdown)
            bar.show(progress)

    async def finish_reply(self, content: str, finish: str, message_id: int | None,
                           prefill: Progress | None = None) -> None:
        """The reply is complete (or stopped): remember it and show how it ended (stopped while the
        prompt was read: how much of it was)."""
        await self.show_prefill(None)
        self.content, self.finish, self.message_id = content, finish, message_id
        self.can_focus = message_id is not None          # stored: focus it for < / > as any other
        self.stopped_reading = prefill if finish == "cancelled" and prefill and not prefill.finished else None
        self.pending = False
        self.set_class(finish == "cancelled", "-stopped")
        self.remove_class("-pending")
        self._refresh_note()

    def set_window(self, window: str | None) -> None:
        """Mark whether this message is in the context window (None), evicted or partly evicted."""
        self.window = window
        self.set_class(window in ("evicted", "sinks"), "-evicted")
        self.set_class(window == "partial", "-partial")
        self._refresh_note()

    def _note(self) -> str:
        if self.pending:
            return PENDING_NOTE
        finish = FINISH_NOTES.get(self.finish or "")
        if self.stopped_reading is not None:
            p = self.stopped_reading
            finish = f"■ stopped while reading the prompt ({p.done:,} of {p.total:,} tokens read)"
        notes = [finish, WINDOW_NOTES.get(self.window or "")]
        return " · ".join(n for n in notes if n)

    def _refresh_note(self) -> None:
        note = self._note()
        label = self.query_one(".note", Label)
        label.update(note)
        label.display = bool(note)
