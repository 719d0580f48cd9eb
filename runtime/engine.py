"""The engine: one loaded model, its sink-ring cache and the conversation that lives in it.

Two levels, as mlx-lm's ``generate_step`` and ``stream_generate``: ``Engine.generate`` works on token
ids (feed a prompt, then sample and feed token by token); ``Engine.chat`` composes it with a model-free
``Conversation`` (messages -> token ids) and keeps the cache in step with it: the ids it already holds
stay, an edit rolls back (or rebuilds from the sinks and a tail when the ring has evicted past it).

No lock is held while a generator is suspended, so ``cache_info()`` (a snapshot the engine refreshes
after every change) answers at once from another thread. The engine's users take turns: a second call
while one runs (a chat between two of its tokens included) raises ``EngineBusy``.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .chat_state import ChatState
from .conversation import Conversation
from .errors import EdgechatError
from .events import DoneEvent, Stats, TextEvent
from .info import CacheInfo, EngineInfo
from .prefill import PREFILL_CHUNK, feed_chunks
from .reply import Reply
from .sampler import Sampler, SamplingParams, forced_tokens, make_sampler
from .speculative import SpecCounts, Speculation
from .token_cache import TokenCache


class EngineBusy(EdgechatError):
    """A call on an engine that is still running another one (its users must take turns)."""


class Engine:
    """A loaded model. Not created directly: use ``edgechat.runtime.load``.

    The conversation lives in the cache: ``chat`` takes the whole message list each turn, keeps what
    the cache already holds, rolls back or rebuilds where the list changed, and appends only new tokens.
    """

    def __init__(self, backend, tokenizer, template, info: EngineInfo, *, pin_system: bool, sinks: int):
        self._b = backend
        self._tok = tokenizer
        self.info = info
        self._state = ChatState(TokenCache(backend), Conversation(template), pin_system=pin_system, sinks=sinks)
        self.model_identity = ""          # file size + header hash (snapshot.model_identity), set by load
        self.state_note = ""              # what the last load_state did: "restored" or why not
        self._active = False              # a call is running (see EngineBusy)
        self.speculation = Speculation("off")   # load() sets it (runtime/speculative.py)
        self.spec_counts = SpecCounts()           # drafted / accepted tokens of the last generate
        self._flag = threading.Lock()     # guards _active only; never held while running
        self._told = None                 # the turn's prefill progress callback (tokens fed so far)

    # ---- the contract ---------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Plain text to ids; special-token strings in ``text`` stay text."""
        return list(self._tok.tokenize(text, special=False))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._tok.detokenize(list(ids))

    def reset(self) -> None:
        """Empty the cache and forget the conversation."""
        with self._turn():
            self.cache.reset(self._state.sinks)
            self._state.conv.clear()

    def eval(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Append ids to the cache under the sink policy (the conversation is forgotten).

        Returns:
            float32 logits, shape (len(ids), vocab) with ``all_logits``, else (vocab,) for the last id.
        """
        with self._turn():
            self._state.conv.clear()
            return self.cache.feed(list(ids), all_logits)

    def cache_info(self) -> CacheInfo:
        """The cache after the last change (the backend's own figures; evictions by a rebuild
        included). Never waits: safe from another thread while a reply runs."""
        return self._state.cache.info

    @property
    def cache(self) -> TokenCache:
        """The cache of the conversation in use (feed, rollback, ...: speculation and snapshots
        work on it while a call of this engine runs)."""
        return self._state.cache

    @property
    def tokenizer(self):
        """The tokenizer (token_bytes, eot_ids, bos_id, ...): read it, do not change it."""
        return self._tok

    @property
    def conversation(self) -> Conversation:
        """The conversation the cache holds (messages, token ids, message ends): read it, do not change it."""
        return self._state.conv

    def message_spans(self) -> list[tuple[int, int]]:
        """Logical token range of each message of the last ``chat`` call (the reply last)."""
        return self._state.conv.spans()

    def save_state(self, path: str | Path) -> int:
        """Write a KV snapshot of the cache and the conversation it holds (atomically: temp + rename).

        Returns:
            the snapshot's size in bytes.
        """
        from . import snapshot
        with self._turn():
            header, arrays = snapshot.capture(self)
        return snapshot.write(path, header, arrays)

    def load_state(self, path: str | Path) -> bool:
        """Restore a snapshot written by ``save_state`` for this model, backend, ctx, sinks and kv type.

        Returns:
            True when restored; False when the file is missing, does not match, is truncated or corrupt:
            then ``state_note`` says why in one line, and the cache is as it was (or empty, when the
            backend itself refused the arrays): never a wrong cache.
        """
        from . import snapshot
        with self._turn():
            try:
                snapshot.restore(self, *snapshot.read(path, snapshot.expected(self)))
            except snapshot.SnapshotRefused as e:
                self.state_note = str(e)
                return False
        self.state_note = "restored"
        return True

    def close(self) -> None:
        with self._turn():
            if self._b is not None:
                self._b.close()
                self._b = None
            self.speculation.close()
            close = getattr(self._tok, "close", None)
            if close:
                close()

    # ---- several conversations (serve's cache slots: runtime/slots.py) --------------------------

    def new_state(self) -> ChatState | None:
        """An empty cache of its own + an empty conversation, to make current with ``use_state``;
        None when the backend keeps one cache only (llama.cpp loaded with one sequence)."""
        if not self.holds_several:
            return None
        s = self._state
        return ChatState(TokenCache(self._b, self._b.new_cache(s.sinks)), Conversation(s.conv.template),
                         pin_system=s.pin_system, sinks=s.sinks)

    @property
    def holds_several(self) -> bool:
        """Whether the backend keeps caches of their own (``new_state``) and steps several of them
        in one pass (``runtime.batch``)."""
        return hasattr(self._b, "new_cache") and getattr(self._b, "max_caches", 2) > 1

    @property
    def max_step_tokens(self) -> int:
        """Tokens one batched step takes, all streams together (0: the backend has no batched step)."""
        return getattr(self._b, "max_step_tokens", 0)

    @property
    def state(self) -> ChatState:
        """The conversation in use and its cache."""
        return self._state

    def use_state(self, state: ChatState) -> None:
        """Make ``state`` the conversation ``chat`` continues (O(1): nothing is copied)."""
        with self._turn():
            self._state = state

    # ---- token level ----------------------------------------------------------------------------

    def generate(self, ids: Sequence[int], sampler: Sampler, cancel: threading.Event | None = None,
                 max_tokens: int | None = None) -> Iterator[int]:
        """Feed ``ids``, then sample token after token (as mlx-lm's ``generate_step``).

        A token is yielded before it is fed, and fed when the next one is asked for, so a caller that
        stops at an end-of-turn token leaves it out of the cache. Repetition penalties see every token
        the cache represents.

        Args:
            ids: prompt tokens to append first (at least one).
            sampler: from ``make_sampler``.
            cancel: set it to stop before the next token.
            max_tokens: stop after this many tokens (None: no limit).

        Yields:
            token ids.
        """
        with self._turn():
            self._told = None
            yield from self._generate(ids, sampler, cancel, max_tokens)

    def _generate(self, ids, sampler, cancel, max_tokens) -> Iterator[int]:
        if self.speculation.drafter is not None:
            from .speculative import generate
            self.spec_counts = SpecCounts()
            yield from generate(self, ids, sampler, cancel, max_tokens, self.speculation, self.spec_counts)
            return
        logits = self.feed_prompt(list(ids), cancel)
        if logits is None:                 # cancelled while the prompt was read
            return
        n = 0
        while max_tokens is None or n < max_tokens:
            if cancel is not None and cancel.is_set():
                return
            tok = sampler.sample(logits, self.cache.fed)
            yield tok
            batch = [tok] + forced_tokens(sampler, None if max_tokens is None else max_tokens - n - 1)
            for f in batch[1:]:        # a constraint's forced tokens: fed with tok as one batch
                yield f
            logits = self.cache.feed(batch)
            n += len(batch)

    # ---- chat level -----------------------------------------------------------------------------

    def chat(self, messages: list[dict], *, cancel: threading.Event | None = None,
             sampler: Sampler | None = None, on_prefill=None, truncate_prompt: bool = False,
             reply: Reply | None = None, stops: Sequence[str] = (), reasoning: bool | None = None,
             template_vars: dict | None = None, **sampling) -> Iterator[TextEvent | DoneEvent]:
        """Generate the assistant's reply to a conversation, streaming text as it comes.

        Args:
            messages: the whole conversation: dicts with ``role`` and ``content``.
            cancel: set it to stop within one token; the partial reply is kept.
            sampler: a sampler to use instead of one made from ``sampling`` (max_tokens still applies).
            on_prefill: called with a ``PromptFit`` before the prompt is fed (it says whether the
                prompt is beyond the window), then after each chunk of a long one (``done`` grows).
            truncate_prompt: a prompt beyond the window is fed as the sinks + the last window's
                worth; the rest is skipped (``PromptFit.skipped``).
            reply: the stream's ``Reply`` (its own stop strings and token limit), made here if None.
            stops: stop strings of the reply made here.
            reasoning: tell a ``<think>`` block apart (events of kind "reasoning"); None: when the
                chat template knows one.
            template_vars: extra chat-template variables, e.g. ``{"enable_thinking": False}`` (the
                switch of Qwen3-style templates); a change re-renders the conversation.
            **sampling: ``SamplingParams`` fields (temp, top_k, top_p, min_p, repeat_penalty,
                repeat_last_n, seed, max_tokens); those not given (or None) take its defaults.

        Yields:
            TextEvent for each piece of text, then one DoneEvent with stats and cache info.
        """
        params = SamplingParams.of(**sampling)
        with self._turn():
            t0 = time.perf_counter()
            new, stats = self._state.sync(messages, template_vars)
            stats.load_s = self.info.load_s
            new = self._fit_prompt(new, stats, on_prefill, truncate_prompt)
            think, inside = self._state.thinking(self._tok, reasoning)
            if reply is None:
                reply = Reply(self._tok, max_tokens=params.max_tokens, stops=stops)
            if think:
                reply.think(inside)
            reply.t_start = t0
            sampler = sampler or make_sampler(**params.sampler_kwargs())
            self.spec_counts = SpecCounts()
            tokens = self._generate(new, sampler, cancel, reply.max_tokens)
            yield from self._stream_reply(tokens, reply)
            tokens.close()                 # drafts fed past the last token taken are rolled back
            yield from reply.close("cancelled" if cancel is not None and cancel.is_set() else "length")
            done = self._done(reply, stats)
            done.stats.reasoning_refeed = self._state.finish(done.text, done.reasoning)
            done.cache = self.cache_info()
            yield done

    def _stream_reply(self, tokens: Iterator[int], reply: Reply) -> Iterator[TextEvent]:
        """Text events for the sampled tokens until the reply is done; an end-of-turn token is not
        fed, the last token of a reply ended by a stop string or the limit is."""
        for tok in tokens:
            n = len(reply.tokens)
            events = reply.feed(tok)
            kept = len(reply.tokens) > n
            if kept:
                self._state.conv.add(tok)
            yield from events
            if reply.done:
                if kept:
                    next(tokens, None)     # the generator feeds a token when the next is asked
                return

    def _done(self, reply: Reply, stats: Stats) -> DoneEvent:
        """The reply's last event (the caller fills in the cache)."""
        s = stats
        s.completion_tokens = len(reply.tokens)
        s.draft_tokens, s.accepted_tokens = self.spec_counts.draft_tokens, self.spec_counts.accepted_tokens
        s.ttft_s, s.decode_s = reply.timings()
        s.prefill_s = s.ttft_s                             # prefill, and sampling the first token
        s.prefill_tps = s.prompt_tokens / s.prefill_s if s.prefill_s > 0 else 0.0
        s.decode_tps = (s.completion_tokens - 1) / s.decode_s if s.decode_s > 0 else 0.0
        return DoneEvent(reply.text, reply.finish_reason, s, reasoning=reply.reasoning)

    def _fit_prompt(self, new: list[int], stats: Stats, on_prefill, truncate: bool) -> list[int]:
        """Tell ``on_prefill`` how the turn's tokens fit the window (before any is fed); with
        ``truncate``, skip those that would leave it. Returns the ids to feed."""
        new, f = self._state.fit_prompt(new, stats, truncate)
        self._told = (lambda n: on_prefill(f.fed(n))) if on_prefill else None
        if on_prefill:
            on_prefill(f)
        return new

    def feed_prompt(self, ids: list[int], cancel) -> np.ndarray | None:
        """Feed a prompt; a long one in chunks (a cancel is seen between two: None)."""
        if len(ids) <= PREFILL_CHUNK:
            return self.cache.feed(ids)
        return feed_chunks(self.cache.feed, ids, lambda: cancel is not None and cancel.is_set(), self._told)

    # ---- cache bookkeeping ----------------------------------------------------------------------

    @contextmanager
    def _turn(self):
        with self._flag:
            if self._active:
                raise EngineBusy("the engine is running another call; its users must take turns")
            self._active = True
        try:
            yield
        finally:
            self._active = False
