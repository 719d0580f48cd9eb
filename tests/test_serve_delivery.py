"""The engine thread's hand-over of a step's text to the event loop (app/serve/worker.py): ``Outbox.flush``
and ``Job.emit(wait=True)`` return once the loop has run the handlers the items wake (the SSE chunk is
written before the next step takes the cores), and no later than ``DELIVERY_WAIT_S`` when the loop is
busy elsewhere, so a stalled loop never stalls the engine."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from edgechat.app.serve import worker
from edgechat.app.serve.worker import Job, Outbox

STALL_S = 2.0          # how long the busy loop below holds its thread: far beyond DELIVERY_WAIT_S
HANDLER_S = 0.02       # a handler's own work (as a chunk's formatting and write): the flush must outlast it


@pytest.fixture
def loop():
    lp = asyncio.new_event_loop()
    t = threading.Thread(target=lp.run_forever, daemon=True)
    t.start()
    yield lp
    asyncio.run_coroutine_threadsafe(_cancel_all(), lp).result(10)
    lp.call_soon_threadsafe(lp.stop)
    t.join(5)
    lp.close()


async def _cancel_all() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _reader(loop, job: Job, seen: list, work_s: float = 0.0) -> None:
    """A task that takes the job's items as a response handler does (``work_s`` of work on each, holding
    the loop), noting each; returns once the task is made (its first step is then ahead of anything
    handed to the loop later)."""
    async def read():
        while True:
            item = await job.events.get()
            time.sleep(work_s)
            seen.append(item)

    async def start():
        asyncio.get_running_loop().create_task(read())
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)


def test_flush_returns_after_the_handlers_ran(loop, monkeypatch):
    monkeypatch.setattr(worker, "DELIVERY_WAIT_S", 60.0)     # only the handlers' run may end the wait
    jobs = [Job(lambda cancel: iter(()), loop) for _ in range(3)]
    seen = [[] for _ in jobs]
    for job, s in zip(jobs, seen):
        _reader(loop, job, s, HANDLER_S)
    for step in range(5):
        out = Outbox()
        for k, job in enumerate(jobs):
            out.add(job, f"{step}:{k}")
        out.flush()
        assert [s[-1] for s in seen] == [f"{step}:{k}" for k in range(3)]


def test_emit_wait_returns_after_the_handler_ran(loop, monkeypatch):
    monkeypatch.setattr(worker, "DELIVERY_WAIT_S", 60.0)
    job, seen = Job(lambda cancel: iter(()), loop), []
    _reader(loop, job, seen, HANDLER_S)
    for i in range(5):
        job.emit(i, wait=True)
        assert seen == list(range(i + 1))


def test_a_busy_loop_does_not_hold_the_engine(loop):
    job, seen = Job(lambda cancel: iter(()), loop), []
    _reader(loop, job, seen)
    loop.call_soon_threadsafe(time.sleep, STALL_S)            # the loop's thread is taken before the items come
    t0 = time.monotonic()
    out = Outbox()
    out.add(job, "x")
    out.flush()
    assert time.monotonic() - t0 < STALL_S / 2               # gave up after DELIVERY_WAIT_S, not the stall
    assert seen == []
    deadline = time.monotonic() + 10 * STALL_S
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["x"]                                      # delivered once the loop was free


def test_a_closed_loop_is_no_error():
    lp = asyncio.new_event_loop()
    lp.close()
    job = Job(lambda cancel: iter(()), lp)
    job.emit("x", wait=True)
    out = Outbox()
    out.add(job, "y")
    out.flush()
