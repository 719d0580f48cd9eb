"""A prompt beyond the window, at the engine: it is told before prefill and while it is read, read in
chunks that a cancel can stop, and --truncate-prompt leaves the cache as reading the sinks and the
last window's worth would."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from edgechat.runtime import load
from edgechat.runtime.prefill import PREFILL_CHUNK, fit

CTX, SINKS = 256, 4


@pytest.fixture(scope="module")
def engine(default_model):
    eng = load(default_model, ctx=CTX, sinks=SINKS, threads=2)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def long_text(natural_text) -> str:
    return natural_text[:12_000]              # ~2,700 tokens: ten windows and more


def test_fit_counts():
    f = fit(1000, 256, 4, 0, truncate=False)
    assert f.overflows and f.leaving == 744 and f.skipped == 0
    t = fit(1000, 256, 4, 0, truncate=True)
    assert t.skipped == 744 and t.to_feed == 256
    held = fit(300, 256, 4, 50, truncate=True)             # earlier turns fill the sinks
    assert held.room == 252 and held.skipped == 48
    assert not fit(200, 256, 4, 50, truncate=True).overflows


def test_the_prompt_is_told_before_and_while_it_is_read(engine, long_text):
    engine.reset()
    told = []
    *_, done = engine.chat([{"role": "user", "content": long_text}], max_tokens=2, temp=0.0,
                           on_prefill=told.append)
    first = told[0]
    assert first.done == 0 and first.overflows and first.window == CTX and first.skipped == 0
    assert first.tokens == done.stats.prompt_tokens
    progress = [f.done for f in told[1:]]
    assert progress == sorted(progress) and progress[-1] == first.tokens
    assert len(progress) == -(-first.tokens // PREFILL_CHUNK)       # one call per chunk


def test_a_cancel_stops_the_prefill_between_chunks_and_the_next_turn_is_right(engine, long_text):
    engine.reset()
    cancel = threading.Event()
    told = []

    def stop_after_two_chunks(f) -> None:
        told.append(f)
        if f.done >= 2 * PREFILL_CHUNK:
            cancel.set()
    msgs = [{"role": "user", "content": long_text}]
    *events, done = engine.chat(msgs, cancel=cancel, on_prefill=stop_after_two_chunks, max_tokens=4, temp=0.0)
    assert done.finish_reason == "cancelled" and done.text == "" and not events
    assert told[-1].done == 2 * PREFILL_CHUNK                       # no chunk after the cancel
    # the next turn, asked again, equals a fresh engine's answer
    *_, again = engine.chat(msgs, max_tokens=6, temp=0.0)
    engine.reset()
    *_, fresh = engine.chat(msgs, max_tokens=6, temp=0.0)
    assert again.text == fresh.text


def test_truncate_prompt_reads_the_sinks_and_the_last_window(engine, long_text):
    msgs = [{"role": "user", "content": long_text}]
    engine.reset()
    told = []
    *_, done = engine.chat(msgs, max_tokens=1, temp=0.0, on_prefill=told.append, truncate_prompt=True)
    f = told[0]
    ids = list(engine.conversation.ids)
    assert f.skipped == f.tokens - CTX and done.stats.prompt_tokens == CTX
    assert done.cache.evicted >= f.skipped
    # the oracle: a fresh cache fed exactly the sinks and the last window's worth
    prompt = ids[:f.tokens]
    kept = prompt[:SINKS] + prompt[len(prompt) - (CTX - SINKS):]
    engine.reset()
    expected = int(np.argmax(engine.eval(kept)))
    end_of_turn = expected in engine._tok.eot_ids
    assert done.text == ("" if end_of_turn else engine.detokenize([expected]))
