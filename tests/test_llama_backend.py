"""The llama.cpp backend: batching, the StreamingLLM sink policy, cache bookkeeping, truncate, loading.

Oracles: token-by-token feeding (for batches), a fresh llama.cpp context fed only the tokens the policy
says the cache holds (for the sink policy, on a 1-layer model: see SINK_TOL), and a plain-Python replay of
the eviction rule (for the counters).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgechat.runtime.backends.llama_cpp import LlamaCppBackend
from edgechat.runtime.errors import ModelNotFound, UnsupportedModel

CTX = 64          # small, so a few hundred tokens wrap the ring several times
SINKS = 4

# Batch vs token by token, default model. llama.cpp 0.3.36 computes a ubatch of < 64 tokens row by row,
# bit for bit like single tokens (measured max |dlogit| 0.0 with CTX=64, where every chunk is < 64);
# a ubatch of >= 64 tokens takes its tiled flash-attention path and, on this 135M Q4_1 model that
# re-quantizes every matmul input to q8, differs by up to 1.54 logits (measured, 300 tokens of prose,
# top-1 agreement 0.97). The numbers are llama.cpp's rounding, not the cache: the tiny F32 model below
# checks the same chunking with a tolerance 100x tighter.
REAL_BATCH_ATOL = 3.0          # 2x the measured 1.54
REAL_BATCH_TOP1_MIN = 0.95     # measured 0.97
# The same on the tiny random F32 model (logits scale ~7): measured max |dlogit| 0.017 (f16 KV cache,
# tiled vs row flash attention). A window off by one token moves the logits by >= 0.42 on it.
TINY_BATCH_ATOL = 0.05
# Sink policy vs a fresh context fed [sinks] + [window] at positions 0..used-1. The two are the same
# cache only on a 1-layer model: from layer 1 on, a cached K/V entry was computed when the token was
# fed and attended to tokens evicted since, which a fresh context cannot see (measured on the 2-layer
# tiny model: max |dlogit| 2.65, as far off as a wrong window). On 1 layer what is left is the K
# re-rotation: each llama_memory_seq_add re-rotates the stored f16 keys and rounds them to f16 again,
# up to CTX - SINKS times per key. Measured max |dlogit| 0.019 with f16 K (0.008 with f32 K, where only
# the f32 RoPE rounding is left), scale ~7; the nearest wrong window (E+1, E-1, or no sinks) is >= 0.42.
SINK_TOL = 0.05
WRONG_WINDOW_MIN = 4 * SINK_TOL   # the oracle must tell a window off by one token from the right one


def replay(n_fed: int, capacity: int, chunk: int) -> tuple[int, int]:
    """(used, evicted) after ``n_fed`` tokens: before each token, a full cache drops ``chunk`` entries."""
    used = evicted = 0
    for _ in range(n_fed):
        if used == capacity:
            used -= chunk
            evicted += chunk
        used += 1
    return used, evicted


@pytest.fixture(scope="module")
def prose(tokenizer, natural_text) -> list[int]:
    return tokenizer.tokenize(natural_text)[:600]


@pytest.fixture(scope="module")
def backend(default_model):
    """backend(**kw) -> a reset LlamaCppBackend on the default model, 2 threads; one per kwargs."""
    made: dict = {}

    def get(ctx=CTX, sinks=SINKS, evict_chunk=1, **kw):
        key = (ctx, evict_chunk, tuple(sorted(kw.items())))
        if key not in made:
            made[key] = LlamaCppBackend(default_model, ctx=ctx, sinks=sinks, threads=2,
                                        evict_chunk=evict_chunk, **kw)
        b = made[key]
        b.reset(sinks)
        return b

    yield get
    for b in made.values():
        b.close()


@pytest.fixture(scope="module")
def tiny(make_ggufs):
    """tiny(n_layer, **kw) -> a LlamaCppBackend on the tiny random-weight F32 llama GGUF."""
    from conftest import CACHE
    made = []

    def get(n_layer=2, **kw):
        path = make_ggufs.make_tiny("llama", CACHE / "ggufs", n_layer=n_layer)
        made.append(LlamaCppBackend(path, threads=2, **kw))
        return made[-1]

    yield get
    for b in made:
        b.close()


def one_by_one(b, ids) -> np.ndarray:
    return np.stack([b.eval([t]) for t in ids])        # (len(ids), vocab)


def batch_vs_tokens(b, ids, pre):
    """Logits of ids[pre:] fed as one batch after ids[:pre] one by one, and fed all one by one."""
    ref = one_by_one(b, ids)[pre:]
    info_ref = b.cache_info()
    b.reset()
    for t in ids[:pre]:
        b.eval([t])
    got = b.eval(ids[pre:], all_logits=True)
    assert b.cache_info() == info_ref
    return got, ref


# ---- batches -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("evict_chunk", [1, 16, None])
def test_batch_crossing_capacity_equals_token_by_token(backend, prose, evict_chunk):
    b = backend(evict_chunk=evict_chunk)
    got, ref = batch_vs_tokens(b, prose[:110], pre=10)        # 10 + 100 tokens: wraps a 64-entry ring
    assert b.cache_info().evicted > 0
    diff = np.abs(got - ref).max()
    top1 = (got.argmax(1) == ref.argmax(1)).mean()
    print(f"evict_chunk={evict_chunk}: max |dlogit| {diff:.4f}, top-1 agreement {top1:.3f}")
    assert got.shape == ref.shape == (100, b.n_vocab) and got.dtype == np.float32
    assert diff <= REAL_BATCH_ATOL and top1 >= REAL_BATCH_TOP1_MIN


def test_large_batch_equals_token_by_token(backend, prose):
    b = backend(ctx=256)
    got, ref = batch_vs_tokens(b, prose[:300], pre=0)          # a 256-token ubatch, then the wrap
    diff = np.abs(got - ref).max()
    top1 = (got.argmax(1) == ref.argmax(1)).mean()
    print(f"max |dlogit| {diff:.4f}, top-1 agreement {top1:.3f}")
    assert diff <= REAL_BATCH_ATOL and top1 >= REAL_BATCH_TOP1_MIN


@pytest.mark.parametrize("evict_chunk", [1, 16])
def test_tiny_batch_equals_token_by_token(tiny, evict_chunk):
    b = tiny(ctx=CTX, sinks=SINKS, evict_chunk=evict_chunk)
    ids = np.random.default_rng(2).integers(0, b.n_vocab, 3 * CTX).tolist()
    for pre in (0, 10):
        b.reset()
        got, ref = batch_vs_tokens(b, ids, pre)
        print(f"pre={pre}: max |dlogit| {np.abs(got - ref).max():.5f}")
        np.testing.assert_allclose(got, ref, rtol=0, atol=TINY_BATCH_ATOL)


def test_last_logits_only(backend, prose):
    b = backend()
    last = b.eval(prose[:80])
    b.reset()
    every = b.eval(prose[:80], all_logits=True)
    assert last.shape == (b.n_vocab,) and last.dtype == np.float32
    np.testing.assert_array_equal(last, every[-1])          # same chunks, same kernels: bit-exact


# ---- the sink policy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("evict_chunk", [1, 16])
def test_sink_policy_matches_fresh_context(tiny, evict_chunk):
    stream = tiny(n_layer=1, ctx=CTX, sinks=SINKS, evict_chunk=evict_chunk)
    fresh = tiny(n_layer=1, ctx=CTX, sinks=SINKS)
    ids = np.random.default_rng(1).integers(0, stream.n_vocab, 3 * CTX + 17).tolist()
    one_by_one(stream, ids[:-1])
    got = stream.eval([ids[-1]])
    used, evicted = replay(len(ids), CTX, evict_chunk)
    info = stream.cache_info()
    assert (info.used, info.evicted) == (used, evicted)

    def window(first, sinks=ids[:SINKS]):
        fresh.reset()
        return fresh.eval(list(sinks) + ids[first:])          # positions 0..len-1, as re-indexed

    right = window(SINKS + evicted)
    diff = np.abs(got - right).max()
    wrong = {"E-1": window(SINKS + evicted - 1), "E+1": window(SINKS + evicted + 1),
             "no sinks": window(len(ids) - CTX, sinks=[])}
    wrong_diff = {k: float(np.abs(got - v).max()) for k, v in wrong.items()}
    print(f"evict_chunk={evict_chunk}: max |dlogit| vs the policy's window {diff:.4f}; "
          f"vs wrong windows {wrong_diff}")
    assert diff <= SINK_TOL
    assert min(wrong_diff.values()) >= WRONG_WINDOW_MIN


# ---- bookkeeping -------------------------------------------------------------------------------------

@pytest.mark.parametrize("evict_chunk", [1, 7, None])
def test_counters_follow_the_eviction_rule(backend, prose, evict_chunk):
    b = backend(evict_chunk=evict_chunk)
    first = b.cache_info()
    chunk = first.evict_chunk
    assert 1 <= chunk <= CTX - SINKS
    assert first.capacity == CTX and first.used == first.evicted == first.n_past == 0
    fed = 0
    for n in (1, 5, 50, 3, 64, 1, 1, 100, 2):
        b.eval(prose[fed:fed + n])
        fed += n
        info = b.cache_info()
        used, evicted = replay(fed, CTX, chunk)
        # the window starts past the evicted chunks: tokens [SINKS, SINKS + evicted) have gone
        assert info == replace(first, used=used, evicted=evicted, n_past=fed,
                               window_start=min(fed, SINKS + evicted)), fed


def test_bytes_are_the_f16_cache(backend):
    info = backend().cache_info()
    n_layer, kv_dim = 30, 3 * 64                 # SmolLM2-135M: 30 layers, 3 KV heads of 64
    assert info.bytes == n_layer * CTX * 2 * kv_dim * 2


def test_reset_changes_sinks_and_caps_the_chunk(backend, prose):
    b = backend(evict_chunk=64)
    assert b.cache_info().evict_chunk == CTX - SINKS          # never more than the window
    b.reset(sinks=60)
    assert b.cache_info().sinks == 60 and b.cache_info().evict_chunk == 4
    b.eval(prose[:70])
    assert b.cache_info().evicted == 8 and b.cache_info().used == 62
    with pytest.raises(ValueError):
        b.reset(sinks=CTX)


def test_bad_input(backend):
    b = backend()
    with pytest.raises(ValueError):
        b.eval([])
    with pytest.raises(ValueError):
        b.eval([b.n_vocab])
    assert b.cache_info().n_past == 0


# ---- truncate ----------------------------------------------------------------------------------------

def test_truncate_before_any_eviction(backend, prose):
    b = backend()
    b.eval(prose[:20])
    want = b.eval(prose[20:30])
    assert b.truncate(30)                                          # a no-op
    assert b.truncate(20)
    assert b.cache_info().n_past == b.cache_info().used == 20
    np.testing.assert_array_equal(b.eval(prose[20:30]), want)     # same chunks: bit-exact
    with pytest.raises(ValueError):
        b.truncate(31)


def test_truncate_refuses_past_an_eviction(backend, prose):
    b = backend(evict_chunk=16)
    b.eval(prose[:64])
    assert b.cache_info().evicted == 0
    b.eval(prose[64:65])                          # evicts 16 before adding token 64
    b.eval(prose[65:70])
    before = b.cache_info()
    assert before.evicted == 16 and before.used == 54
    assert not b.truncate(64)                     # the eviction removed entries that state held
    assert not b.truncate(10)
    assert b.cache_info() == before               # refused: nothing changed
    assert b.truncate(65)                         # after the eviction: fine
    assert b.cache_info() == replace(before, n_past=65, used=49)
    got = b.eval(prose[65:70])
    b.reset()
    b.eval(prose[:64])
    b.eval(prose[64:65])
    np.testing.assert_array_equal(got, b.eval(prose[65:70]))


def test_truncate_with_exact_streaming(backend, prose):
    b = backend(evict_chunk=1)
    b.eval(prose[:70])
    assert not b.truncate(69)                    # every token past capacity evicts one
    assert b.truncate(70)


# ---- loading -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("gpu_layers", [-1, "all", 8])
def test_gpu_layers_load_on_any_build(default_model, gpu_layers):
    import llama_cpp
    b = LlamaCppBackend(default_model, ctx=CTX, threads=2, gpu_layers=gpu_layers)
    try:
        assert b.info.extra["gpu_offload"] == bool(llama_cpp.llama_supports_gpu_offload())
        assert b.info.extra["gpu_layers"] == (8 if gpu_layers == 8 else -1)
        assert b.info.threads == 2 and b.name == "llama.cpp"
        assert np.isfinite(b.eval([1, 2, 3])).all()
        if not b.info.extra["gpu_offload"]:
            print("this llama.cpp build has no GPU offload; gpu_layers is accepted and ignored")
    finally:
        b.close()
        b.close()                                 # idempotent


@pytest.mark.parametrize("offload", [False, True])
def test_gpu_layers_on_a_cpu_only_llama_cpp_is_said_and_keeps_auto_native(default_model, monkeypatch, offload):
    # a cpu-only llama.cpp ignores n_gpu_layers without a word: auto must not trade the faster native
    # engine for it then, and every reason (-v, --json, the status bar) says the flag is ignored
    from edgechat.runtime import loader as engine_mod
    from edgechat.runtime.info import GPU_LAYERS_IGNORED
    monkeypatch.setattr(engine_mod, "_can_offload", lambda: offload)
    for backend, expect in (("auto", "llama.cpp" if offload else "native"), ("llama.cpp", "llama.cpp")):
        eng = engine_mod.load(default_model, backend=backend, ctx=CTX, threads=2, gpu_layers=-1, speculative="off")
        try:
            assert eng.info.backend == expect
            assert (GPU_LAYERS_IGNORED in eng.info.reason) == (not offload)
            assert eng.info.gpu_layers == (0 if backend == "auto" and not offload else -1)
        finally:
            eng.close()


def test_unknown_arch_is_unsupported(tmp_path):
    import gguf
    path = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(path), "nosucharch")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedModel) as e:
        LlamaCppBackend(path, ctx=CTX)
    msg = str(e.value)
    print(msg)
    assert "nosucharch" in msg and "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFound):
        LlamaCppBackend(tmp_path / "nope.gguf")


def test_engine_window_start_follows_chunked_eviction(default_model):
    """Engine.chat on the llama.cpp backend (64-token eviction chunks): cache_info's window_start is
    where the window really starts (sinks + the evicted chunks), not where one-token eviction would
    put it, and the cache holds exactly sinks + [window_start, n_past)."""
    from edgechat.runtime import load
    e = load(default_model, backend="llama.cpp", ctx=CTX, sinks=SINKS, threads=2, evict_chunk=16)
    try:
        msgs, seen_gap = [], False
        for i in range(6):
            msgs.append({"role": "user", "content": f"Tell me one fact about the number {i}."})
            done = list(e.chat(msgs, max_tokens=24, temp=0.0))[-1]
            msgs.append({"role": "assistant", "content": done.text})
            c = done.cache
            assert c.evict_chunk == 16 and c.evicted % 16 == 0
            assert c.window_start == min(c.n_past, SINKS + c.evicted)
            assert c.used == min(c.n_past, SINKS) + c.n_past - c.window_start
            one_token = max(SINKS, c.n_past - (CTX - SINKS))    # the old, one-token formula
            seen_gap |= c.evicted > 0 and c.window_start != one_token
        assert seen_gap, "no turn ended with a partly filled window after a chunk eviction"
    finally:
        e.close()


class _FakeLib:
    """Stands in for llama.cpp's module where only its system info is read."""

    def __init__(self, info: bytes):
        self.info = info

    def llama_print_system_info(self) -> bytes:
        return self.info


def test_repacking_off_only_for_an_amx_build_on_an_amx_cpu(monkeypatch):
    from edgechat.runtime.backends import llama_cpp as lc
    amx_build = b"CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
    plain_build = b"CPU : AVX2 = 1 | AVX512 = 1 | REPACK = 1 |"
    monkeypatch.setattr(lc, "has_amx", lambda: True)
    assert lc._amx_buffer_type(_FakeLib(amx_build))          # its AMX buffer type would crash: repacks off
    assert not lc._amx_buffer_type(_FakeLib(plain_build))    # a build without AMX keeps them
    monkeypatch.setattr(lc, "has_amx", lambda: False)
    assert not lc._amx_buffer_type(_FakeLib(amx_build))      # no AMX tiles on this CPU
    monkeypatch.delenv("LLAMA_CPP_LIB_PATH", raising=False)
    assert lc._build_features(_FakeLib(plain_build)).split() == ["AVX2", "AVX512", "REPACK"]
