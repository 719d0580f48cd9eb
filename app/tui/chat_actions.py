"""The App's chat-level actions: which chat is shown, and creating, renaming, deleting, clearing and
changing chats (each change asks the window's leases first, and stops the reply drawn)."""
from __future__ import annotations

from textual.widgets import Label, Static

from ..store import Chat
from . import remote
from . import settings as chat_settings
from .export import chat_markdown, default_name, write_export
from .screens import ConfirmScreen, ModelPicker, SettingsScreen, TextPrompt
from .screens.model_picker import local_models
from .widgets import ChatList, MessageView

NEW_TITLE = "New chat"


class ChatActions:
    """Mixed into ``EdgechatApp``: needs ``store``, ``leases``, ``host``, ``chat``, ``history``,
    ``transcript``, ``_detach_reply``, ``_last_map`` and ``_pinned``."""

    def _initial_chat(self) -> Chat:
        """The latest chat if it is still empty and no other window holds it, else a new one; the
        command line sets its settings."""
        fields = dict(model=remote.local_model(self.args), system=self.args.system or "",
                      settings=chat_settings.from_args(self.args))
        chats = self.store.list_chats()
        if chats and not self.store.messages(chats[0].id) and self.store.claim(chats[0].id) is None:
            self.store.update_chat(chats[0].id, **fields)
            return self.store.get_chat(chats[0].id)
        return self._new_chat(**fields)

    def _new_chat(self, **fields) -> Chat:
        """A new chat, held by this window."""
        chat = self.store.create_chat(NEW_TITLE, **fields)
        self.store.claim(chat.id)
        return chat

    def _may_write(self, chat_id: int) -> bool:
        """True when no other live window writes ``chat_id``; else the user is told."""
        refusal = self.leases.may_write(chat_id)
        if refusal is not None:
            self.notify(refusal.text, title=refusal.title, severity="warning", timeout=8)
        return refusal is None

    async def _catch_up(self) -> None:
        """Show what another window added to this chat while this one only read it."""
        stored = [m.id for m in self.store.messages(self.chat.id)]
        if stored != [m.id for m in self.history]:
            await self._show_chat(self.chat)

    async def _show_chat(self, chat: Chat) -> None:
        """Show ``chat``: its messages (as committed, by any window), its settings, its model (loaded
        if another one is). This window holds it unless another one does."""
        self.chat = chat
        self.leases.show(chat.id)
        self.history = self.store.messages(chat.id)
        views = [MessageView(m.role, m.content, finish=m.finish, message_id=m.id,
                             reasoning=(m.stats or {}).get("reasoning", "")) for m in self.history]
        if chat.system:
            pinned = " · pinned as the attention sink" if chat.settings.get("pin_system") else ""
            views.insert(0, MessageView("system", chat.system, label=f"System prompt{pinned}"))
        await self.transcript.show(views)
        self._mark_branches()
        if self._last_map and self._last_map[0] == chat.id:
            self.transcript.map_window(*self._last_map[1:], self._pinned)
        self._refresh_header()
        self._refresh_chat_list()
        self._ensure_engine()

    def _refresh_header(self) -> None:
        self.query_one("#chat-title", Label).update(self.chat.title)
        self.query_one("#chat-model", Label).update(remote.header_model(self))
        self.query_one("#chat-settings", Label).update(f" · {chat_settings.summary(self.chat.settings)}")

    def _refresh_chat_list(self) -> None:
        self.query_one(ChatList).show(self.store.list_chats(), self.chat.id if self.chat else None)

    def _show_store_problem(self, problem: str | None) -> None:
        banner = self.query_one("#store-problem", Static)
        banner.update(f"⚠ {problem}" if problem else "")
        banner.display = bool(problem)

    async def _switch_to(self, chat_id: int) -> None:
        if self.chat and chat_id == self.chat.id:
            return
        chat = self.store.get_chat(chat_id)
        if chat is not None:
            await self._detach_reply()
            await self._show_chat(chat)

    async def open_message(self, chat_id: int, message_id: int) -> None:
        """Show ``chat_id`` scrolled to ``message_id``, which is marked and focused."""
        await self._switch_to(chat_id)
        if all(m.id != message_id for m in self.history):        # on another branch
            await self.show_branch(message_id)
        views = [v for v in self.transcript.views if v.message_id == message_id]
        for view in self.transcript.query(".-found"):
            view.remove_class("-found")
        if views:
            views[0].add_class("-found")
            self.transcript.scroll_to_widget(views[0], animate=False, top=True)

    async def update_chat(self, **fields) -> None:
        """Save the system prompt, settings or model of the current chat and show it again.

        A reply in progress is stopped first; its partial text is kept.
        """
        if not self._may_write(self.chat.id):
            return
        await self._detach_reply()
        self.store.update_chat(self.chat.id, **fields)
        self._last_map = None                  # the spans were of the conversation before
        await self._show_chat(self.store.get_chat(self.chat.id))

    async def set_thinking(self, arg: str) -> None:
        """``/think on|off``: this chat's thinking switch (kept in its settings)."""
        if arg not in ("on", "off"):
            state = {True: "on", False: "off"}.get(self.chat.settings.get("think"), "the model's default")
            self.notify(f"/think on|off (this chat: {state}).", severity="warning")
            return
        await self.update_chat(settings={**self.chat.settings, "think": arg == "on"})
        template = getattr(getattr(self.engine, "conversation", None), "template", None)
        source = getattr(template, "template_str", None)
        if source is not None and "enable_thinking" not in source:
            self.notify(f"{self.engine.info.name} has no thinking switch in its chat template: /think on "
                        "shows a <think> block when the model writes one; off cannot stop one.",
                        title="No thinking switch", timeout=10)

    def rename(self, chat_id: int, title: str) -> None:
        if not self._may_write(chat_id):
            return
        self.store.update_chat(chat_id, title=title)
        if chat_id == self.chat.id:
            self.chat = self.store.get_chat(chat_id)
            self._refresh_header()
        self._refresh_chat_list()

    async def action_new_chat(self) -> None:
        if self.chat and not self.history and self.chat.title == NEW_TITLE:
            self.notify("This chat is already new.")
            return
        await self._detach_reply()
        c = self.chat
        await self._show_chat(self._new_chat(model=c.model, system=c.system, settings=c.settings))

    def action_export(self, target: str | None = None) -> None:
        name = self.engine.info.name if self.engine else self.chat.model
        text = chat_markdown(self.chat, self.history, name or "default model")
        try:
            path = write_export(text, default_name(self.chat), target)
        except OSError as e:
            self.notify(str(e), title="Export failed", severity="error")
            return
        self.notify(f"Exported to {path}", title="Export")

    def action_settings(self) -> None:
        def saved(result: dict | None) -> None:
            if result is not None:
                self.call_later(self.update_chat, system=result["system"], settings=result["settings"])
        self.push_screen(SettingsScreen(self.chat.title, self.chat.system, self.chat.settings), saved)

    def action_pick_model(self) -> None:
        def chosen(name: str | None) -> None:
            if name is not None:
                self.call_later(self.update_chat, **remote.model_fields(self, name, picked=True))
        self.push_screen(ModelPicker(*remote.picker_models(self, local_models())), chosen)

    def action_rename_chat(self, chat_id: int | None = None) -> None:
        chat = self.store.get_chat(chat_id if chat_id is not None else self.chat.id)

        def renamed(title: str | None) -> None:
            if title:
                self.rename(chat.id, title)
        self.push_screen(TextPrompt("Rename the chat", chat.title), renamed)

    def action_delete_chat(self, chat_id: int | None = None) -> None:
        chat = self.store.get_chat(chat_id if chat_id is not None else self.chat.id)

        def answered(yes: bool | None) -> None:
            if yes:
                self.call_later(self._delete_chat, chat.id)
        self.push_screen(ConfirmScreen(f"Delete “{chat.title}” and its messages?"), answered)

    async def _delete_chat(self, chat_id: int) -> None:
        if not self._may_write(chat_id):
            return
        current = chat_id == self.chat.id
        if current:
            await self._detach_reply()
        self.store.delete_chat(chat_id)
        self.host.forget(chat_id)
        if not current:
            self._refresh_chat_list()
            return
        rest = self.store.list_chats()
        if rest:
            await self._show_chat(rest[0])
        else:
            c = self.chat
            await self._show_chat(self._new_chat(model=c.model, system=c.system, settings=c.settings))

    async def clear_chat(self) -> None:
        if not self._may_write(self.chat.id):
            return
        await self._detach_reply()
        self.store.clear_messages(self.chat.id)
        self.host.forget(self.chat.id)
        await self._show_chat(self.chat)
