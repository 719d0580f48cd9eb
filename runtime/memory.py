"""Memory preflight: refuse, in one line, a model and cache that would not fit in RAM."""
from __future__ import annotations

import psutil

from .errors import InsufficientMemory

MiB = 1 << 20
GiB = 1 << 30

# overhead = OVERHEAD_FIXED + OVERHEAD_MODEL_FRACTION * model:
#   fixed: the Python interpreter, numpy, the TUI, the tokenizer's vocab (about 100 MiB RSS together);
#   10% of the model: compute buffers (prefill activations, logits), dequantization scratch and
#   allocator slack, which grow with the model's width and vocab.
OVERHEAD_FIXED = 100 * MiB
OVERHEAD_MODEL_FRACTION = 0.10


KV_TYPES = ("f16", "q8_0")
KV_CHOICES = ("auto", *KV_TYPES)
# --kv-type auto, each engine's faster cache by `edgechat bench --kv-type f16,q8_0` (decode with 4096
# tokens cached, llama-1b Q4_K_M): the native engine's q8_0 rows read half the bytes and its int8 kernels
# win (q8_0 / f16 1.16x on a Xeon with AVX-512; perplexity through the ring +0.03%), while llama.cpp's
# q8_0 cache decodes slower than its f16 one there (0.91x) and needs flash attention.
AUTO_KV_TYPE = {"native": "q8_0", "llama.cpp": "f16"}
Q8_BLOCK = 32            # q8_0: one fp16 scale per 32 int8 values (native rows: per head, a short last block)


def resolve_kv_type(kv_type: str, backend: str) -> str:
    """The KV type ``backend`` ("native" or "llama.cpp") runs for ``kv_type`` (auto: ``AUTO_KV_TYPE``)."""
    return AUTO_KV_TYPE[backend] if kv_type == "auto" else kv_type


def kv_bytes_per_elem(kv_type: str = "f16", head_dim: int = 64) -> float:
    """Bytes per cached K or V element: 2 for f16; q8_0 is 1 byte plus an fp16 scale per 32 values of
    a head's row (the native ring's rows; llama.cpp's q8_0 blocks are the same 34 bytes per 32)."""
    if kv_type == "f16":
        return 2.0
    if kv_type == "q8_0":
        return (head_dim + 2 * -(-head_dim // Q8_BLOCK)) / head_dim
    raise ValueError(f"unknown kv type '{kv_type}' (choose from {', '.join(KV_TYPES)})")


# the native ring's sliding-window layers (gemma3) keep their window + LOCAL_SLACK positions when that is
# shorter than ctx (cpp_ext/model.cpp kLocalSlack; tests/test_gemma3.py checks the two agree)
LOCAL_SLACK = 512


def layer_slots(cfg: dict, n_ctx: int) -> int:
    """Cached positions summed over the layers: n_layer * n_ctx, less what sliding-window layers of
    their own keep below n_ctx (every ``swa_period``-th layer is global)."""
    window, period = cfg.get("swa_window", 0), cfg.get("swa_period", 0)
    if not window or not period or window + LOCAL_SLACK >= n_ctx:
        return cfg["n_layer"] * n_ctx
    n_global = sum(1 for l in range(cfg["n_layer"]) if l % period == period - 1)
    return n_global * n_ctx + (cfg["n_layer"] - n_global) * (window + LOCAL_SLACK)


def estimate(model_bytes: int, n_layer: int, n_ctx: int, n_kv_head: int, head_dim: int,
             kv_bytes_per_elem: float = 2, layer_slots: int | None = None) -> dict:
    """Bytes the model needs at run time.

    Args:
        model_bytes: size of the weights (the GGUF's tensor data).
        n_layer: transformer blocks.
        n_ctx: KV cache capacity in tokens.
        n_kv_head: key/value heads (GQA).
        head_dim: size of one head.
        kv_bytes_per_elem: bytes per cached element (2 for f16; see ``kv_bytes_per_elem()``).
        layer_slots: cached positions summed over the layers (``layer_slots()``); default n_layer * n_ctx.

    Returns:
        ``{"model", "kv", "overhead", "total"}`` in bytes.
    """
    slots = n_layer * n_ctx if layer_slots is None else layer_slots
    kv = 2 * slots * n_kv_head * head_dim * kv_bytes_per_elem   # K and V: (layer, its slots, kv_dim)
    overhead = OVERHEAD_FIXED + int(OVERHEAD_MODEL_FRACTION * model_bytes)
    return {"model": int(model_bytes), "kv": int(kv), "overhead": overhead,
            "total": int(model_bytes) + int(kv) + overhead}


def available_bytes() -> int:
    """RAM that can be had without swapping (psutil's ``available``)."""
    return int(psutil.virtual_memory().available)


def preflight(estimate: dict, force: bool = False, available: int | None = None) -> dict:
    """Check an ``estimate`` against available RAM.

    Args:
        estimate: from ``estimate()``.
        force: do not raise; the caller goes ahead anyway.
        available: bytes available; default: measured now.

    Returns:
        the estimate with ``available`` and ``fits`` added.

    Raises:
        InsufficientMemory: when the total exceeds available RAM and not ``force``.
    """
    avail = available_bytes() if available is None else int(available)
    result = dict(estimate, available=avail, fits=estimate["total"] <= avail)
    if not result["fits"] and not force:
        raise InsufficientMemory(describe(result) + "; --force to try anyway")
    return result


def describe(result: dict) -> str:
    """``needs 1.2 GiB (model 0.9 + KV 0.2 + overhead 0.1), 0.5 GiB available``: in GiB when the
    total reaches 1 GiB, else in MiB."""
    unit, name, fmt = (GiB, "GiB", "{:.1f}") if result["total"] >= GiB else (MiB, "MiB", "{:.0f}")

    def f(key):
        return fmt.format(result[key] / unit)

    return (f"needs {f('total')} {name} (model {f('model')} + KV {f('kv')} + overhead "
            f"{f('overhead')}), {f('available')} {name} available")
