"""The App's edits and branches: ``e`` on a focused message you sent (or ``/edit``) writes it again as a
new branch beside the old one and regenerates the reply; ``<``/``>`` on a focused message (or
``/branch N``) shows its other branches. Branches live in the chat database (``Store.siblings``,
``show_branch``); the engine host keeps the snapshot of a branch left and restores it on return.
Mixed into ``EdgechatApp``."""
from __future__ import annotations

from .screens import EditScreen
from .widgets import MessageView


class Branches:
    """Needs ``store``, ``host``, ``chat``, ``history``, ``transcript`` and the turns and chat actions."""

    def _mark_branches(self) -> None:
        """Each shown message with siblings says which branch it is (``2/3``)."""
        for view in self.transcript.views:
            if view.message_id is not None:
                siblings = self.store.siblings(view.message_id)
                view.set_branch(siblings.index(view.message_id) + 1, len(siblings))

    def on_message_view_edit_requested(self, message: MessageView.EditRequested) -> None:
        self.action_edit(message.view.message_id)

    async def on_message_view_branch_requested(self, message: MessageView.BranchRequested) -> None:
        await self.step_branch(message.view.message_id, message.step)

    def action_edit(self, message_id: int | None = None) -> None:
        """Edit a message you sent (default: your last one) in a dialog."""
        target = self._editable(message_id)
        if target is None:
            return

        def edited(text: str | None) -> None:
            if text and text != target.content:
                self.call_later(self.edit_message, target.id, text)
        self.push_screen(EditScreen(target.content), edited)

    def _editable(self, message_id: int | None):
        users = [m for m in self.history if m.role == "user"]
        target = next((m for m in users if m.id == message_id), None) if message_id else (users or [None])[-1]
        if target is None:
            self.notify("Only your own messages can be edited (focus one, then e).", severity="warning")
        return target

    async def edit_message(self, message_id: int | None, text: str) -> None:
        """Send ``text`` in place of message ``message_id`` (default: your last one), as a new branch."""
        target = self._editable(message_id)
        if target is None or not self._can_reply():
            return
        await self._catch_up()
        leaving = self.history[-1].id if self.history else None
        await self._detach_reply()
        message = self.store.add_message(self.chat.id, "user", text, parent=target.parent)
        self.host.switch_branch(self.chat.id, leaving, None)
        await self._show_chat(self.store.get_chat(self.chat.id))
        self.transcript.anchor()
        await self._start_reply(branch=True)
        self._focus_message(message.id)

    async def step_branch(self, message_id: int, step: int) -> None:
        """Show the previous (-1) or next (1) branch at message ``message_id``."""
        siblings = self.store.siblings(message_id)
        if len(siblings) < 2:
            self.notify("This message has no other branch (e on one of yours makes one).")
            return
        await self.show_branch(siblings[(siblings.index(message_id) + step) % len(siblings)])

    async def branch_command(self, arg: str) -> None:
        """``/branch N``: branch N of the focused message, or of the latest message that has branches."""
        focused = self.focused if isinstance(self.focused, MessageView) else None
        views = [focused] if focused and focused.branch else [v for v in self.transcript.views if v.branch]
        if not views:
            self.notify("No message of this chat has branches (e on one of yours makes one).")
            return
        siblings = self.store.siblings(views[-1].message_id)
        if not arg.isdigit() or not 1 <= int(arg) <= len(siblings):
            self.notify(f"/branch N: N from 1 to {len(siblings)}.", severity="warning")
            return
        await self.show_branch(siblings[int(arg) - 1])

    async def show_branch(self, message_id: int) -> None:
        """Show the branch through ``message_id`` (a reply in progress is stopped and kept)."""
        if not self._may_write(self.chat.id):
            return
        await self._detach_reply()
        leaving = self.store.get_chat(self.chat.id).leaf
        self.store.show_branch(message_id)
        chat = self.store.get_chat(self.chat.id)
        self.host.switch_branch(chat.id, leaving, chat.leaf)
        self._branch_switched = True
        await self._show_chat(chat)
        self._focus_message(message_id)

    def _focus_message(self, message_id: int) -> None:
        for view in self.transcript.views:
            if view.message_id == message_id:
                view.focus()
                self.transcript.scroll_to_widget(view, animate=False)
