"""The batch worker: up to ``--parallel`` requests decode together, one forward pass over the weights
per step (``runtime.batch``), on an engine that holds several caches (the native backend).

The engine thread loops: requests waiting join the batch at a token boundary (at most ``parallel``
in it, each on a cache slot of its own: ``SlotPool.take`` with the busy slots left out, so prefix reuse
across requests stays), then one step feeds every decoding stream its last token and at most one prompt
chunk of a stream still reading its prompt; a stream that ends (its reply done, cancelled by its
client, stopped by the request timeout or the shutdown) leaves the batch and its ``Final`` goes out.
A request is set up and finished by the same functions as the sequential worker's (``jobs.chat_setup``,
``chat_reply``, ``chat_end``, ``completion_setup``, ``completion_final``), and each stream keeps its own
``RequestSampler`` (penalties, logit bias, log-probabilities, seed, a structured-output constraint) and
``Reply`` (stop strings, token limit, tool calls), so a batched reply reads as a sequential one.
The interface is ``EngineWorker``'s: ``submit`` (``QueueFull`` when ``queue_size`` wait already),
``cancel_all``, ``stop``, ``stats``, ``busy``, ``queued``.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from ...runtime.batch import Batch, Stream
from .jobs import Delta, Final, Limits, _Deltas, chat_end, chat_reply, chat_setup, completion_final, completion_setup
from .worker import END, Job, Outbox, QueueFull, _ended, count, failure


class _Guarded:
    """A stream's sampler inside the batch: an exception (a constraint's failure, a bug) ends that
    stream with an end-of-turn token and is kept, so the step goes on for the others."""

    def __init__(self, sampler, eot: int):
        self._s, self._eot = sampler, eot
        self.error: BaseException | None = None

    def sample(self, logits, history) -> int:
        if self.error is not None:
            return self._eot
        try:
            return self._s.sample(logits, history)
        except Exception as e:
            self.error = e
            return self._eot

    def forced(self, limit: int) -> list[int]:
        """The tokens its constraint forces next (none without one, or after a failure)."""
        forced = getattr(self._s, "forced", None)
        if self.error is not None or forced is None:
            return []
        try:
            return forced(limit)
        except Exception as e:
            self.error = e
            return []


@dataclass
class _Active:
    """A request in the batch."""

    job: Job
    stream: Stream
    slot: int
    before: object                # the slot's CacheInfo before the request
    sampler: object               # its RequestSampler
    guard: _Guarded
    deltas: _Deltas
    timer: threading.Timer
    messages: list | None = None  # a chat's messages (None: a completion)
    ids: list | None = None       # a completion's prompt ids
    late: int = 0                 # text pieces sent after its cancel was set


class BatchWorker:
    """Runs jobs on one engine, up to ``parallel`` at once; ``queue_size`` more may wait."""

    def __init__(self, engine, pool, limits: Limits, parallel: int, queue_size: int, request_timeout: float):
        self._engine, self._pool, self._limits = engine, pool, limits
        self._batch = Batch(engine)
        self.parallel = parallel
        self._timeout = request_timeout
        self._limit = queue_size + parallel          # jobs waiting or in the batch
        self._waiting: deque[Job] = deque()
        self._active: list[_Active] = []
        self._cv = threading.Condition()
        self._stopping = self._closed = False
        self._eot = min(engine.tokenizer.eot_ids)
        self.stats = {"jobs": 0, "stopped_early": 0, "max_pieces_after_cancel": 0, "steps": 0,
                      "max_streams": 0}
        self._thread = threading.Thread(target=self._loop, name="edgechat-batch", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        return bool(self._active)

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._stopping or len(self._waiting) + len(self._active) >= self._limit:
                raise QueueFull()
            self._waiting.append(job)
            self._cv.notify()

    def cancel_all(self) -> None:
        """Stop the jobs in the batch and every waiting one (shutdown)."""
        with self._cv:
            self._stopping = True
            jobs = [a.job for a in self._active] + list(self._waiting)
        for job in jobs:
            job.stop("shutdown")

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything and wait for the engine thread to end."""
        self.cancel_all()
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)

    # ---- the engine thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._waiting or self._active or self._closed)
                if self._closed and not self._waiting and not self._active:
                    return
                joining = [self._waiting.popleft()
                           for _ in range(min(len(self._waiting), self.parallel - len(self._active)))]
            for job in joining:
                self._open(job)
            if self._active:
                self._step()

    def _open(self, job: Job) -> None:
        """Set the request up and put it in the batch (or answer its failure)."""
        if job.cancel.is_set():          # gone (or the server stopping) before it started
            job.emit(END)
            return
        kind, req = job.request
        busy = frozenset(a.slot for a in self._active)
        e, lim = self._engine, self._limits
        try:
            if kind == "chat":
                messages, shape = chat_setup(e, req, lim)
                slot, _ = self._pool.take(messages, busy=busy)
                state = self._pool.state(slot)
                before = state.cache.info
                sampler, reply = chat_reply(e, req, lim, shape)
                guard = _Guarded(sampler, self._eot)
                stream = self._batch.open_chat(state, messages, guard, reply, job.cancel,
                                               template_vars=req.chat_template_kwargs)
                ids = None
            else:
                ids, sampler, reply = completion_setup(e, req, lim)
                slot, _ = self._pool.take(None, busy=busy)
                state, messages = self._pool.state(slot), None
                guard = _Guarded(sampler, self._eot)
                stream = self._batch.open_completion(state, ids, guard, reply, job.cancel)
                before = state.cache.info
        except Exception as exc:        # a bad request, or a bug: say so, keep serving
            job.emit(failure(exc))
            count(self.stats, job, 0)
            job.emit(END)
            return
        timer = threading.Timer(self._timeout, job.stop, ("request_timeout",))
        timer.daemon = True
        timer.start()
        with self._cv:                  # cancel_all reads the list from another thread
            self._active.append(_Active(job, stream, slot, before, sampler, guard, _Deltas(reply, sampler), timer,
                                        messages, ids))
            if self._stopping:          # cancel_all ran while it was set up
                job.stop("shutdown")
        self.stats["max_streams"] = max(self.stats["max_streams"], len(self._active))

    def _step(self) -> None:
        out = Outbox()                  # every stream's items of this step, handed over at once
        try:
            events = self._batch.step([a.stream for a in self._active])
        except Exception as exc:        # the forward pass failed: every stream in it ends
            err = failure(exc)
            for a in list(self._active):
                a.stream.state.conv.clear()                        # its cache is no longer known
                a.stream.state.cache.reset(a.stream.state.sinks)
                self._leave(a, [err], out)
            out.flush()
            return
        self.stats["steps"] += 1
        for i, evs in events.items():
            a = self._active[i]
            for ev in evs:
                if (delta := a.deltas.delta(ev)) is not None:
                    a.late += a.job.cancel.is_set()
                    out.add(a.job, delta)
        for a in [a for a in self._active if a.stream.done]:
            self._leave(a, self._ending(a), out)
        out.flush()

    def _ending(self, a: _Active) -> list:
        """The items a finished stream sends last: its tool-call deltas and ``Final``, or its failure."""
        try:
            done = self._batch.finish(a.stream)
            if a.guard.error is not None:
                return [failure(a.guard.error)]
            if a.messages is not None:
                return list(chat_end(self._engine, self._pool, a.slot, a.before, done, a.messages, a.sampler,
                                     a.stream.reply))
            return [completion_final(self._engine, self._pool, a.slot, a.before, done.cache, a.stream.reply, a.ids)]
        except Exception as exc:
            return [failure(exc)]

    def _leave(self, a: _Active, items: list, out: Outbox) -> None:
        a.timer.cancel()
        with self._cv:
            self._active.remove(a)
        for item in items:
            a.late += a.job.cancel.is_set() and isinstance(item, Delta)
            out.add(a.job, _ended(item, a.job.reason) if isinstance(item, Final) else item)
        count(self.stats, a.job, a.late)
        out.add(a.job, END)
