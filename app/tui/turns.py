"""The App's turns: sending a message, starting its reply, drawing what the reply worker posts (text,
reading progress, the end or the failure), stopping, detaching and regenerating a reply. Mixed into
``EdgechatApp``; the handlers follow Textual's naming (``on_reply_done`` for ``ReplyDone``)."""
from __future__ import annotations

from dataclasses import asdict

from textual.widgets import Markdown

from . import settings as chat_settings
from .chat_actions import NEW_TITLE
from .messages import PrefillProgress, PromptBeyondWindow, ReplyChunk, ReplyDone, ReplyFailed
from .replies import Reply
from .widgets import MessageView, PromptInput

TITLE_CHARS = 40


class Turns:
    """Needs ``store``, ``replies``, ``host``, ``chat``, ``history``, ``transcript``, ``status`` and the
    chat actions (``_catch_up``, ``_may_write``, ``rename``, ``_show_chat``)."""

    async def _send_queued(self) -> None:
        """Send the message queued during the reply that just ended (if its chat is still shown)."""
        queued = self.replies.take_queued()
        if queued is not None and self.chat and queued[0] == self.chat.id and self._can_reply():
            await self._send(queued[1])

    def _can_reply(self) -> bool:
        if self.reply is not None:
            self.notify("A reply is still coming: Esc stops it.", severity="warning")
        elif self.engine is None:
            self.notify("The model is not loaded yet.", severity="warning")
        return self.reply is None and self.engine is not None and self._may_write(self.chat.id)

    async def _send(self, text: str) -> None:
        """Commit the user message, show it, and start the reply."""
        await self._catch_up()
        message = self.store.add_message(self.chat.id, "user", text)
        self.history.append(message)
        if self.chat.title == NEW_TITLE:
            self.rename(self.chat.id, text.splitlines()[0][:TITLE_CHARS].strip() or NEW_TITLE)
        else:
            self._refresh_chat_list()                 # the chat moves to the top
        self.transcript.anchor()                      # follow the new turn, even if scrolled up
        await self.transcript.add(MessageView("user", text, message_id=message.id))
        await self._start_reply()

    def _engine_messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.chat.system}] if self.chat.system else []
        return system + [{"role": m.role, "content": m.content} for m in self.history]

    async def _start_reply(self, branch: bool = False) -> None:
        view = await self.transcript.add(MessageView("assistant", pending=True))
        reply = Reply(self.chat.id, self._engine_messages(), view, Markdown.get_stream(view.markdown),
                      branch=branch or self._branch_switched)
        self._branch_switched = False
        self.status.reasoning_tokens = 0
        self.replies.begin(reply)
        self._replying_changed()
        self.host.reply(reply, chat_settings.chat_kwargs(self.chat.settings))

    def _replying_changed(self) -> None:
        """Whether a reply is drawn: the chat's look and the Stop key follow."""
        self.query_one("#chat").set_class(self.reply is not None, "-replying")
        self.refresh_bindings()

    async def on_reply_chunk(self, message: ReplyChunk) -> None:
        reply = message.reply
        if reply.detached:
            return
        await reply.view.show_prefill(None)
        if message.kind == "reasoning":
            block = await reply.view.add_reasoning(message.text)
            self.status.reasoning_tokens = block.tokens
        else:
            reply.view.end_reasoning()
            await reply.stream.write(message.text)

    async def on_prefill_progress(self, message: PrefillProgress) -> None:
        if not message.reply.detached:
            await message.reply.view.show_prefill(message.progress)

    def on_prompt_beyond_window(self, message: PromptBeyondWindow) -> None:
        if not message.reply.detached:
            self.notify(message.notice[:1].upper() + message.notice[1:] + ".",
                        title="Longer than the window", severity="warning", timeout=15)

    async def on_reply_done(self, message: ReplyDone) -> None:
        reply, event = message.reply, message.event
        if reply not in self.replies.unsaved:      # committed already (SIGTERM, SIGHUP)
            return
        stored = self.replies.commit(reply)
        if event.error:                            # a server's stream broke off: the partial reply is kept
            self.notify(event.error, title="The reply broke off", severity="error", timeout=10)
        self._show_stats(reply, event, message.spans)
        self._replying_changed()
        if reply.detached:
            if self.chat and reply.chat_id == self.chat.id:          # came back before it ended
                await self._show_chat(self.chat)
            return
        await reply.stream.stop()
        reply.view.end_reasoning()
        await reply.view.finish_reply(event.text, event.finish_reason, stored.id if stored else None,
                                      reply.prefill)
        if stored is not None:
            self.history.append(stored)
            siblings = self.store.siblings(stored.id)             # a regenerated reply: "2/2"
            if len(siblings) > 1:
                reply.view.set_branch(siblings.index(stored.id) + 1, len(siblings))
        self.transcript.map_window(message.spans, event.cache, self._pinned)
        await self._send_queued()

    def _show_stats(self, reply: Reply, event, spans: list) -> None:
        """The reply's speed and the cache, in the status bar and for /stats and the context map; after
        a switch of branches, whether the branch's snapshot was restored or what was re-read."""
        s = event.stats
        if reply.branch and not reply.kv_note:
            reply.kv_note = (f"rebuilt: re-read {s.rebuild_tokens + s.prompt_tokens:,} tokens" if s.rebuild_tokens
                             else f"rolled back: read {s.prompt_tokens:,} tokens")
        if getattr(s, "reasoning_refeed", 0) == -1 and not reply.kv_note:   # the template drops <think>
            reply.kv_note = "reasoning kept in the cache: the ring had evicted its start"
        elif getattr(s, "reasoning_refeed", 0) > 0 and not reply.kv_note:
            reply.kv_note = f"reasoning dropped from the cache: re-read {s.reasoning_refeed:,} tokens"
        self.last_stats = dict(asdict(event.stats), kv=reply.kv_note, restore_s=reply.restore_s)
        self._last_map = (reply.chat_id, spans, event.cache)
        status = self.status
        status.kv_note = reply.kv_note
        status.prefill_tps, status.decode_tps = event.stats.prefill_tps, event.stats.decode_tps
        status.acceptance = event.stats.acceptance
        status.cache = event.cache

    async def on_reply_failed(self, message: ReplyFailed) -> None:
        reply = message.reply
        self.replies.failed(reply)
        self._replying_changed()
        if reply.detached:                       # the user had already left it
            return
        await reply.stream.stop()
        await self.transcript.drop(reply.view)
        self.notify(message.error, title="The reply failed", severity="error", timeout=10)
        await self._send_queued()

    async def _detach_reply(self) -> None:
        """Stop the reply and stop drawing it; it is still stored when the worker ends. A queued
        message goes back to the input, unsent (when that is empty)."""
        queued = self.replies.take_queued()
        prompt = self.query_one(PromptInput)
        if queued is not None and not prompt.value:
            prompt.value = queued[1]
            prompt.cursor_position = len(prompt.value)
        reply = self.replies.detach()
        if reply is not None:
            self._replying_changed()
            await reply.stream.stop()


    def action_stop(self) -> None:
        """Stop the reply within one token; the partial reply is kept."""
        self.replies.stop()

    async def action_regenerate(self) -> None:
        """A new reply to your last message; the one it replaces stays as a branch beside it (``<``/``>``
        on the reply, or /branch N, shows it again, from its KV snapshot)."""
        if not self._can_reply():
            return
        await self._catch_up()
        last = self.history[-1] if self.history else None
        asked = self.history[-2] if last is not None and last.role == "assistant" and len(self.history) > 1 else last
        if asked is None or asked.role != "user":
            self.notify("There is no message to answer yet.")
            return
        if last is not asked:                   # the old reply: a branch beside the new one
            self.history.pop()
            self.store.end_branch_at(asked.id)
            self.host.switch_branch(self.chat.id, last.id, None)     # its cache kept as a snapshot
            await self.transcript.drop(self.transcript.views[-1])
        await self._start_reply(branch=last is not asked)

