"""Synthetic GGUFs: seeded random weights with a chosen architecture and shape, another file's tokenizer.

Used by the tests (tiny models, scripts/make_test_ggufs.py) and by ``edgechat bench --shape`` (the
tensor shapes of real 0.6B-3B models). Files are written with the ``gguf`` package one tensor at a
time, so a 3B F16 file (~6 GB) never sits in memory; llama.cpp's ``llama_model_quantize`` makes the
quantized versions. Archs: llama, qwen2 (q/k/v biases), qwen3 (per-head q/k RMSNorm), gemma3 (q/k
norms, post-attention / post-ffn norms, a sliding window).
"""
from __future__ import annotations

import ctypes
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

ARCHS = ("llama", "qwen2", "qwen3", "gemma3")


@dataclass(frozen=True)
class SynthConfig:
    """Dimensions of a synthetic model; the vocab comes from the copied tokenizer.

    ``weight_std`` None keeps the tiny test models' per-tensor scales (attention peaked enough that
    position bugs show, norms 1 +- 0.1); a number gives every matrix and bias that std and every norm
    exactly 1, which keeps activations finite at real widths and depths.
    """

    arch: str = "llama"
    n_layer: int = 2
    n_embd: int = 256
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64
    n_ff: int = 512
    ctx: int = 2048
    rope_base: float = 10000.0
    eps: float = 1e-5
    tied: bool = False          # output.weight absent: logits use token_embd
    dtype: str = "f32"          # "f32" or "f16" for the 2-D weights; 1-D tensors stay F32
    seed: int = 0
    weight_std: float | None = None
    name: str = ""              # general.name; default "tiny-<arch>"
    sliding_window: int = 0     # gemma3: attention.sliding_window


# (tensor name, numpy shape (out, in) or (n,), kind, std): kind "normal" or "norm"
TensorPlan = list[tuple[str, tuple[int, ...], str, float]]

_TOKENIZER_CACHE: dict[str, list] = {}


def read_tokenizer(src: str | os.PathLike) -> list[tuple]:
    """The ``tokenizer.*`` metadata of ``src``: (key, value, type, element type or None)."""
    import gguf
    src = str(src)
    if src not in _TOKENIZER_CACHE:
        r = gguf.GGUFReader(src)
        out = []
        for key, f in r.fields.items():
            if key.startswith("tokenizer."):
                array = f.types[0] == gguf.GGUFValueType.ARRAY
                out.append((key, f.contents(), f.types[0], f.types[-1] if array else None))
        _TOKENIZER_CACHE[src] = out
    return _TOKENIZER_CACHE[src]


def vocab_size(tokenizer: list[tuple]) -> int:
    return next(len(v) for k, v, *_ in tokenizer if k == "tokenizer.ggml.tokens")


def tensor_plan(cfg: SynthConfig, vocab: int) -> TensorPlan:
    """Every tensor of ``cfg`` in file order, with how it is drawn."""
    s = cfg.weight_std
    e, hd, q_dim, kv_dim = cfg.n_embd, cfg.head_dim, cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim

    def mat(name, shape, tiny_std):
        return (name, shape, "normal", tiny_std if s is None else s)

    def norm(name, n):
        return (name, (n,), "norm", 0.1 if s is None else 0.0)

    plan = [mat("token_embd.weight", (vocab, e), 0.1), norm("output_norm.weight", e)]
    if not cfg.tied:
        plan.append(mat("output.weight", (vocab, e), 0.1))
    for i in range(cfg.n_layer):
        b = f"blk.{i}."
        plan += [norm(b + "attn_norm.weight", e), mat(b + "attn_q.weight", (q_dim, e), 0.08),
                 mat(b + "attn_k.weight", (kv_dim, e), 0.08), mat(b + "attn_v.weight", (kv_dim, e), 0.05),
                 mat(b + "attn_output.weight", (e, q_dim), 0.02)]
        if cfg.arch == "qwen2":
            plan += [mat(b + "attn_q.bias", (q_dim,), 0.1), mat(b + "attn_k.bias", (kv_dim,), 0.1),
                     mat(b + "attn_v.bias", (kv_dim,), 0.1)]
        if cfg.arch in ("qwen3", "gemma3"):
            plan += [norm(b + "attn_q_norm.weight", hd), norm(b + "attn_k_norm.weight", hd)]
        if cfg.arch == "gemma3":
            plan += [norm(b + "post_attention_norm.weight", e), norm(b + "post_ffw_norm.weight", e)]
        plan += [norm(b + "ffn_norm.weight", e), mat(b + "ffn_gate.weight", (cfg.n_ff, e), 0.05),
                 mat(b + "ffn_up.weight", (cfg.n_ff, e), 0.05), mat(b + "ffn_down.weight", (e, cfg.n_ff), 0.02)]
    return plan


