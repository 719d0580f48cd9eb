"""The engine thread: requests run one at a time, in arrival order, from a bounded queue.

A ``Job`` carries a generator to run on the engine and an asyncio queue its events go to (handed to
the event loop thread-safely). A full queue refuses at once (the handler answers 503); a cancelled job
stops within one token (the engine checks its cancel event before each token) and the next one runs.
A job may hold the engine for ``request_timeout`` seconds; then it is stopped and ends as if its
``max_tokens`` were reached (``finish_reason: "length"``). Jobs stopped by the server's shutdown end
with ``"stop"``; the ``x-edgechat`` field's ``reason`` says which (``request_timeout``, ``shutdown``).
"""
from __future__ import annotations

import asyncio
import queue
import sys
import threading
import traceback
from typing import Callable, Iterator

from ...runtime.errors import EdgechatError
from .errors import APIError, bad_request, internal
from .jobs import Delta, Final

END = object()          # the last item of every job's event queue
# how long the engine thread waits, after handing a token's text to the event loop, for the loop to
# have run the handlers it wakes (the SSE chunk written to the client's socket). On 2 cores the loop
# otherwise waits for a core while the next step's compute threads hold both, and a token reaches its
# client a step late now and then: measured on the default model with 4 streams, p95 inter-token gap
# 10.7-11.1 ms beside a 5.5 ms step without the wait, 5.7-6.1 ms with it (scripts/serve_bench.py).
# The loop's work is ~0.1-0.4 ms a step; one busy elsewhere costs a step at most this.
DELIVERY_WAIT_S = 0.005
FINISH = {"request_timeout": "length", "shutdown": "stop"}   # OpenAI's finish_reason for a server stop


class QueueFull(Exception):
    pass


class Job:
    """One request. ``run(cancel)`` yields its events in the engine thread; ``events`` receives
    them (then ``END``) in the event loop; an ``APIError`` item is a failure. ``request``: the
    endpoint's kind ("chat" | "completion") and the parsed request, for the batch worker."""

    def __init__(self, run: Callable[[threading.Event], Iterator], loop: asyncio.AbstractEventLoop,
                 request: tuple[str, object] | None = None):
        self.run = run
        self.request = request
        self.cancel = threading.Event()
        self.reason: str | None = None     # why the server stopped it: "request_timeout" | "shutdown"
        self.events: asyncio.Queue = asyncio.Queue()
        self._loop = loop

    def stop(self, reason: str) -> None:
        """The server stops this job (``FINISH``'s reasons); the first reason given stands."""
        if self.reason is None:
            self.reason = reason
        self.cancel.set()

    def emit(self, item, wait: bool = False) -> None:
        """Hand ``item`` to the event loop; ``wait``: until the loop has run its handler (at most
        ``DELIVERY_WAIT_S``)."""
        hand_over(self._loop, [(self, item)], wait)


class Outbox:
    """Items for several jobs, handed to their event loop in one call (``flush``): a batched step
    answers every stream at once, and one wake-up of the loop per step instead of one per stream
    leaves the engine thread the interpreter lock sooner. ``flush`` waits for the loop to have run
    their handlers (``DELIVERY_WAIT_S``)."""

    def __init__(self):
        self._items: list[tuple[Job, object]] = []

    def add(self, job: Job, item) -> None:
        self._items.append((job, item))

    def flush(self) -> None:
        items, self._items = self._items, []
        by_loop: dict = {}
        for job, item in items:
            by_loop.setdefault(job._loop, []).append((job, item))
        for loop, batch in by_loop.items():
            hand_over(loop, batch, True)


def hand_over(loop: asyncio.AbstractEventLoop, batch: list, wait: bool) -> None:
    """Put ``batch``'s (job, item) pairs on their jobs' queues in ``loop``; ``wait``: return once the
    handlers they wake have run (the tasks woken are scheduled before ``done.set``), or after
    ``DELIVERY_WAIT_S``."""
    done = threading.Event() if wait else None
    try:
        loop.call_soon_threadsafe(_deliver, batch, done)
    except RuntimeError:          # the loop has closed (shutdown): nobody is listening
        return
    if done is not None:
        done.wait(DELIVERY_WAIT_S)


def _deliver(batch: list, done: threading.Event | None) -> None:
    for job, item in batch:
        job.events.put_nowait(item)
    if done is not None:
        asyncio.get_running_loop().call_soon(done.set)


class EngineWorker:
    """Runs jobs on one engine; ``queue_size`` jobs may wait behind the running one."""

    parallel = 1            # jobs running at once

    def __init__(self, queue_size: int, request_timeout: float):
        self._q: queue.Queue = queue.Queue()
        self._timeout = request_timeout
        self._limit = queue_size + 1          # jobs queued or running
        self._pending = 0
        self._lock = threading.Lock()
        self._current: Job | None = None
        self._stopping = False
        # served jobs, those stopped early (cancel, disconnect, stop string), and the most text
        # pieces a job sent after its cancel was set
        self.stats = {"jobs": 0, "stopped_early": 0, "max_pieces_after_cancel": 0}
        self._thread = threading.Thread(target=self._loop, name="edgechat-engine", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._q.qsize()

    @property
    def busy(self) -> bool:
        return self._current is not None

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._stopping or self._pending >= self._limit:
                raise QueueFull()
            self._pending += 1
        self._q.put_nowait(job)

    def cancel_all(self) -> None:
        """Cancel the running job and every queued one (shutdown)."""
        self._stopping = True
        current = self._current
        if current is not None:
            current.stop("shutdown")
        for job in list(self._q.queue):
            job.stop("shutdown")

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything and wait for the engine thread to end."""
        self.cancel_all()
        self._q.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            self._current = job
            try:
                if not job.cancel.is_set():
                    self._run(job)
            finally:
                self._current = None
                with self._lock:
                    self._pending -= 1
                job.emit(END)

    def _run(self, job: Job) -> None:
        late = 0
        timer = threading.Timer(self._timeout, job.stop, ("request_timeout",))
        timer.daemon = True
        timer.start()
        try:
            for item in job.run(job.cancel):
                delta = isinstance(item, Delta)
                late += job.cancel.is_set() and delta
                job.emit(_ended(item, job.reason) if isinstance(item, Final) else item, wait=delta)
        except Exception as e:          # a bad request, or a bug: say so, keep serving
            job.emit(failure(e))
        finally:
            timer.cancel()
            self._count(job, late)

    def _count(self, job: Job, late: int) -> None:
        count(self.stats, job, late)


def count(stats: dict, job: Job, late: int) -> None:
    """A served job in the worker's ``stats`` (``late``: text pieces it sent after its cancel)."""
    stats["jobs"] += 1
    stats["stopped_early"] += job.cancel.is_set()   # cancel, disconnect or stop string
    stats["max_pieces_after_cancel"] = max(stats["max_pieces_after_cancel"], late)


def failure(e: BaseException) -> APIError:
    """What a job's client is told of an exception raised while it ran (a bug is logged too)."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, EdgechatError):
        return bad_request(str(e))
    traceback.print_exception(e, file=sys.stderr)
    return internal(f"internal error: {type(e).__name__}: {e}")


def _ended(final: Final, reason: str | None) -> Final:
    """A job's result with one of OpenAI's finish reasons: a job stopped by the server (time limit,
    shutdown) says why in ``x-edgechat``; one cancelled by its client has nobody to tell."""
    if final.finish_reason != "cancelled":
        return final
    reason = reason or "cancelled"
    return Final(FINISH.get(reason, "stop"), final.usage, {**final.ext, "reason": reason})
