"""The Textual messages the engine host's workers post to the App, and the listener that posts them."""
from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from ...runtime.events import DoneEvent
from ..prompt_notice import Progress
from .replies import Reply


@dataclass
class EngineLoaded(Message):
    """A model finished loading."""

    engine: object
    key: tuple


@dataclass
class EngineFailed(Message):
    """A model could not be loaded."""

    key: tuple
    error: str


@dataclass
class ReplyChunk(Message):
    """A piece of reply text from the worker."""

    reply: Reply
    text: str
    kind: str = "text"                  # "reasoning": a piece of the reply's <think> block


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
class PrefillProgress(Message):
    """Reading a long prompt: how far it has come."""

    reply: Reply
    progress: Progress


@dataclass
class ReplyFailed(Message):
    """The engine raised while replying."""

    reply: Reply
    error: str


class Poster:
    """``host.HostListener`` for the App: each call from a worker thread becomes a posted message."""

    def __init__(self, app):
        self.post = app.post_message

    def engine_loaded(self, engine, key: tuple) -> None:
        self.post(EngineLoaded(engine, key))

    def engine_failed(self, key: tuple, error: str) -> None:
        self.post(EngineFailed(key, error))

    def chunk(self, reply: Reply, text: str, kind: str = "text") -> None:
        self.post(ReplyChunk(reply, text, kind))

    def beyond_window(self, reply: Reply, notice: str) -> None:
        self.post(PromptBeyondWindow(reply, notice))

    def progress(self, reply: Reply, progress: Progress) -> None:
        self.post(PrefillProgress(reply, progress))

    def done(self, reply: Reply, event: DoneEvent, spans: list) -> None:
        self.post(ReplyDone(reply, event, spans))

    def failed(self, reply: Reply, error: str) -> None:
        self.post(ReplyFailed(reply, error))
