"""One stream's reply, fed one sampled token at a time (or text, from a remote server), returning text
events: the end-of-turn token, incremental detokenizing (never splits a UTF-8 character), stop strings
(cut across token boundaries, never emitted), a reasoning block (``<think>...</think>``) told apart from
the answer, the token limit, and the time to the first token.

``Engine.chat`` is a loop over it; serve's jobs, the one-shot CLI and a scheduler stepping several
streams each keep one per stream.
"""
from __future__ import annotations

import time
from typing import Sequence

from .events import TextEvent
from .stops import StopMatcher
from .tokenizer import IncrementalDecoder

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class Reply:
    """The reply of one stream.

    Args:
        tokenizer: the model's tokenizer (``eot_ids``, ``token_bytes``); None for a text-only reply
            (``feed_text``: a remote server's stream).
        max_tokens: the reply ends with finish reason "length" after this many tokens (None: no limit).
        stops: stop strings: the reply ends (finish reason "stop") before the first one found.
        reasoning: split a ``<think>`` block off the answer (its events have kind "reasoning").
        in_reasoning: the prompt already opened the block (a template that writes ``<think>`` itself).
        tools: a ``tools.ToolSet``: the answer's text is held until the reply ends, then its tool calls
            are parsed out (``tool_calls``, finish reason "tool_calls") and the rest is the text; a call
            left malformed stays text.
    """

    def __init__(self, tokenizer=None, *, max_tokens: int | None = None, stops: Sequence[str] = (),
                 reasoning: bool = False, in_reasoning: bool = False, tools=None):
        self._decoder = IncrementalDecoder(tokenizer) if tokenizer is not None else None
        self._eot = tokenizer.eot_ids if tokenizer is not None else frozenset()
        self._stops = StopMatcher(list(stops or ()))
        self._split = ReasoningSplit(in_reasoning) if reasoning or in_reasoning else None
        self.max_tokens = max_tokens
        self.tokens: list[int] = []           # the reply's tokens (an end-of-turn token is not one)
        self.finish_reason: str | None = None  # "stop" | "length" | "cancelled" once done
        self.t_start = time.perf_counter()
        self.t_first: float | None = None     # when the first token came
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._tools = tools if tools is not None and tools.active else None
        self.tool_calls: list = []            # tools.ToolCall, once the reply ended with calls

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def stopped(self) -> bool:
        """A stop string ended the reply (its tokens are not part of the reply's text)."""
        return self._stops.stopped

    @property
    def text(self) -> str:
        """The answer so far (without the reasoning block)."""
        return "".join(self._text)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    def think(self, in_reasoning: bool = False) -> None:
        """Split a ``<think>`` block off the answer from now on (before the first token): the chat
        decides once its prompt is rendered (``ChatState.thinking``)."""
        if not self.tokens and self.t_first is None:
            self._split = ReasoningSplit(in_reasoning)

    def feed(self, token: int) -> list[TextEvent]:
        """One sampled token; returns the text events it completes. An end-of-turn token ends the
        reply (finish "stop"), as do a stop string and the token limit (finish "length")."""
        if self.done:
            return []
        self._first()
        if token in self._eot:
            self.finish_reason = "stop"
            return self._calls(self._flush())
        self.tokens.append(token)
        events = self._emit(self._decoder.feed(token), token)
        if self.stopped:
            self.finish_reason = "stop"
        elif self.max_tokens is not None and len(self.tokens) >= self.max_tokens:
            self.finish_reason = "length"
        return self._calls(events + self._flush() if self.done else events)

    def feed_text(self, text: str) -> list[TextEvent]:
        """A piece of text that came as text (a remote server's delta)."""
        if self.done:
            return []
        self._first()
        events = self._emit(text, -1)
        if self.stopped:
            self.finish_reason = "stop"
            events += self._flush()
        return events

    def close(self, reason: str = "cancelled") -> list[TextEvent]:
        """End a reply whose tokens stopped coming (cancelled, or the limit of the token source):
        returns the text still held back; the finish reason stays if one was set."""
        if self.done:
            return []
        self.finish_reason = reason
        return self._calls(self._flush())

    def timings(self) -> tuple[float, float]:
        """(time to the first token, time from it to now) in seconds."""
        now = time.perf_counter()
        first = self.t_first or now
        return first - self.t_start, now - first

    # ---- internals ------------------------------------------------------------------------------

    def _calls(self, events: list[TextEvent]) -> list[TextEvent]:
        """With tools: the answer's events held back; at the end, the calls parsed out of the text."""
        if self._tools is None:
            return events
        events = [e for e in events if e.kind != "text"]
        if not self.done:
            return events
        if self.finish_reason == "stop" and not self.stopped:
            parsed = self._tools.parse(self.text)
            if parsed.calls:
                self.tool_calls, self.finish_reason = parsed.calls, "tool_calls"
            content = parsed.content or ""
        else:
            content = self.text            # cut by the limit or a stop string: as is, never dropped
        return events + ([TextEvent(content, -1)] if content else [])

    def _first(self) -> None:
        if self.t_first is None:
            self.t_first = time.perf_counter()

    def _flush(self) -> list[TextEvent]:
        """Everything held back (an unfinished character, a possible stop string, a partial tag)."""
        tail = self._decoder.flush() if self._decoder is not None else ""
        events = self._emit(tail, -1) if tail else []
        rest = self._stops.flush()
        events += self._split_events(rest, -1) if rest else []
        if self._split is not None:
            events += [self._event(kind, t, -1) for kind, t in self._split.flush() if t]
        return events

    def _emit(self, piece: str, token: int) -> list[TextEvent]:
        text = self._stops.feed(piece)
        return self._split_events(text, token) if text else []

    def _split_events(self, text: str, token: int) -> list[TextEvent]:
        if self._split is None:
            return [self._event("text", text, token)]
        return [self._event(kind, t, token) for kind, t in self._split.feed(text) if t]

    def _event(self, kind: str, text: str, token: int) -> TextEvent:
        (self._reasoning if kind == "reasoning" else self._text).append(text)
        return TextEvent(text, token, kind)


