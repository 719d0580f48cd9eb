"""Cache slots (runtime/slots.py): several conversations warm on one engine, swapped in O(1).

Oracle: a conversation that was parked while another one used the engine, then swapped back, answers
exactly as on an engine that never held anything else (greedy), and evaluates the same prompt tokens.
"""
from __future__ import annotations

import pytest

from edgechat.runtime import load
from edgechat.runtime.slots import SlotPool, shared_tokens, slots_that_fit

GREEDY = {"temp": 0, "repeat_penalty": 1.0, "max_tokens": 12}


def _reply(engine, messages):
    done = list(engine.chat(messages, **GREEDY))[-1]
    return done.text, done.stats.prompt_tokens


@pytest.fixture(scope="module")
def engines(default_model):
    a, b = load(default_model, ctx=256, threads=2), load(default_model, ctx=256, threads=2)
    yield a, b
    a.close()
    b.close()


def test_parked_conversation_comes_back_exact(engines):
    engine, oracle = engines
    pool = SlotPool(engine, 2)
    a = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a planet."}]
    b = [{"role": "user", "content": "Name a colour."}]
    slot_a, _ = pool.take(a)
    ra, _ = _reply(engine, a)
    slot_b, shared = pool.take(b)
    assert slot_b != slot_a and shared == 0
    _reply(engine, b)
    a2 = a + [{"role": "assistant", "content": ra}, {"role": "user", "content": "Another one?"}]
    slot, shared = pool.take(a2)
    assert slot == slot_a and shared > 0
    got = _reply(engine, a2)
    assert _reply(oracle, a)[0] == ra
    want = _reply(oracle, a2)
    assert got == want                        # same text, same prompt tokens evaluated
    assert got[1] < shared                    # only the new tokens were evaluated


def test_least_recently_used_slot_is_reused(engines):
    engine, _ = engines
    pool = SlotPool(engine, 2)
    convs = [[{"role": "user", "content": f"Say {w}."}] for w in ("one", "two", "three")]
    slots = []
    for c in convs:
        slots.append(pool.take(c)[0])
        _reply(engine, c)
    assert slots == [0, 1, 0]                  # the third took the least recently used one
    assert pool.take(convs[1])[0] == 1 and pool.take(convs[2])[0] == 0


def test_shared_tokens_counts_whole_messages(engines):
    engine, _ = engines
    m = [{"role": "user", "content": "Say yes."}]
    _reply(engine, m)
    conv = engine.conversation
    assert shared_tokens(conv, m) == conv.ends[0]
    assert shared_tokens(conv, [{"role": "user", "content": "Say no."}]) == 0


def test_llama_cpp_keeps_one_slot(default_model):
    engine = load(default_model, backend="llama.cpp", ctx=128, threads=2)
    try:
        assert engine.new_state() is None and SlotPool(engine, 4).slots == 1
    finally:
        engine.close()


def test_slots_that_fit():
    assert slots_that_fit(4, 100, 10_000) == 4
    assert slots_that_fit(4, 100, 400) == 3            # half the RAM: two spare caches + the live one
    assert slots_that_fit(4, 100, 0) == 1              # the engine's own cache always
