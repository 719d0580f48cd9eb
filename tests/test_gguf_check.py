"""check_gguf: every malformed file is refused naming its field; valid files pass and agree with
gguf.GGUFReader (the oracle) on metadata, array layout and tensors."""
from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edgechat.runtime.errors import GGUFError
from edgechat.runtime.gguf_check import check_gguf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import make_bad_ggufs as bad  # noqa: E402
import make_test_ggufs as mk  # noqa: E402
from fuzz_gguf import assert_matches_reader  # noqa: E402

CASES = bad.cases()
# Peak Python allocation while checking: nothing in check_gguf may be sized by a count in the file.
MAX_PEAK_BAD = 64 << 10        # a malformed mini file (~3 KB)
MAX_PEAK_VALID = 1 << 20       # a real model: its scalar metadata, chat template and tensor list

# Valid files: (kind, arch or ftype, variant). "oracle" ones are also compared with GGUFReader,
# which takes ~2 s on a 49k-token vocabulary; the rest are only checked.
VALID = ([("tiny", a, "f32") for a in mk.ARCHS] + [("tiny", a, "f16") for a in mk.ARCHS]
         + [("quant", a, ft) for a in mk.ARCHS for ft in mk.QUANT_FTYPES]
         + [("default_requant", None, ft) for ft in mk.DEFAULT_REQUANT_FTYPES])
ORACLE = {("tiny", a, "f16") for a in mk.ARCHS} | {("quant", a, "Q4_K_M") for a in mk.ARCHS} \
    | {("default_requant", None, "Q4_K_M")}


def _valid_path(kind: str, arch: str | None, variant: str) -> Path:
    if kind == "tiny":
        return mk.make_tiny(arch, dtype=variant)
    if kind == "quant":
        return mk.make_quantized(arch, variant)
    return mk.make_default_requantized(variant)


def _check(path: Path):
    try:
        return check_gguf(path)
    except GGUFError as e:
        return e


def _checked(path: Path):
    """check_gguf(path) once timed, once under tracemalloc: (summary or GGUFError, peak bytes, ms).
    The time is printed, never asserted."""
    t0 = time.perf_counter()
    _check(path)
    ms = (time.perf_counter() - t0) * 1e3
    tracemalloc.start()
    try:
        result = _check(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak, ms


def test_corpus_covers_each_check_once():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_malformed_file_is_refused_naming_its_field(case, tmp_path):
    path = tmp_path / f"{case.name}.gguf"
    path.write_bytes(case.data)
    err, peak, ms = _checked(path)
    print(f"{case.name}: {ms:.2f} ms, peak {peak} B: {err}")
    assert isinstance(err, GGUFError), f"{case.name} passed the check"
    assert (err.field, case.fragment in str(err)) == (case.field, True), str(err)
    assert peak < MAX_PEAK_BAD


def test_mini_base_of_the_corpus_is_valid(tmp_path):
    path = tmp_path / "mini.gguf"
    path.write_bytes(bad.mini().to_bytes())
    assert_matches_reader(check_gguf(path), path)


def test_default_model_passes_and_matches_reader():
    path = mk.default_model_path()
    s, peak, ms = _checked(path)
    print(f"default model: {ms:.1f} ms, peak {peak} B")
    assert not isinstance(s, GGUFError), str(s)
    assert peak < MAX_PEAK_VALID
    assert (s.arch, s.version, s.n_tensors) == ("llama", 3, 272)
    assert s.tensor_types == {"F32", "Q4_1", "Q8_0"}
    assert s.arrays["tokenizer.ggml.tokens"].length == 49152
    assert s.metadata["tokenizer.chat_template"].startswith("{% for message in messages %}")
    assert_matches_reader(s, path)


@pytest.mark.parametrize("kind,arch,variant", VALID, ids=lambda v: str(v))
def test_test_gguf_passes(kind, arch, variant):
    path = _valid_path(kind, arch, variant)
    s, peak, ms = _checked(path)
    print(f"{path.name}: {ms:.1f} ms, peak {peak} B")
    assert not isinstance(s, GGUFError), str(s)
    assert peak < MAX_PEAK_VALID
    if kind != "default_requant":
        assert s.arch == arch
        assert s.metadata[f"{arch}.block_count"] == 2
    if (kind, arch, variant) in ORACLE:
        assert_matches_reader(s, path)


def test_qwen_specific_tensors_are_listed():
    s2 = check_gguf(mk.make_tiny("qwen2", dtype="f16"))
    assert s2.tensor("blk.1.attn_k.bias").shape == (128,)          # n_head_kv 2 * head_dim 64
    assert s2.tensor("output.weight") is None                        # tied embeddings
    s3 = check_gguf(mk.make_tiny("qwen3", dtype="f16"))
    assert s3.tensor("blk.0.attn_q_norm.weight").shape == (128,)    # head_dim
    assert s3.tensor("blk.0.attn_q.weight").shape == (256, 512)     # (n_embd, n_head * head_dim)
    assert s3.metadata["qwen3.attention.key_length"] == 128


def test_data_section_is_never_read(tmp_path):
    """A 16 GiB sparse file: the check is as cheap as on the small one, so it touched no data."""
    far = 1 << 34
    g = bad._set_tensor(bad.mini(), 3, offset=far)
    path = tmp_path / "sparse.gguf"
    path.write_bytes(g.to_bytes())
    with open(path, "r+b") as f:
        f.truncate(len(g.header()[0]) + far + bad._nbytes(g.tensors[3]))
    s, peak, ms = _checked(path)
    print(f"sparse {path.stat().st_size} B: {ms:.2f} ms, peak {peak} B")
    assert not isinstance(s, GGUFError), str(s)
    assert s.tensor("output_norm.weight").offset == s.data_offset + far
    assert peak < MAX_PEAK_BAD


@pytest.mark.parametrize("kind,arch,variant", sorted(ORACLE, key=str), ids=lambda v: str(v))
def test_llama_cpp_runs_test_gguf(kind, arch, variant):
    """llama.cpp loads the files check_gguf passes and gives finite, non-flat logits."""
    logits = mk.llama_cpp_logits(_valid_path(kind, arch, variant))
    assert np.isfinite(logits).all()
    assert logits.std() > 0.5


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_unreadable_path_is_a_gguf_error(tmp_path, what):
    path = tmp_path / "nope.gguf" if what == "missing" else tmp_path
    with pytest.raises(GGUFError) as ei:
        check_gguf(path)
    assert ei.value.field == "file"
