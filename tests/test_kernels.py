"""Kernel tests: the standalone C++ program (cpp_ext/tests/test_kernels.cpp) built natively and,
for NEON, cross-compiled for aarch64 and run under qemu; plus the generic block layouts checked
against gguf's independent numpy dequantizers."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "neon_test.sh"
BUILD = ROOT / "tests" / ".cache" / "kernels"


def _run(mode: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["bash", str(SCRIPT), mode, str(BUILD), *args],
        capture_output=True, text=True, timeout=900,
    )
    print(proc.stdout)
    print(proc.stderr)
    return proc


def _assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"kernel tests failed (rc={proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert proc.stdout.rstrip().endswith(" 0 failed")


@pytest.fixture(scope="module")
def dump_dir(tmp_path_factory) -> Path:
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    d = tmp_path_factory.mktemp("kernel_dump")
    proc = _run("native", "--dump", str(d))
    _assert_ok(proc)
    return d


def test_kernels_native(dump_dir):
    """Every table usable on this cpu (generic, avx2) against generic and float64 (run by the fixture)."""
    assert (dump_dir / "q4_1.blocks").exists()


def test_isa_override(dump_dir):
    """EDGECHAT_ISA=generic selects the scalar table."""
    proc = subprocess.run([str(BUILD / "test_kernels_native")], capture_output=True, text=True,
                          env={**os.environ, "EDGECHAT_ISA": "generic"}, timeout=300)
    assert "(selected: generic)" in proc.stdout.splitlines()[0]
    assert proc.returncode == 0


def test_kernels_neon_qemu():
    """The NEON tables (armv8-a, dotprod, i8mm; chosen at run time) under qemu-aarch64 cpu models
    without dotprod, with dotprod and with i8mm, each checked for the tables it detects."""
    missing = [t for t in ("aarch64-linux-gnu-g++", "qemu-aarch64") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install g++-aarch64-linux-gnu qemu-user)")
    _assert_ok(_run("aarch64"))


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q5_0", "q8_0", "q4_K", "q6_K"])
def test_block_layout_matches_gguf(dump_dir, name):
    """Our quantized blocks, dequantized by gguf-py's numpy code, equal our generic to_float."""
    quants = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    qtype = GGMLQuantizationType[name.upper()]
    blocks = np.fromfile(dump_dir / f"{name}.blocks", dtype=np.uint8)
    ours = np.fromfile(dump_dir / f"{name}.f32", dtype=np.float32)
    theirs = quants.dequantize(blocks, qtype).reshape(-1).astype(np.float32)
    assert theirs.shape == ours.shape
    # both compute d * q (+ m) in float32 from the same bits; allow one rounding of difference
    np.testing.assert_allclose(ours, theirs, rtol=2e-7, atol=1e-7)
    src = np.fromfile(dump_dir / f"{name}.src", dtype=np.float32)
    assert np.abs(ours - src).max() <= 0.15 * np.abs(src).max()  # it is a quantization of src


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q5_0", "q8_0"])
def test_quantizer_matches_gguf(dump_dir, name):
    """Our generic quantizers (q8_0: the activation quantizer) are bit-exact with gguf-py's port of
    ggml's reference quantizers (roundf for q8_0, the +0.5/+8.5 truncations for the 4/5-bit types)."""
    quants = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    src = np.fromfile(dump_dir / f"{name}.src", dtype=np.float32)
    ours = np.fromfile(dump_dir / f"{name}.blocks", dtype=np.uint8)
    theirs = quants.quantize(src.reshape(1, -1), GGMLQuantizationType[name.upper()]).reshape(-1)
    assert theirs.shape == ours.shape
    assert int((ours != theirs).sum()) == 0
