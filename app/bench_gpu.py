"""``edgechat bench --gpu-layers all``: a third engine in each row, llama.cpp with every layer on the
GPU, beside the native engine and llama.cpp on the CPU. Its VRAM is what llama.cpp's log says it put
on the GPU (weights, KV cache, compute buffers)."""
from __future__ import annotations

import re

from ..runtime.info import ENGINES

GPU = "gpu"                                   # the engine's key in the samples, medians and JSON
_BUFFER = re.compile(r"(\S+)\s+(?:model|KV|compute|output) buffer size =\s*([\d.]+) MiB")


def wanted(args) -> bool:
    """Whether the bench asks for the GPU column (``--gpu-layers all``)."""
    return getattr(args, "gpu_layers", None) == -1


def engines(plan: dict) -> tuple[str, ...]:
    """The engines each row runs: native, llama.cpp, and the GPU one when the plan has it."""
    return ENGINES + ((GPU,) if plan.get("gpu") else ())


def refusal(args) -> str | None:
    """Why ``--gpu-layers`` cannot be run as asked (one line), or None."""
    layers = getattr(args, "gpu_layers", "auto")
    if layers not in ("auto", 0, -1):
        return f"--gpu-layers {layers}: bench takes all (a GPU column: llama.cpp with every layer on the GPU)"
    if layers == -1 and not _facts().devices:
        return ("--gpu-layers all: this llama.cpp has no GPU (backends: CPU only; scripts/setup.sh builds it "
                "for CUDA or Metal where there is one)")
    return None


def _facts():
    from ..runtime.gpu import gpu_facts
    return gpu_facts()


def describe() -> str:
    """The header's GPU line: the devices llama.cpp offloads to."""
    devs = _facts().devices
    return "; ".join(f"{d.name} {d.description}, {d.total / (1 << 30):.1f} GiB" for d in devs) or "none"


def vram_mib(lines: list[str]) -> float:
    """MiB of the buffers llama.cpp's log puts on a GPU: not the CPU's, nor a GPU backend's host buffers
    (pinned system memory, "CUDA_Host")."""
    return sum(float(m.group(2)) for m in map(_BUFFER.search, lines)
               if m and not m.group(1).startswith("CPU") and not m.group(1).endswith("_Host"))


def load(path: str, threads: int, ctx: int, kv_type: str):
    """llama.cpp with every layer on the GPU; its ``info.extra["vram_mib"]`` from its load log."""
    from ..runtime.backends import make_backend
    from ..runtime.gpu import ALL_LAYERS, llama_log
    from ..runtime.memory import resolve_kv_type
    with llama_log() as lines:
        b = make_backend("llama.cpp", None, path, ctx=ctx, threads=threads, gpu_layers=ALL_LAYERS,
                         kv_type=resolve_kv_type(kv_type, "llama.cpp"))
    b.info.extra["vram_mib"] = vram_mib(lines)
    return b
