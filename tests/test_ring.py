"""The sink-ring KV cache (StreamingLLM) of the native engine, at the backend level.

Oracles, all independent of the code under test:
- llama.cpp on the same GGUF with the same policy (``evict_chunk=1``: per evicted token ``seq_rm`` +
  ``seq_add``), on a stream 5x the cache: top-1 agreement and perplexity after wrap-around.
- token-by-token feeding, for chunked prefill of a prompt longer than the window.
- the policy in closed form for the counters: used = min(n, ctx), evicted = max(0, n - ctx), capacity and
  bytes (n_layer * ctx * kv_dim * 2 bytes, K and V) fixed at load.
- a FRESH cache fed [the sink tokens] + [the window tokens] at positions 0..used-1, for the re-indexing.
  That is the same cache only for a 1-layer model (from layer 1 on, a cached K/V entry was computed while
  the token attended to tokens evicted since), so it runs on layer 0 of the default model's real weights,
  dequantized to F32 (no q8 re-quantization of activations to amplify rounding).
- the StreamingLLM paper's claim itself: window attention without sinks collapses once the first tokens
  are evicted.

Run ``python tests/test_ring.py --noise-floor`` to re-measure the generic-vs-avx2 noise floor below.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import agreement, agreement_line, ppl_and_top1

THREADS = 2

# ---- native vs llama.cpp after wrap-around --------------------------------------------------------
ORACLE_CTX = 128
ORACLE_TOKENS = 640        # 5x the cache: the ring wraps around 4 times
# Noise floor, measured with ``--noise-floor`` in exactly this setting (ctx 128, 4 sinks, 640 tokens of
# natural_text, rows >= ORACLE_CTX, i.e. from the first eviction on): two runs of OUR engine that differ
# only in float summation order (EDGECHAT_ISA=generic vs avx2) agree on top-1 for 95.9% of the 512 rows
# (max |dlogit| 1.16); at token offsets 5000 and 10000 of the text: 96.3% and 95.7% (max 2.03).
# Native avx2 vs llama.cpp on the same three streams: 96.1%, 96.3%, 96.1% (ppl within 0.64%, 0.41%,
# 0.49%; 100% agreement where llama.cpp's top-1 leads by > 1 logit). This 135M model re-quantizes every
# matmul input to q8, which turns rounding differences into ~0.5 logit. The threshold is the lowest
# floor seen less ~2 binomial standard deviations (sqrt(.043 * .957 / 512) = 0.9%).
NOISE_FLOOR_TOP1 = 0.957
ORACLE_TOP1_MIN = NOISE_FLOOR_TOP1 - 0.017
ORACLE_PPL_REL_TOL = 0.02   # the bar: perplexity within 2% of llama.cpp, after wrap-around
# Where llama.cpp's top-1 leads its top-2 by more than 2x the ~0.5 noise amplitude, rounding cannot
# flip the choice: measured 100% agreement there (this setting, three streams; and test_model_oracle.py).
DECISIVE_MARGIN = 1.0
DECISIVE_TOP1_MIN = 0.995

# ---- chunked prefill vs token by token --------------------------------------------------------------
CHUNK_CTX = 64
CHUNK_TOKENS = 300
# Measured bit-identical (max |dlogit| 0.0) on avx2 and generic: every output column of the tiled gemm
# and every attention row is summed in the same order whatever the chunk is. If a kernel ever sums
# decode and prefill differently, q8 re-quantization makes that ~0.5 logit (see above) and this test
# must move to the top-1 / perplexity criteria of the llama.cpp comparison.
CHUNK_LOGIT_ATOL = 0.0

# ---- re-indexing vs a fresh cache (1 layer, F32 weights) ------------------------------------------
REINDEX_CTX = 64
REINDEX_TOKENS = 2000
REINDEX_FRESH_CTX = 256       # the fresh caches: room for [sinks] + [window] in one chunk
# Measured max |dlogit| 0.0031 over 20 eviction points for sinks 0, 4, 9 (logits scale ~55): what is
# left is keys rotated at different angles (absolute vs re-indexed) and rounded to f16. The nearest
# wrong caches (window one token longer or shorter, or the sinks dropped) are off by 0.16 to 0.64 at
# their worst point (0.018 at their best).
REINDEX_ATOL = 0.01
WRONG_CACHE_MIN = 5 * REINDEX_ATOL   # each wrong cache must be this far off at some point: the test can fail

# ---- sinks vs window attention ------------------------------------------------------------------------
SINK_PPL_CTX = 128
SINK_PPL_TOKENS = 1536
# Measured on 2048 tokens of natural_text after the first eviction: ctx 64: ppl 18.0 with 4 sinks vs
# 44.4 without; ctx 128: 15.6 vs 33.1; ctx 256: 13.9 vs 25.4 (ratio 1.8 to 2.5).
SINK_PPL_RATIO_MIN = 1.5


def native(mf, ctx, sinks):
    from edgechat.runtime.backends.native import NativeBackend
    return NativeBackend(mf, ctx=ctx, sinks=sinks, threads=THREADS)


@pytest.fixture(scope="module")
def mf(default_model):
    from edgechat.runtime.ggufload import read_model
    return read_model(default_model)


@pytest.fixture(scope="module")
def stream(tokenizer, natural_text) -> list[int]:
    """BOS + the first tokens of natural_text: enough for every test here."""
    return [tokenizer.bos_id] + tokenizer.tokenize(natural_text)[:REINDEX_TOKENS - 1]


# ---- native vs llama.cpp ----------------------------------------------------------------------------

def test_native_matches_llama_cpp_after_wraparound(default_model, mf, stream):
    """One eval of 5x ctx tokens (both backends chunk internally): after the ring wrapped, top-1 and
    perplexity match llama.cpp running the same policy with seq_rm/seq_add."""
    from edgechat.runtime.backends.llama_cpp import LlamaCppBackend
    ids = stream[:ORACLE_TOKENS]
    nb = native(mf, ORACLE_CTX, 4)
    lb = LlamaCppBackend(default_model, ctx=ORACLE_CTX, sinks=4, threads=THREADS, evict_chunk=1)
    try:
        ours = nb.eval(ids, all_logits=True)
        ref = lb.eval(ids, all_logits=True)
        info_n, info_l = nb.cache_info(), lb.cache_info()
    finally:
        lb.close()
        nb.close()
    assert ours.shape == ref.shape == (len(ids), nb.n_vocab)
    assert np.isfinite(ours).all()
    for k in ("capacity", "used", "sinks", "evicted", "window_start", "bytes", "n_past"):
        assert getattr(info_n, k) == getattr(info_l, k), k
    assert info_n.evicted == len(ids) - ORACLE_CTX

    w = ORACLE_CTX            # row w is the first token fed after an eviction
    a = agreement(ours[w:], ref[w:], ids[w:], DECISIVE_MARGIN)
    print(f"after wrap-around ({len(ids) - w} rows): {agreement_line(a)}")
    assert a["decisive_rows"] >= (len(ids) - w) // 4          # the decisive check is not vacuous
    assert a["top1"] >= ORACLE_TOP1_MIN
    assert a["top1_decisive"] >= DECISIVE_TOP1_MIN
    assert a["ppl_rel"] <= ORACLE_PPL_REL_TOL


# ---- chunked prefill ----------------------------------------------------------------------------------

def test_chunked_prefill_equals_token_by_token(mf, stream):
    """A prompt 5x the window, fed as one eval (chunked internally at the window), in ragged pieces, and
    token by token: the same logits for every token."""
    ids = stream[:CHUNK_TOKENS]
    one = native(mf, CHUNK_CTX, 4).eval(ids, all_logits=True)
    b = native(mf, CHUNK_CTX, 4)
    single = np.stack([b.eval([t]) for t in ids])
    rng = np.random.default_rng(0)

    def spans():                 # pieces of 1..CHUNK_CTX+10 tokens: some longer than the window
        i = 0
        while i < len(ids):
            m = int(rng.integers(1, CHUNK_CTX + 10))
            yield i, min(i + m, len(ids))
            i += m

    b = native(mf, CHUNK_CTX, 4)
    pieces = [b.eval(ids[a:e], all_logits=True) for a, e in spans()]
    ragged = np.concatenate(pieces)
    assert b.cache_info().evicted == len(ids) - CHUNK_CTX
    print(f"max |dlogit| one eval vs token by token {np.abs(one - single).max()}, "
          f"ragged vs token by token {np.abs(ragged - single).max()}")
    np.testing.assert_allclose(one, single, rtol=0, atol=CHUNK_LOGIT_ATOL)
    np.testing.assert_allclose(ragged, single, rtol=0, atol=CHUNK_LOGIT_ATOL)
    # last-row-only evals (the last layer runs only that row's queries and FFN) return the same row: one
    # eval, and ragged pieces, each piece's last token
    np.testing.assert_allclose(native(mf, CHUNK_CTX, 4).eval(ids), single[-1], rtol=0, atol=CHUNK_LOGIT_ATOL)
    b = native(mf, CHUNK_CTX, 4)
    for a, e in spans():
        np.testing.assert_allclose(b.eval(ids[a:e]), single[e - 1], rtol=0, atol=CHUNK_LOGIT_ATOL)


# ---- counters, capacity, truncate -----------------------------------------------------------------------

@pytest.mark.parametrize("sinks", [0, 4, 9])
def test_capacity_bytes_and_evicted_count(mf, stream, sinks):
    """capacity and bytes never change; used and evicted follow the policy exactly at every step."""
    ctx = 48
    b = native(mf, ctx, sinks)
    info0 = b.cache_info()
    # F16 K and V for every layer and entry, allocated at load
    kv_dim = mf.config["n_head_kv"] * mf.config["head_dim"]
    assert info0.bytes == 2 * mf.config["n_layer"] * ctx * kv_dim * 2
    assert (info0.capacity, info0.used, info0.sinks, info0.evicted, info0.n_past) == \
        (ctx, 0, sinks, 0, 0)
    rng = np.random.default_rng(sinks)
    n = 0
    for _ in range(25):
        m = int(rng.integers(1, 2 * ctx))
        b.eval(stream[n:n + m])
        n += m
        info = b.cache_info()
        assert info.capacity == ctx and info.bytes == info0.bytes and info.sinks == sinks
        assert info.n_past == n
        assert info.evicted == max(0, n - ctx)
        assert info.used == min(n, ctx)
    assert n > 10 * ctx


def test_truncate_before_eviction_rolls_back(mf, stream):
    """Before any eviction, truncate(n) then new tokens == a fresh cache fed stream[:n] + the new tokens."""
    ctx, n_fed, n_keep = 128, 100, 57
    b = native(mf, ctx, 4)
    b.eval(stream[:n_fed])
    other = stream[1000:1020]                 # a different continuation
    assert b.truncate(n_keep)
    assert b.cache_info().n_past == n_keep and b.cache_info().used == n_keep
    got = b.eval(other, all_logits=True)
    want = native(mf, ctx, 4).eval(stream[:n_keep] + other, all_logits=True)[n_keep:]
    np.testing.assert_allclose(got, want, rtol=0, atol=CHUNK_LOGIT_ATOL)
    assert b.truncate(b.cache_info().n_past)          # to where it is: a no-op
    assert not b.truncate(b.cache_info().n_past + 1)  # the future is not there
    assert not b.truncate(-1)


def test_truncate_refuses_past_evictions(mf, stream):
    """After the ring evicted, a point whose window lost entries is refused and nothing changes; a point
    inside the pinned sinks is always there and works."""
    ctx, sinks, n_fed = 64, 4, 150
    b = native(mf, ctx, sinks)
    b.eval(stream[:n_fed])
    before = b.cache_info()
    # the state after n tokens held window positions [max(S, n - W), n); after 150 tokens the cache holds
    # [90, 150): every n in (S, 150) held some position < 90, evicted since
    for n in (sinks + 1, ctx - 1, ctx, n_fed - 40, n_fed - 1):
        assert not b.truncate(n), n
        assert b.cache_info() == before
    # refused truncates left the cache intact: the next token's logits match an untouched cache
    nxt = stream[n_fed:n_fed + 10]
    ref = native(mf, ctx, sinks)
    ref.eval(stream[:n_fed])
    np.testing.assert_allclose(b.eval(nxt, all_logits=True), ref.eval(nxt, all_logits=True), rtol=0,
                               atol=CHUNK_LOGIT_ATOL)
    # back into the sinks: the sinks were never evicted, so this is exactly a cache fed stream[:k]
    for k in (sinks, 2):
        assert b.truncate(k)
        assert b.cache_info().n_past == k and b.cache_info().evicted == 0
        other = stream[1000:1000 + 90]        # wraps the ring again
        got = b.eval(other, all_logits=True)
        want = native(mf, ctx, sinks).eval(stream[:k] + other, all_logits=True)[k:]
        np.testing.assert_allclose(got, want, rtol=0, atol=CHUNK_LOGIT_ATOL)


# ---- re-indexing ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_layer_f32(mf):
    """make(ctx, sinks) -> a native Model of layer 0 of the default model, weights dequantized to F32
    by gguf-py (so activations are not re-quantized to q8)."""
    from edgechat import _native
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize
    tensors = []
    for t in mf.tensors:
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m and int(m.group(1)) > 0:
            continue
        f = dequantize(np.asarray(t.data), GGMLQuantizationType(t.type)).astype(np.float32).reshape(-1)
        tensors.append((t.name, int(GGMLQuantizationType.F32), list(t.shape), f.view(np.uint8)))
    cfg = dict(mf.config, n_layer=1)
    return lambda ctx, sinks: _native.Model(cfg, tensors, ctx, sinks, THREADS)


@pytest.mark.parametrize("sinks", [4, 9, 0])
def test_reindexing_equals_fresh_cache(one_layer_f32, stream, sinks):
    """After eviction, the next-token logits equal those of a FRESH cache fed [sinks] + [window] at
    positions 0..used-1 (StreamingLLM re-indexing), and differ from every near-miss cache."""
    ctx, W = REINDEX_CTX, REINDEX_CTX - sinks
    ids = np.asarray(stream[:REINDEX_TOKENS], np.int32)
    streaming = one_layer_f32(ctx, sinks).eval(ids, True)

    def fresh(toks):
        # one chunk into a cache with room to spare and no sinks: plain causal attention at positions
        # 0..len-1, none of the ring's machinery (cache window, sink-query rotation) involved
        return one_layer_f32(REINDEX_FRESH_CTX, 0).eval(np.asarray(toks, np.int32), False)

    errs, wrong = [], {"window one longer": [], "window one shorter": [], "no sinks": []}
    for n in range(ctx + 1, REINDEX_TOKENS + 1, 97):    # n tokens fed; the cache holds [S] + [n-W, n)
        row = streaming[n - 1]
        sink_ids, window = list(ids[:sinks]), list(ids[n - W:n])
        errs.append(np.abs(row - fresh(sink_ids + window)).max())
        wrong["window one longer"].append(np.abs(row - fresh(sink_ids + list(ids[n - W - 1:n]))).max())
        wrong["window one shorter"].append(np.abs(row - fresh(sink_ids + window[1:])).max())
        if sinks:
            wrong["no sinks"].append(np.abs(row - fresh(window)).max())
    print(f"sinks={sinks}: max |dlogit| vs fresh re-indexed cache {max(errs):.4f} over {len(errs)} points; "
          + ", ".join(f"{k} {max(v):.3f}" for k, v in wrong.items() if v))
    assert max(errs) <= REINDEX_ATOL
    for k, v in wrong.items():
        if v:
            assert max(v) >= WRONG_CACHE_MIN, k


# ---- sinks vs window attention --------------------------------------------------------------------------

def test_sinks_lower_perplexity_than_window_only(mf, stream):
    """StreamingLLM: with the first tokens pinned, perplexity after eviction stays low; plain window
    attention (0 sinks, same capacity) degrades once they are evicted."""
    ids = stream[:SINK_PPL_TOKENS]
    w = SINK_PPL_CTX
    ppl = {s: ppl_and_top1(native(mf, SINK_PPL_CTX, s).eval(ids, all_logits=True)[w:], ids[w:])[0]
           for s in (4, 0)}
    print(f"ctx {SINK_PPL_CTX}, rows after the first eviction: ppl 4 sinks {ppl[4]:.3f}, 0 sinks {ppl[0]:.3f}")
    assert ppl[0] >= SINK_PPL_RATIO_MIN * ppl[4]


# ---- measuring the noise floor (not a test) ---------------------------------------------------------------

def _dump_logits(isa: str, offset: int, out: str) -> None:
    """Child: native logits of the oracle setting at token offset ``offset`` of natural_text -> out."""
    from pydoc_data.topics import topics

    from edgechat.models.resolve import default_model_path
    from edgechat.runtime.ggufload import read_model
    from edgechat.runtime.tokenizer import Tokenizer
    path = default_model_path()
    tok = Tokenizer(path)
    text = "\n\n".join(topics[k] for k in sorted(topics))
    ids = [tok.bos_id] + tok.tokenize(text)[offset:offset + ORACLE_TOKENS - 1]
    b = native(read_model(path), ORACLE_CTX, 4)
    assert b._m.isa == isa, (b._m.isa, isa)
    np.save(out, b.eval(ids, all_logits=True))


def measure_noise_floor(offsets=(0, 5000, 10000)) -> None:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        for off in offsets:
            runs = {}
            for isa in ("generic", "avx2"):
                out = os.path.join(d, f"{isa}_{off}.npy")
                subprocess.run([sys.executable, __file__, "--dump", isa, str(off), out], check=True,
                               env={**os.environ, "EDGECHAT_ISA": isa})
                runs[isa] = np.load(out)[ORACLE_CTX:]
            a, b = runs["generic"].argmax(1), runs["avx2"].argmax(1)
            print(f"offset {off}: generic vs avx2 top-1 {float((a == b).mean()):.4f} on {len(a)} rows, "
                  f"max |dlogit| {np.abs(runs['generic'] - runs['avx2']).max():.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--dump"]:
        _dump_logits(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == ["--noise-floor"]:
        measure_noise_floor()
    else:
        sys.exit("usage: python tests/test_ring.py --noise-floor")