class ReasoningSplit:
    """Text in, (kind, text) out: a ``<think>...</think>`` block at the start of a reply is
    "reasoning", the rest "text". A tag split across pieces is held back until it is settled.

    Args:
        inside: the block was opened already (by the prompt).
    """

    def __init__(self, inside: bool = False):
        self._state = "opened" if inside else "start"      # start -> opened -> reasoning -> after -> answer
        self._held = ""

    def feed(self, piece: str) -> list[tuple[str, str]]:
        text, self._held = self._held + piece, ""
        if self._state == "start":
            head = text.lstrip()
            if head.startswith(THINK_OPEN):
                self._state, text = "opened", head[len(THINK_OPEN):]
            elif THINK_OPEN.startswith(head):                  # could still become the tag
                self._held = text
                return []
            else:
                self._state = "answer"
        if self._state == "opened":                            # the reasoning starts after its newlines
            text = text.lstrip("\n")
            if not text:
                return []
            self._state = "reasoning"
        if self._state == "reasoning":
            cut = text.find(THINK_CLOSE)
            if cut < 0:                                        # hold a partial tag and trailing newlines
                keep = _partial_tail(text, THINK_CLOSE)
                body = text[:len(text) - keep]
                shown = body.rstrip("\n")
                self._held = text[len(shown):]
                return [("reasoning", shown)]
            self._state = "after"
            return [("reasoning", text[:cut].rstrip("\n")), *self.feed(text[cut + len(THINK_CLOSE):])]
        if self._state == "after":                             # the answer starts at its first non-space
            text = text.lstrip()
            if not text:
                return []
            self._state = "answer"
        return [("text", text)]

    def flush(self) -> list[tuple[str, str]]:
        text, self._held = self._held, ""
        return [("reasoning" if self._state in ("opened", "reasoning") else "text", text)]


def _partial_tail(text: str, tag: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