def _out_dtype(cfg: SynthConfig, shape: tuple[int, ...]):
    import numpy as np      # here, not at import: the CLI builds its parser from this module's table
    return np.float16 if cfg.dtype == "f16" and len(shape) == 2 else np.float32


def _draw(rng: np.random.Generator, shape: tuple[int, ...], kind: str, std: float, dtype) -> np.ndarray:
    """One tensor: normal(0, std) or a norm weight 1 + normal(0, std); F32 draws, then ``dtype``."""
    import numpy as np
    if kind == "norm" and std == 0.0:
        return np.ones(shape, np.float32)
    a = rng.standard_normal(shape, dtype=np.float32)
    a *= np.float32(std)
    if kind == "norm":
        a += np.float32(1.0)
    return a if dtype == np.float32 else a.astype(dtype)


def _tensors(cfg: SynthConfig, plan: TensorPlan) -> Iterator[np.ndarray]:
    """The tensors of ``plan`` one at a time, drawn in order from one seeded generator."""
    import numpy as np
    rng = np.random.default_rng(cfg.seed)
    for _name, shape, kind, std in plan:
        yield _draw(rng, shape, kind, std, _out_dtype(cfg, shape))


def _add_metadata(w, cfg: SynthConfig, tokenizer: list[tuple]) -> None:
    import gguf
    a = cfg.arch
    w.add_name(cfg.name or f"tiny-{a}")
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if cfg.dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_block_count(cfg.n_layer)
    w.add_context_length(cfg.ctx)
    w.add_embedding_length(cfg.n_embd)
    w.add_feed_forward_length(cfg.n_ff)
    w.add_head_count(cfg.n_head)
    w.add_head_count_kv(cfg.n_head_kv)
    w.add_layer_norm_rms_eps(cfg.eps)
    w.add_rope_freq_base(cfg.rope_base)
    w.add_rope_dimension_count(cfg.head_dim)
    if cfg.sliding_window:
        w.add_sliding_window(cfg.sliding_window)
    if a in ("qwen3", "gemma3") or cfg.n_head * cfg.head_dim != cfg.n_embd:
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
    for key, value, vtype, etype in tokenizer:
        w.add_key_value(key, value, vtype, sub_type=etype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)


def write_gguf(path: str | os.PathLike, cfg: SynthConfig, tokenizer_from: str | os.PathLike) -> None:
    """Write the synthetic model ``cfg`` to ``path`` (overwriting), one tensor in memory at a time.

    Args:
        path: the output file.
        cfg: architecture, shape, dtype and seed.
        tokenizer_from: a GGUF whose ``tokenizer.*`` metadata is copied (it sets the vocab size).
    """
    import gguf
    import numpy as np
    # an arch outside ARCHS is written with the llama layout under its own label (tests of archs the
    # native engine lacks: llama.cpp runs "mistral3" that way, and refuses "gpt2")
    tokenizer = read_tokenizer(tokenizer_from)
    plan = tensor_plan(cfg, vocab_size(tokenizer))
    w = gguf.GGUFWriter(str(path), cfg.arch)
    _add_metadata(w, cfg, tokenizer)
    for name, shape, _kind, _std in plan:
        dtype = np.dtype(_out_dtype(cfg, shape))
        w.add_tensor_info(name, shape, dtype, int(np.prod(shape)) * dtype.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for arr in _tensors(cfg, plan):
        w.write_tensor_data(arr)
    w.close()


def build_once(path: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp_path)`` unless ``path`` exists, then move the result into place atomically."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".gguf.part", dir=path.parent)
    os.close(fd)
    try:
        build(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def quantize(src: str | os.PathLike, dst: str | os.PathLike, ftype: str, allow_requantize: bool = False,
             threads: int = 0, pure: bool = False) -> None:
    """``llama_model_quantize`` from ``src`` to ``dst`` with llama.cpp's ftype ``ftype`` ("Q4_K_M");
    ``pure``: every matrix in that type (the embedding and output too, as in Gemma 3's QAT Q4_0 files).

    Raises:
        RuntimeError: when llama.cpp fails; the message has the first error it logged.
    """
    try:
        from .llama_lib import clear_error, first_error, lib
    except ImportError:     # the tree before runtime/llama_lib.py (which owns llama.cpp's log) landed
        from .backends import llama_cpp as _b
        lib, clear_error, first_error = _b._lib, _b._clear_error, lambda: _b._first_error
    L = lib()
    params = L.llama_model_quantize_default_params()
    params.ftype = getattr(L, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.allow_requantize = allow_requantize
    params.nthread = threads
    params.pure = pure
    clear_error()
    rc = L.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({Path(src).name} -> {ftype}) failed with {rc}: "
                           f"{first_error() or 'no error logged'}")
