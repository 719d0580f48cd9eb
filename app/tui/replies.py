"""The reply lifecycle, without Textual: a reply's state, the worker's loop over ``Engine.chat``, and the
UI thread's book of replies (the one drawn, those not committed yet, a message queued meanwhile).

The worker tells a ``ReplyListener`` what happens (the App's listener posts Textual messages, a test's
records them); the UI thread commits each ended reply to the store through ``Replies.commit``.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

from ...runtime.errors import EdgechatError
from ...runtime.events import DoneEvent, TextEvent
from ..prompt_notice import PrefillClock, Progress, notice
from ..reply_format import chat_format_kwargs, setting_format
from .settings import FIELDS


@dataclass(eq=False)
class Reply:
    """A reply being generated: the conversation it answers, how to stop it, and where it is drawn."""

    chat_id: int
    messages: list[dict]                      # the conversation passed to Engine.chat
    view: object = None                       # the UI's widget for it (a MessageView in the App)
    stream: object = None                     # the UI's Markdown stream for it
    cancel: threading.Event = field(default_factory=threading.Event)
    detached: bool = False                    # the user left the chat: store it, draw nothing
    done: DoneEvent | None = None             # set by the worker when the reply has ended
    kv_note: str = ""                         # set by the worker: "restored" / "re-prefilled (why)" / ""
    restore_s: float = 0.0                    # time the worker spent restoring the chat's KV snapshot
    prefill: Progress | None = None           # set by the worker: reading the prompt, as far as it came
    branch: bool = False                      # the first reply after an edit or a switch of branches


class ReplyListener(Protocol):
    """What the reply worker tells, from its thread."""

    def chunk(self, reply: Reply, text: str, kind: str = "text") -> None: ...
    def beyond_window(self, reply: Reply, notice: str) -> None: ...
    def progress(self, reply: Reply, progress: Progress) -> None: ...
    def done(self, reply: Reply, event: DoneEvent, spans: list) -> None: ...
    def failed(self, reply: Reply, error: str) -> None: ...


def stream_reply(engine, reply: Reply, kwargs: dict, listener: ReplyListener,
                 cancelled: Callable[[], bool]) -> None:
    """Run ``Engine.chat`` (in a worker thread): tell each piece, then the end (or the failure); stop
    within one token (or one chunk of a long prompt) once ``reply.cancel`` is set or ``cancelled()``
    says the worker is; a prompt beyond the window is told first, then how far reading a long one
    has come (after each chunk)."""
    clock = PrefillClock()

    def told(fit) -> None:
        reply.prefill = clock(fit)
        if fit.done == 0 and fit.overflows:
            listener.beyond_window(reply, notice(fit))
        elif fit.done:
            listener.progress(reply, reply.prefill)
    try:
        kwargs = dict(kwargs)                # the chat's reply format: a constrained sampler, or a server's
        fmt = setting_format(kwargs.pop("reply_format", None))      # response_format
        kwargs.update(chat_format_kwargs(engine, fmt, {k: v for k, v in kwargs.items() if k in FIELDS}))
        for event in engine.chat(reply.messages, cancel=reply.cancel, on_prefill=told, **kwargs):
            if cancelled():
                reply.cancel.set()
            if isinstance(event, TextEvent):
                listener.chunk(reply, event.text, event.kind)
            else:
                reply.done = event
                listener.done(reply, event, engine.message_spans())
    except EdgechatError as e:               # a user-facing error (a server's refusal): its one line
        listener.failed(reply, str(e))
    except Exception as e:                   # shown in the chat; the app goes on
        listener.failed(reply, f"{type(e).__name__}: {e}")


class Replies:
    """The UI thread's replies: ``current`` (drawn now), those whose end is not committed yet, and a
    message sent while one ran (queued whole, sent when it ends).

    Args:
        store: the chat history (``store.Store``).
        leases: the window's ``leases.ChatLeases`` (a chat is let go once its replies are committed).
    """

    def __init__(self, store, leases):
        self.store, self.leases = store, leases
        self.current: Reply | None = None
        self.unsaved: list[Reply] = []
        self.queued: tuple[int, str] | None = None     # (chat id, text)

    def begin(self, reply: Reply) -> Reply:
        """``reply`` is the one drawn now; it is committed when it ends."""
        self.unsaved.append(reply)
        self.current = reply
        self.leases.writing(reply.chat_id)
        return reply

    def commit(self, reply: Reply):
        """Commit the ended reply (``reply.done``) to the store.

        Returns:
            the stored message; None if its chat was deleted meanwhile, or it was committed already.
        """
        if reply not in self.unsaved:
            return None
        self._end(reply)
        try:
            if self.store.get_chat(reply.chat_id) is None:
                return None
            event = reply.done
            stats = dict(asdict(event.stats), **({"reasoning": event.reasoning} if event.reasoning else {}))
            return self.store.add_message(reply.chat_id, "assistant", event.text,
                                          finish=event.finish_reason, stats=stats)
        finally:
            self.leases.written(reply.chat_id)

    def failed(self, reply: Reply) -> None:
        """The reply failed: nothing to commit."""
        if reply in self.unsaved:
            self._end(reply)
            self.leases.written(reply.chat_id)

    def _end(self, reply: Reply) -> None:
        self.unsaved.remove(reply)
        if reply is self.current:
            self.current = None

    def stop(self) -> None:
        """Stop the current reply within one token; it is kept (and committed) as it is."""
        if self.current is not None:
            self.current.cancel.set()

    def detach(self) -> Reply | None:
        """Stop the current reply and stop drawing it (it is still committed when it ends)."""
        reply, self.current = self.current, None
        if reply is not None:
            reply.cancel.set()
            reply.detached = True
        return reply

    def cancel_all(self) -> None:
        """Quitting: every reply stops within one token."""
        for reply in self.unsaved:
            reply.cancel.set()

    def commit_ended(self) -> None:
        """Quitting, after the worker stopped: commit every reply that ended but was not committed."""
        for reply in [r for r in self.unsaved if r.done is not None]:
            self.commit(reply)

    def queue(self, chat_id: int, text: str) -> bool:
        """Queue ``text`` for when the current reply ends; False when one is queued already."""
        if self.queued is not None:
            return False
        self.queued = (chat_id, text)
        return True

    def take_queued(self) -> tuple[int, str] | None:
        queued, self.queued = self.queued, None
        return queued
