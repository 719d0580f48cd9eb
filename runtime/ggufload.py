"""Read a GGUF file into a model description: hyperparameters, metadata and zero-copy tensor views."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import GGUFError

NATIVE_ARCHS = ("llama", "qwen2", "qwen3", "gemma3")
NEOX_ARCHS = ("qwen2", "qwen3", "gemma3")   # rope pairs (i, i + d/2); llama pairs (2i, 2i+1)
# gemma3 as llama.cpp sets it (the file has no key for these): every 6th layer global, the others
# sliding-window layers with rope base 10,000
GEMMA3_SWA_PERIOD = 6
GEMMA3_ROPE_BASE_SWA = 10000.0
# ggml type ids the native kernels run (blocks.h)
NATIVE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 8: "Q8_0", 12: "Q4_K", 14: "Q6_K"}


@dataclass
class TensorView:
    name: str
    type: int                 # ggml type id
    type_name: str
    shape: tuple[int, ...]    # ne order: shape[0] is the row length
    data: np.ndarray          # uint8 view into the read-only mmap


@dataclass
class ModelFile:
    path: Path
    arch: str
    metadata: dict            # scalar metadata (arrays as their length), chat template included
    config: dict              # hyperparameters for the native engine
    tensors: list[TensorView] = field(default_factory=list)
    data_offset: int = 0      # where the tensor data start: every byte before is header + tensor infos

    @property
    def types(self) -> list[str]:
        """Tensor type names present, most bytes first."""
        sizes: dict[str, int] = {}
        for t in self.tensors:
            sizes[t.type_name] = sizes.get(t.type_name, 0) + t.data.nbytes
        return sorted(sizes, key=sizes.get, reverse=True)

    def native_problem(self) -> str | None:
        """Why the native backend cannot run this file, or None when it can."""
        if self.arch not in NATIVE_ARCHS:
            return f"arch '{self.arch}' is not supported by the native backend ({', '.join(NATIVE_ARCHS)})"
        bad = sorted({t.type_name for t in self.tensors if t.type not in NATIVE_TYPES})
        if bad:
            return f"tensor type {', '.join(bad)} is not supported by the native backend"
        scaling = self.metadata.get(f"{self.arch}.rope.scaling.type")
        if scaling not in (None, "none", "linear") and "rope_freqs.weight" not in {t.name for t in self.tensors}:
            return f"rope scaling '{scaling}' is not supported by the native backend"
        return None


def read_model(path: str | Path) -> ModelFile:
    """Check a GGUF file (bounded, ``gguf_check``) and describe it.

    Args:
        path: the GGUF file.

    Returns:
        A ModelFile whose tensor data are uint8 views of one read-only mmap of the file.

    Raises:
        GGUFError: the file is malformed, truncated or inconsistent.
    """
    from .gguf_check import check_gguf
    path = Path(path)
    summary = check_gguf(path)
    meta = dict(summary.metadata)
    meta.update({k: a.length for k, a in summary.arrays.items()})
    mm = np.memmap(path, dtype=np.uint8, mode="r")             # (file bytes,)
    tensors = [TensorView(t.name, t.type_id, t.type_name, tuple(t.shape), mm[t.offset:t.offset + t.nbytes])
               for t in summary.tensors]
    return ModelFile(path, summary.arch, meta, make_config(summary.arch, meta, tensors), tensors,
                     summary.data_offset)


MAX_HPARAM = 2**31 - 1      # the C++ engine holds hyperparameters in int


def make_config(arch: str, meta: dict, tensors: list[TensorView]) -> dict:
    """Hyperparameters of a llama-family model from its metadata.

    Raises:
        GGUFError: one is missing, not a number, or out of range (counts in 1..2^31-1; eps finite and
            >= 0; the rope base finite and > 0).
    """
    def get(key, default=None):
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise GGUFError(f"{arch}.{key}", "missing")
        if isinstance(value, (str, bytes)) or not isinstance(value, (int, float)):
            raise GGUFError(f"{arch}.{key}", f"{value!r} is not a number")
        if key in ("attention.layer_norm_rms_epsilon", "rope.freq_base"):
            if not (math.isfinite(value) and (value > 0 or (value == 0 and key.endswith("epsilon")))):
                raise GGUFError(f"{arch}.{key}", f"{value!r} is out of range")
        elif not math.isfinite(value) or value != int(value) or not 1 <= value <= MAX_HPARAM:
            raise GGUFError(f"{arch}.{key}", f"{value!r} is out of range (1..{MAX_HPARAM})")
        return value
    n_embd = int(get("embedding_length"))
    n_head = int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", n_embd // max(n_head, 1)))
    embd = next((t for t in tensors if t.name == "token_embd.weight"), None)
    n_vocab = int(embd.shape[1]) if embd is not None and len(embd.shape) > 1 else int(meta.get("tokenizer.ggml.tokens", 0))
    return {
        "arch": arch,
        "n_layer": int(get("block_count")),
        "n_embd": n_embd,
        "n_head": n_head,
        "n_head_kv": int(get("attention.head_count_kv", n_head)),
        "head_dim": head_dim,
        "n_ff": int(get("feed_forward_length")),
        "n_vocab": n_vocab,
        "n_rot": int(get("rope.dimension_count", head_dim)),
        "eps": float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_base": float(get("rope.freq_base", 10000.0)),
        "rope_neox": arch in NEOX_ARCHS,
        "n_ctx_train": int(get("context_length", 2048)),
        **arch_extras(arch, meta, n_embd),
    }


def arch_extras(arch: str, meta: dict, n_embd: int) -> dict:
    """The keys only some archs have: linear rope scaling, gemma3's embedding scale, geglu, sliding
    window and final softcap (Config in cpp_ext/model.h)."""
    def number(key, default):
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise GGUFError(f"{arch}.{key}", f"{value!r} is out of range")
        return value
    out = {}
    if meta.get(f"{arch}.rope.scaling.type") == "linear":
        factor = number("rope.scaling.factor", 1.0)
        out["rope_freq_scale"] = 1.0 / factor if factor > 0 else 1.0
    if arch == "gemma3":
        window = int(number("attention.sliding_window", 0))
        if not 1 <= window <= MAX_HPARAM:
            raise GGUFError(f"{arch}.attention.sliding_window", f"{window!r} is out of range (1..{MAX_HPARAM})")
        out.update(embd_scale=math.sqrt(n_embd), gelu=True, swa_window=window, swa_period=GEMMA3_SWA_PERIOD,
                   rope_base_swa=GEMMA3_ROPE_BASE_SWA,
                   final_softcap=float(number("final_logit_softcapping", 0.0)))
    return out
