"""`--backend auto` stays honest about speed: files and kernel tables where native measured slower than
llama.cpp (runtime/speed.py) run on llama.cpp, and the reason says so."""
from dataclasses import dataclass

import numpy as np

from edgechat.runtime import load
from edgechat.runtime.speed import native_kernel_facts, native_slower

PACKED_X86 = {"Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"}


@dataclass
class T:
    name: str
    type_name: str
    data: np.ndarray


def layer(i: int, kind: str, nbytes: int) -> list[T]:
    names = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
    return [T(f"blk.{i}.{n}.weight", kind, np.zeros(nbytes, np.uint8)) for n in names]


def q4_k_m_file() -> list[T]:
    """Mostly Q4_K with Q6_K for some tensors, a tied Q6_K embedding, F32 norms (not matmul weights)."""
    ts = [T("token_embd.weight", "Q6_K", np.zeros(500, np.uint8)), T("output_norm.weight", "F32", np.zeros(4000, np.uint8))]
    for i in range(4):
        ts += layer(i, "Q4_K", 100) + [T(f"blk.{i}.attn_norm.weight", "F32", np.zeros(4000, np.uint8))]
    return ts


def test_packed_files_run_native():
    """Every matmul weight packed on this table (norms are not matmul weights): no reason to switch."""
    assert native_slower(q4_k_m_file(), "avx512", PACKED_X86) is None


def test_scalar_table_runs_llama_cpp():
    """The generic (scalar) table is always slower than llama.cpp: auto says so."""
    reason = native_slower(q4_k_m_file(), "generic", set())
    assert reason and "scalar" in reason


def test_unpacked_weight_types_run_llama_cpp():
    """F16 matmul weights (no packed layout) beyond the share the rule allows: llama.cpp, named in the reason;
    a tied embedding counts as the output matmul."""
    ts = [T("token_embd.weight", "Q8_0", np.zeros(100, np.uint8))] + layer(0, "F16", 1000)
    reason = native_slower(ts, "avx2", PACKED_X86)
    assert reason and "F16" in reason and "avx2" in reason
    # a few unpacked bytes (an F16 tensor in a Q4_K_M file) stay under the share
    ts = q4_k_m_file() + [T("blk.0.attn_v.weight", "F16", np.zeros(10, np.uint8))]
    assert native_slower(ts, "avx2", PACKED_X86) is None


def test_q4_k_m_of_narrow_models_runs_native_on_x86():
    """n_embd not a multiple of 256 (SmolLM2-135M and -360M, Qwen2.5-0.5B): llama.cpp's Q4_K_M falls back
    to Q5_0 for most tensors. The x86 tables read Q5_0 packed, so these files stay native there."""
    ts = [T("token_embd.weight", "Q8_0", np.zeros(500, np.uint8))]
    for i in range(4):
        ts += layer(i, "Q5_0", 100)[:-1] + [T(f"blk.{i}.ffn_down.weight", "Q6_K" if i % 2 else "Q4_K", np.zeros(100, np.uint8))]
    assert native_slower(ts, "avx2", PACKED_X86) is None
    isa, packed = native_kernel_facts()
    if isa in ("avx2", "avxvnni", "avx512"):
        assert packed == PACKED_X86


def test_tables_without_packed_layouts_keep_native():
    """NEON tables have no packed layout and no measurement against llama.cpp here: native stays."""
    assert native_slower(q4_k_m_file(), "neon_dotprod", set()) is None


def test_auto_on_f32_model_picks_llama_cpp(tiny_gguf):
    """A real load: a tiny F32 model with auto runs on llama.cpp on an x86 table, and the reason names
    F32; asked for explicitly, native still runs it."""
    isa, packed = native_kernel_facts()
    path = tiny_gguf("llama")
    eng = load(path, threads=1, ctx=64)
    if isa == "generic" or packed:
        assert eng.info.backend == "llama.cpp"
        assert "F32" in eng.info.reason or "scalar" in eng.info.reason
    else:
        assert eng.info.backend == "native"
    assert load(path, backend="native", threads=1, ctx=64).info.backend == "native"
