"""Batched decode (runtime.token_cache.step): one forward pass over several sequences, each on its own
ring. Oracle: each sequence's solo run on the same engine (TokenCache.feed), bit for bit: every row of
the pass is computed as in its own eval (the matmul tiles are per column, attention per sequence)."""
from __future__ import annotations

import numpy as np
import pytest

from edgechat.runtime.backends.native import NativeBackend
from edgechat.runtime.ggufload import read_model
from edgechat.runtime.token_cache import TokenCache, step

CTX, SINKS = 48, 4
# (prompt length, kv type): one wraps its 48-entry ring before the steps, one keeps q8_0 rows
SEQS = [(5, "f16"), (60, "f16"), (17, "q8_0"), (30, "f16")]


@pytest.fixture(scope="module")
def backend(default_model):
    b = NativeBackend(read_model(default_model), ctx=CTX, sinks=SINKS, threads=2, kv_type="f16")
    yield b
    b.close()


def caches(backend) -> list[TokenCache]:
    return [TokenCache(backend, backend.new_cache(SINKS, kv)) for _, kv in SEQS]


def test_batched_decode_equals_each_sequence_alone(backend):
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 49_000, size=n).tolist() for n, _ in SEQS]
    batched, solo = caches(backend), caches(backend)
    for b, s, p in zip(batched, solo, prompts):
        b.feed(p)
        s.feed(p)
    assert batched[1].info.evicted > 0                  # the long one has wrapped its ring
    for k in range(12):                                 # more steps: the 48-ring wraps again
        nxt = [[int(rng.integers(0, 49_000))] for _ in SEQS]
        rows = step(batched, nxt)
        for i, s in enumerate(solo):
            want = s.feed(nxt[i])
            np.testing.assert_array_equal(rows[i], want, err_msg=f"sequence {i}, step {k}")
    for b, s in zip(batched, solo):
        assert b.info == s.info and list(b.fed) == list(s.fed)


def test_a_prompt_chunk_joins_the_decodes(backend):
    """A new request's prompt chunk runs in the same pass as the others' decode tokens."""
    rng = np.random.default_rng(1)
    batched, solo = caches(backend), caches(backend)
    for b, s in zip(batched[:3], solo[:3]):
        p = rng.integers(0, 49_000, size=9).tolist()
        b.feed(p)
        s.feed(p)
    chunk = rng.integers(0, 49_000, size=20).tolist()
    ids = [[7], [8], [9], chunk]
    rows = step(batched, ids)
    for i, s in enumerate(solo):
        np.testing.assert_array_equal(rows[i], s.feed(ids[i]))


def test_bad_steps_are_refused(backend):
    a, b = caches(backend)[:2]
    with pytest.raises(ValueError):
        step([a, a], [[1], [2]])                        # one cache twice
    with pytest.raises(ValueError):
        step([a, b], [[1], []])                         # a sequence without a token
    with pytest.raises(ValueError):
        step([a], [list(range(CTX))])                   # more than the window in one step
    with pytest.raises((ValueError, IndexError)):
        step([a, b], [[1], [10**7]])                    # outside the vocabulary
    assert a.info.n_past == 0 and b.info.n_past == 0    # nothing was fed


GREEDY = {"temp": 0, "repeat_penalty": 1.0}


def step_once(batch, streams, texts: dict) -> None:
    """One step of ``streams``; each one's text events are appended to ``texts[index]``."""
    for i, evs in batch.step(streams).items():
        texts[i] = texts.get(i, "") + "".join(e.text for e in evs)


def finish_as_solo(batch, streams, texts: dict, solo) -> None:
    """Step until every stream is done; each text, finish reason and token count is its solo run's."""
    while not all(s.done for s in streams):
        step_once(batch, streams, texts)
    for i, (s, want) in enumerate(zip(streams, solo)):
        done = batch.finish(s)
        assert (texts.get(i, ""), done.text, done.finish_reason) == (want.text, want.text, want.finish_reason), i
        assert done.stats.completion_tokens == want.stats.completion_tokens
QUESTIONS = ["Name a planet.", "What is 2 + 3?", "Say hello in French.", "Write one word about the sea."]


