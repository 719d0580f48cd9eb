"""Batched decode on the llama.cpp backend: a context of several sequences (``seqs``), each its own ring
under the sink policy, stepped together by one llama_decode with sequence ids. Oracle: each sequence's
solo run on a one-sequence llama.cpp backend of the same file. llama.cpp's batched logits are not bit
for bit a solo decode's (its matmuls take another path for several rows), so they are held to
``BATCH_TOL`` and the greedy token must agree wherever the solo top two are further apart than that."""
from __future__ import annotations

import numpy as np
import pytest

from edgechat.runtime.backends.llama_cpp import LlamaCppBackend
from edgechat.runtime.errors import InsufficientMemory
from edgechat.runtime.token_cache import TokenCache, step

CTX, SINKS = 48, 4
# prompt lengths: one wraps its 48-entry ring before the steps, the others fit
PROMPTS = [5, 60, 17, 30]
# |batched - solo| measured 0.0 in every step of these tests (contexts up to 48 entries, llama-cpp-python
# 0.3.36, AVX-512 with repacking); llama.cpp's several-row matmul path may round differently elsewhere,
# and at 600 cached tokens it differs by 0.4-0.7 from a one-token decode (LlamaCppBackend.spec_room)
BATCH_TOL = 0.5


@pytest.fixture(scope="module")
def backends(default_model):
    several = LlamaCppBackend(default_model, ctx=CTX, sinks=SINKS, threads=2, seqs=len(PROMPTS), evict_chunk=4)
    solo = LlamaCppBackend(default_model, ctx=CTX, sinks=SINKS, threads=2, evict_chunk=4)
    yield several, solo
    several.close()
    solo.close()


def _caches(b, n):
    caches = [TokenCache(b)] + [TokenCache(b, b.new_cache(SINKS)) for _ in range(n - 1)]
    caches[0].reset(SINKS)                      # the own cache: left as the last test left it
    return caches


def _close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    diff = float(np.max(np.abs(got - want)))
    assert diff <= BATCH_TOL, f"{what}: max |dlogit| {diff:.3f} > {BATCH_TOL}"
    top2 = np.sort(want)[-2:]
    if top2[1] - top2[0] > BATCH_TOL:
        assert int(np.argmax(got)) == int(np.argmax(want)), what


def test_batched_step_matches_each_sequence_alone(backends):
    several, solo = backends
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 49_000, size=n).tolist() for n in PROMPTS]
    caches = _caches(several, len(PROMPTS))
    alone = TokenCache(solo)
    for c, p in zip(caches, prompts):
        c.feed(p)
    assert caches[1].info.evicted > 0                       # the long one has wrapped its ring
    history = [list(p) for p in prompts]
    for k in range(10):                                     # the 48-ring wraps again
        nxt = [[int(rng.integers(0, 49_000))] for _ in PROMPTS]
        rows = step(caches, nxt)
        for i in range(len(PROMPTS)):
            history[i] += nxt[i]
        if k % 3 == 2:                                      # solo replays of every sequence so far
            for i, h in enumerate(history):
                alone.reset(SINKS)
                want = alone.feed(h)
                _close(rows[i], want, f"sequence {i}, step {k}")
                assert alone.info == caches[i].info
    for c in caches[1:]:
        c.close()


def test_a_prompt_chunk_joins_the_decodes(backends):
    several, solo = backends
    rng = np.random.default_rng(1)
    caches = _caches(several, 4)
    alone = TokenCache(solo)
    firsts = [rng.integers(0, 49_000, size=9).tolist() for _ in range(3)]
    for c, p in zip(caches, firsts):
        c.feed(p)
    chunk = rng.integers(0, 49_000, size=20).tolist()
    rows = step(caches, [[7], [8], [9], chunk])
    for i, h in enumerate([firsts[0] + [7], firsts[1] + [8], firsts[2] + [9], chunk]):
        alone.reset(SINKS)
        _close(rows[i], alone.feed(h), f"sequence {i}")
    for c in caches[1:]:
        c.close()


def test_sequences_are_handed_out_and_back(backends):
    several, _ = backends
    extra = [several.new_cache(SINKS) for _ in range(len(PROMPTS) - 1)]
    with pytest.raises(InsufficientMemory, match="sequences of the context are in use"):
        several.new_cache(SINKS)
    several.drop_cache(extra.pop())
    extra.append(several.new_cache(SINKS))              # the one given back is reused
    for c in extra:
        several.drop_cache(c)


def test_one_sequence_backend_holds_one(backends, default_model):
    """A one-sequence llama.cpp engine (the chat's) has no other caches: serve runs it one at a time."""
    from edgechat.runtime.loader import load
    e = load(default_model, backend="llama.cpp", ctx=CTX, threads=2)
    try:
        assert not e.holds_several and e.new_state() is None
    finally:
        e.close()
    e = load(default_model, backend="llama.cpp", ctx=CTX, threads=2, seqs=3)
    try:
        assert e.holds_several and e.new_state() is not None
    finally:
        e.close()
