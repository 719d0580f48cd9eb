"""Sampler: llama.cpp's own sampler chain is the oracle for which tokens survive each filter."""
import ctypes

import numpy as np
import pytest

from edgechat.runtime.sampler import RANDOM_SEED, make_sampler

VOCAB = 49152


def _logits(seed, vocab=VOCAB, scale=3.0):
    # logits: [vocab] float32, a peaked head over a long tail, as real models give
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(vocab).astype(np.float32) * scale
    x[rng.integers(0, vocab, 20)] += 8
    return x


def llama_cpp_candidates(logits, history, *, temp, top_k, top_p, min_p, repeat_penalty, repeat_last_n):
    """Ids and logits left by llama.cpp's chain: penalties, top-k, top-p, min-p, temp."""
    import llama_cpp as L
    last_n = len(history) if repeat_last_n < 0 else repeat_last_n     # -1 (all) is ours
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_penalties(len(logits), last_n, repeat_penalty, 0.0, 0.0))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(top_k))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(top_p, 1))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_min_p(min_p, 1))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(temp))
    try:
        for t in history:
            L.llama_sampler_accept(chain, t)
        data = (L.llama_token_data * len(logits))()
        for i, v in enumerate(logits.tolist()):
            data[i].id, data[i].logit, data[i].p = i, v, 0.0
        arr = L.llama_token_data_array(data=data, size=len(logits), selected=-1, sorted=False)
        L.llama_sampler_apply(chain, ctypes.byref(arr))
        ids = np.array([arr.data[i].id for i in range(arr.size)])
        z = np.array([arr.data[i].logit for i in range(arr.size)], dtype=np.float32)
        return ids, z
    finally:
        L.llama_sampler_free(chain)


CASES = [
    dict(temp=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1, repeat_last_n=64),   # defaults
    dict(temp=1.0, top_k=0, top_p=0.9, min_p=0.0, repeat_penalty=1.0, repeat_last_n=64),      # full vocab top-p
    dict(temp=0.7, top_k=0, top_p=1.0, min_p=0.1, repeat_penalty=1.3, repeat_last_n=16),
    dict(temp=1.2, top_k=100, top_p=0.5, min_p=0.02, repeat_penalty=0.9, repeat_last_n=-1),
    dict(temp=0.5, top_k=5, top_p=1.0, min_p=0.0, repeat_penalty=1.1, repeat_last_n=0),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_candidates_match_llama_cpp(case, seed):
    logits = _logits(seed)
    head = np.argsort(-logits)[:30]
    history = list(np.random.default_rng(seed).choice(head, 80)) + list(range(50))
    s = make_sampler(**case)
    ids, z = s.candidates(logits, history)
    ref_ids, ref_z = llama_cpp_candidates(logits, history, **case)
    mine, ref = set(ids.tolist()), set(ref_ids.tolist())
    # the same set, but for at most the one token at the top-p cut: llama.cpp sums probabilities in
    # float32 over the whole vocab, we sum in float64, and over ~1000 candidates the cut can move by one
    both = mine & ref
    assert len(mine ^ ref) <= 1, (len(mine), len(ref))
    for t in mine ^ ref:
        rank = np.argsort(-s._penalize(logits, history), kind="stable").tolist().index(t)
        assert rank == len(both)
    assert len(both) > 0
    scaled = dict(zip(ids.tolist(), (z / case["temp"]).tolist()))
    for i, v in zip(ref_ids.tolist(), ref_z.tolist()):
        if i in both:
            assert scaled[i] == pytest.approx(v, rel=1e-5, abs=1e-5)


def test_greedy_is_argmax_without_rng():
    logits = _logits(3)
    s = make_sampler(temp=0, repeat_penalty=1.0)
    state = s.rng.bit_generator.state
    assert s.sample(logits, [int(np.argmax(logits))]) == int(np.argmax(logits))
    assert s.rng.bit_generator.state == state


def test_greedy_still_penalizes():
    logits = np.array([1.0, 2.0, 1.9], dtype=np.float32)
    assert make_sampler(temp=0, repeat_penalty=1.1).sample(logits, [1]) == 2
    assert make_sampler(temp=0, repeat_penalty=1.0).sample(logits, [1]) == 1


def test_penalty_divides_positive_multiplies_negative():
    s = make_sampler(repeat_penalty=2.0, repeat_last_n=3)
    x = np.array([4.0, -4.0, 4.0, -4.0, 1.0], dtype=np.float32)
    out = s._penalize(x, [0, 0, 1, 2, 1])    # last 3: {2, 1}; token 0 is too old
    assert out.tolist() == [4.0, -8.0, 2.0, -4.0, 1.0]
    assert x.tolist() == [4.0, -4.0, 4.0, -4.0, 1.0]     # the caller's logits are untouched


def test_same_seed_same_sequence():
    logits = [_logits(s, scale=1.0) for s in range(30)]

    def run(seed):
        s = make_sampler(temp=1.0, top_k=0, top_p=0.99, min_p=0.0, seed=seed)
        return [s.sample(x, []) for x in logits]

    assert run(7) == run(7)
    assert run(7) != run(8)
    # any int is a seed (an API client may send a negative or a 128-bit one), except -1: a fresh one
    # each time, as llama.cpp's; 30 draws at temp 1 over the whole vocab repeat only by chance
    assert run(-5) == run(-5) and run(-5) != run(7)
    assert run(2**70 + 3) == run(2**70 + 3)
    assert run(RANDOM_SEED) != run(RANDOM_SEED)


def test_distribution_follows_probabilities():
    # three candidates with probabilities 0.5, 0.3, 0.2 at temp 1
    p = np.array([0.5, 0.3, 0.2])
    logits = np.full(1000, -1e9, dtype=np.float32)
    logits[[10, 20, 30]] = np.log(p)
    s = make_sampler(temp=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0, seed=0)
    draws = np.array([s.sample(logits, []) for _ in range(20000)])
    freq = np.array([(draws == t).mean() for t in (10, 20, 30)])
    assert np.abs(freq - p).max() < 0.015
    assert set(np.unique(draws)) == {10, 20, 30}


def test_top_k_one_is_greedy_at_any_temperature():
    logits = _logits(5)
    s = make_sampler(temp=5.0, top_k=1, repeat_penalty=1.0, seed=1)
    assert {s.sample(logits, []) for _ in range(50)} == {int(np.argmax(logits))}


def test_large_vocab_top_p_probe_path():
    # 150k vocab, no top-k, no min-p: top-p finds its set among the best few without a full sort
    logits = _logits(9, vocab=151936, scale=1.0)
    logits[:5] += 30
    s = make_sampler(temp=1.0, top_k=0, top_p=0.9, min_p=0.0, repeat_penalty=1.0, seed=0)
    ids, _ = s.candidates(logits, [])
    assert set(ids.tolist()) <= set(range(5))