def test_greedy_texts_of_four_streams_equal_their_solo_texts(default_model):
    """Four chats stepped together (one joins later, one has a stop string) give each one's text from
    Engine.chat alone."""
    import threading

    from edgechat.runtime import load
    from edgechat.runtime.batch import Batch
    from edgechat.runtime.reply import Reply
    from edgechat.runtime.sampler import make_sampler

    engine = load(default_model, ctx=256, threads=2, speculative="off")
    try:
        convs = [[{"role": "user", "content": q}] for q in QUESTIONS]
        stops = [[], [], ["."], []]
        solo = [list(engine.chat(c, max_tokens=24, stops=s, **GREEDY))[-1] for c, s in zip(convs, stops)]
        batch, streams, texts = Batch(engine), [], {}
        for k, (c, s) in enumerate(zip(convs, stops)):
            reply = Reply(engine.tokenizer, max_tokens=24, stops=s)
            streams.append(batch.open_chat(engine.new_state(), c, make_sampler(temp=0, repeat_penalty=1.0),
                                           reply, threading.Event()))
            if k < 3:                                    # the fourth joins after a few steps
                continue
            for _ in range(3):
                step_once(batch, streams[:3], texts)
        finish_as_solo(batch, streams, texts, solo)
    finally:
        engine.close()


KEYS = {"type": "object", "required": ["customer_identification_number", "shipping_address_line"],
        "additionalProperties": False,
        "properties": {"customer_identification_number": {"type": "integer"},
                       "shipping_address_line": {"type": "string", "maxLength": 30}}}


def test_forced_tokens_join_a_step_as_one_chunk(default_model, monkeypatch):
    """Constrained streams stepped together: the tokens a schema forces (its long keys) are fed with
    the sampled one in the same step, as Engine.chat feeds them, and each text equals its solo one."""
    import threading

    from edgechat.runtime import batch as batch_mod
    from edgechat.runtime import load
    from edgechat.runtime.constraint import Format, compile_constraint
    from edgechat.runtime.reply import Reply
    from edgechat.runtime.sampler import make_sampler

    engine = load(default_model, ctx=512, threads=2, speculative="off")
    fmts = [Format("json_schema", KEYS), None, Format("regex", r"(yes|no), because [a-z ]{1,40}\.")]
    convs = [[{"role": "user", "content": q}] for q in
             ["Give a customer record as JSON.", "Name a planet.", "Is the sea salty?"]]

    def sampler(fmt):
        c = compile_constraint(fmt, engine.tokenizer) if fmt else None
        return make_sampler(temp=0, repeat_penalty=1.0, constraint=c)
    try:
        solo = [list(engine.chat(c, sampler=sampler(f), max_tokens=48))[-1] for c, f in zip(convs, fmts)]
        chunks: list[list[int]] = []
        real = batch_mod.step

        def spy(caches, ids):
            chunks.append([len(x) for x in ids])
            return real(caches, ids)
        monkeypatch.setattr(batch_mod, "step", spy)
        batch, texts = batch_mod.Batch(engine), {}
        streams = [batch.open_chat(engine.new_state(), c, sampler(f), Reply(engine.tokenizer, max_tokens=48),
                                   threading.Event()) for c, f in zip(convs, fmts)]
        finish_as_solo(batch, streams, texts, solo)
        decode_rows = [n for sizes in chunks[1:] for n in sizes]     # after the step that read the prompts
        assert max(decode_rows) > 1                                  # a forced key went in with its token
        assert len(chunks) < max(len(engine.tokenizer.tokenize(d.text)) for d in solo)
    finally:
        engine.close()


def test_a_completion_starts_with_the_configured_sinks(default_model):
    """A raw completion in a slot where a chat had pinned its system prompt (sinks = that prompt) starts
    from the engine's own sink count, as Engine.reset does for the one-at-a-time worker: its logits are
    then those of a solo run (the sink count decides which keys take the sink rotation)."""
    import threading

    from edgechat.runtime import load
    from edgechat.runtime.batch import Batch
    from edgechat.runtime.reply import Reply
    from edgechat.runtime.sampler import make_sampler

    engine = load(default_model, ctx=256, threads=2, speculative="off")
    try:
        state = engine.new_state()
        state.cache.reset(20)                            # as a pinned 20-token system prompt leaves it
        state.cache.feed(list(range(100, 140)))
        ids = engine.tokenize("The three largest cities of Europe are")
        stream = Batch(engine).open_completion(state, ids, make_sampler(temp=0), Reply(engine.tokenizer, max_tokens=4),
                                               threading.Event())
        assert state.cache.info.sinks == state.sinks == engine.state.sinks != 20
        assert stream.pending == ids and state.cache.info.n_past == 0
    finally:
        engine.close()
