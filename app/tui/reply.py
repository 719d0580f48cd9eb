"""A reply being generated: its state, the messages its worker posts, and the worker's loop."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from textual.message import Message
from textual.widgets.markdown import MarkdownStream

from ...runtime.events import DoneEvent, TextEvent
from .widgets import MessageView


@dataclass(eq=False)
class Reply:
    """A reply being generated: where it goes and how to stop it."""

    chat_id: int
    view: MessageView
    stream: MarkdownStream
    messages: list[dict]                      # the conversation passed to Engine.chat
    cancel: threading.Event = field(default_factory=threading.Event)
    detached: bool = False                    # the user left the chat: store it, draw nothing
    done: DoneEvent | None = None             # set by the worker when the reply has ended
    kv_note: str = ""                         # set by the worker: "restored" / "re-prefilled (why)" / ""
    restore_s: float = 0.0                    # time the worker spent restoring the chat's KV snapshot


@dataclass
class ReplyChunk(Message):
    """A piece of reply text from the worker."""

    reply: Reply
    text: str


@dataclass
class ReplyDone(Message):
    """The worker's reply finished, hit the length limit or was stopped."""

    reply: Reply
    event: DoneEvent
    spans: list


@dataclass
class PromptBeyondWindow(Message):
    """The prompt is longer than the window: what the user should know before it is read."""

    reply: Reply
    notice: str


@dataclass
class ReplyFailed(Message):
    """The engine raised while replying."""

    reply: Reply
    error: str


def stream_reply(engine, reply: Reply, kwargs: dict, post: Callable[[Message], object],
                 cancelled: Callable[[], bool]) -> None:
    """Run ``Engine.chat`` in a worker thread: post each piece, then the end (or the failure); stop
    within one token (or one chunk of a long prompt) once ``reply.cancel`` is set or ``cancelled()``
    says the worker is; a prompt beyond the window is told first (``PromptBeyondWindow``)."""
    from ..prompt_notice import notice

    def told(fit) -> None:
        if fit.done == 0 and fit.overflows:
            post(PromptBeyondWindow(reply, notice(fit)))
    try:
        for event in engine.chat(reply.messages, cancel=reply.cancel, on_prefill=told, **kwargs):
            if cancelled():
                reply.cancel.set()
            if isinstance(event, TextEvent):
                post(ReplyChunk(reply, event.text))
            else:
                reply.done = event
                post(ReplyDone(reply, event, engine.message_spans()))
    except Exception as e:                   # shown in the chat; the app goes on
        post(ReplyFailed(reply, f"{type(e).__name__}: {e}"))
