"""Several conversations decoded together: one forward pass per step over every active stream (the
weights read once), each stream with its own cache, sampler, reply and cancel.

A step feeds each decoding stream its last sampled token (with the tokens its constraint forces after
it, as ``Engine.generate`` feeds them: one chunk, so a JSON key costs one step, not one a token) and at
most ``PREFILL_STEP_CHUNK`` prompt tokens of the streams still reading their prompts, first come first
served (chunked prefill interleaved with the decodes: a running stream waits at most one chunk's time
when a long prompt arrives, and several short prompts that arrive together are read in one step).
Every stream's logits equal those of its solo run (``token_cache.step``), so greedy text does not
depend on who else is served. Native backend only (``Engine.holds_several``); the engine's own
``chat`` is not used meanwhile.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .chat_state import ChatState
from .events import DoneEvent, Stats, TextEvent
from .reply import Reply
from .sampler import forced_tokens
from .token_cache import step

PREFILL_STEP_CHUNK = 128     # prompt tokens a step takes at most, all streams together


@dataclass
class Stream:
    """One request's reply in progress."""

    state: ChatState
    sampler: object                  # Sampler-like: sample(logits, history) -> token
    reply: Reply
    cancel: threading.Event
    pending: list[int]               # prompt ids still to feed
    stats: Stats
    chat: bool = True                # a conversation (its reply joins it) or a raw completion
    next_ids: list[int] = field(default_factory=list)   # sampled (and forced), to be fed by the next step
    closing: bool = False            # the reply is done; its last token is fed by the next step
    t_start: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> bool:
        return self.reply.done and not self.closing


class Batch:
    """Steps streams of one engine together (``step``); ``open_chat`` / ``open_completion`` start
    one. Not thread-safe: one thread (serve's engine thread) drives it."""

    def __init__(self, engine, prefill_chunk: int = PREFILL_STEP_CHUNK):
        self._engine = engine
        self._chunk = prefill_chunk
        self.max_tokens = engine.max_step_tokens     # tokens of one step, all streams together

    def open_chat(self, state: ChatState, messages: list[dict], sampler, reply: Reply,
                  cancel: threading.Event, reasoning: bool | None = None,
                  template_vars: dict | None = None) -> Stream:
        """A chat stream on ``state``: the conversation is synced (what the cache holds is kept);
        ``reasoning`` and ``template_vars`` as ``Engine.chat``'s."""
        t0 = time.perf_counter()
        new, stats = state.sync(messages, template_vars)
        think, inside = state.thinking(self._engine.tokenizer, reasoning)
        if think:
            reply.think(inside)
        reply.t_start = t0
        return Stream(state, sampler, reply, cancel, new, stats, t_start=t0)

    def open_completion(self, state: ChatState, ids: list[int], sampler, reply: Reply,
                        cancel: threading.Event) -> Stream:
        """A raw completion stream on ``state``, from an empty cache with the configured sinks (not
        those of a system prompt a chat pinned in this slot before)."""
        t0 = time.perf_counter()
        state.conv.clear()
        state.cache.reset(state.sinks)
        reply.t_start = t0
        return Stream(state, sampler, reply, cancel, list(ids), Stats(prompt_tokens=len(ids)), chat=False,
                      t_start=t0)

    def step(self, streams: list[Stream]) -> dict[int, list[TextEvent]]:
        """One forward pass over ``streams`` (those not done): the decoders' tokens and the first
        prompt chunk waiting. Returns the text events of each stream (by index in ``streams``);
        a cancelled stream ends (``finish`` gives its last event)."""
        events: dict[int, list[TextEvent]] = {}
        rows: list[tuple[int, bool]] = []          # (stream index, a prompt chunk)
        ids: list[list[int]] = []
        room = self.max_tokens
        for i, s in enumerate(streams):
            if s.done:
                continue
            if s.cancel.is_set():
                events[i] = s.reply.close("cancelled")
                s.closing = False
            elif s.next_ids and len(s.next_ids) <= room:
                rows.append((i, False))
                ids.append(s.next_ids)
                room -= len(s.next_ids)
        budget = min(self._chunk, room)            # prompt chunks, first come first served
        for i, s in enumerate(streams):
            if not s.done and s.pending and not s.cancel.is_set() and budget > 0:
                c = s.state.cache.info
                rows.append((i, True))
                ids.append(s.pending[:min(budget, c.capacity - c.sinks)])
                budget -= len(ids[-1])
        if not rows:
            return events
        logits = step([streams[i].state.cache for i, _ in rows], ids)
        for r, (i, chunk) in enumerate(rows):
            s = streams[i]
            if chunk:
                del s.pending[:len(ids[r])]
                if s.pending:
                    continue                       # more of the prompt to read
            s.next_ids = []
            if s.closing:                          # the reply's last token is fed now: done
                s.closing = False
                continue
            events[i] = events.get(i, []) + self._sampled(s, logits[r])
        return events

    def finish(self, s: Stream) -> DoneEvent:
        """The stream's last event; a chat's reply joins its conversation (closing ids fed)."""
        s.reply.close("cancelled" if s.cancel.is_set() else "length")   # done already: nothing held back
        st = s.stats
        st.completion_tokens = len(s.reply.tokens)
        st.ttft_s, st.decode_s = s.reply.timings()
        st.prefill_s = st.ttft_s
        st.prefill_tps = st.prompt_tokens / st.prefill_s if st.prefill_s > 0 else 0.0
        st.decode_tps = (st.completion_tokens - 1) / st.decode_s if st.decode_s > 0 else 0.0
        if s.chat:
            st.reasoning_refeed = s.state.finish(s.reply.text, s.reply.reasoning)
        return DoneEvent(s.reply.text, s.reply.finish_reason, st, s.state.cache.info, reasoning=s.reply.reasoning)

    def _sampled(self, s: Stream, logits) -> list[TextEvent]:
        """Sample the stream's next token and take the tokens its constraint forces after it (at most
        ``FF_MAX``, within the reply's limit) up to one the reply ends on; they are fed by the next step."""
        events, kept = self._take(s, s.sampler.sample(logits, s.state.cache.fed))
        if kept and not s.reply.done:
            left = None if s.reply.max_tokens is None else s.reply.max_tokens - len(s.reply.tokens)
            for f in forced_tokens(s.sampler, left):
                more, kept = self._take(s, f)
                events += more
                if not kept or s.reply.done:
                    break
        return events

    def _take(self, s: Stream, tok: int) -> tuple[list[TextEvent], bool]:
        """The reply's events for ``tok`` and whether the reply kept it (then it is fed next step)."""
        n = len(s.reply.tokens)
        events = s.reply.feed(tok)
        kept = len(s.reply.tokens) > n
        if kept:
            if s.chat:
                s.state.conv.add(tok)
            s.next_ids.append(tok)
            s.closing = s.reply.done            # a stop string or the limit: the token is still fed
        return events, kept
