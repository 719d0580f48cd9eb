"""The GPU as the loaded llama.cpp sees it: its backends, its GPU devices and their free memory, what
``--gpu-layers auto`` offloads, and where a real load put the layers (llama.cpp's own log).

The facts come from ggml's backend registry (``ggml_backend_reg_*``, ``ggml_backend_dev_*`` through
llama-cpp-python's libggml), not from guessing at library names: a CUDA device's free memory is
``cudaMemGetInfo``'s, a Metal device's the working set Metal recommends. A GPU that shares the
system's memory (a Jetson, an integrated GPU) has as much free as the RAM the preflight reads.
"""
from __future__ import annotations

import ctypes
import logging
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

GPU_TYPES = {1: "gpu", 2: "igpu"}          # ggml_backend_dev_type: CPU 0, GPU 1, IGPU 2, ACCEL 3
TEGRA_RELEASE = Path("/etc/nv_tegra_release")   # a Jetson: its GPU shares the RAM
ALL_LAYERS = -1                            # llama.cpp's n_gpu_layers for every layer
AUTO = "auto"                              # --gpu-layers auto


@dataclass(frozen=True)
class GpuDevice:
    """One GPU device of the loaded llama.cpp."""

    name: str              # ggml's device name: "CUDA0", "Metal", "Vulkan0"
    description: str       # "NVIDIA GeForce RTX 4090", "Apple M2 Pro"
    backend: str           # the backend it belongs to: "CUDA", "Metal", ...
    free: int              # bytes free for weights and cache (shared memory: the RAM available)
    total: int             # bytes
    shared: bool           # its memory is the system's (Jetson, integrated GPU)


@dataclass(frozen=True)
class GpuFacts:
    """llama.cpp's backends ("CUDA", "CPU") and GPU devices; ``note`` says why they are unknown."""

    backends: list = field(default_factory=list)
    devices: list = field(default_factory=list)      # GpuDevice
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _ggml():
    """llama-cpp-python's libggml with the registry calls typed (llama.cpp initialised first)."""
    from .llama_lib import lib
    lib()
    from llama_cpp._ggml import libggml as g
    p, s, c = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
    for name, res, args in (("ggml_backend_reg_count", s, []), ("ggml_backend_reg_get", p, [s]),
                            ("ggml_backend_reg_name", c, [p]), ("ggml_backend_dev_count", s, []),
                            ("ggml_backend_dev_get", p, [s]), ("ggml_backend_dev_name", c, [p]),
                            ("ggml_backend_dev_description", c, [p]), ("ggml_backend_dev_type", ctypes.c_int, [p]),
                            ("ggml_backend_dev_backend_reg", p, [p]),
                            ("ggml_backend_dev_memory", None, [p, ctypes.POINTER(s), ctypes.POINTER(s)])):
        fn = getattr(g, name)
        fn.restype, fn.argtypes = res, args
    return g


def _text(b: bytes | None) -> str:
    return (b or b"").decode("utf-8", "replace")


def gpu_facts(ram_available: int | None = None) -> GpuFacts:
    """The loaded llama.cpp's backends and GPU devices (never raises: ``note`` says what failed)."""
    try:
        g = _ggml()
    except Exception as e:                      # no llama-cpp-python, or one without the registry calls
        return GpuFacts(note=f"llama.cpp's backends unknown: {e}")
    backends = [_text(g.ggml_backend_reg_name(g.ggml_backend_reg_get(i))) for i in range(g.ggml_backend_reg_count())]
    devices = []
    for i in range(g.ggml_backend_dev_count()):
        dev = g.ggml_backend_dev_get(i)
        kind = GPU_TYPES.get(g.ggml_backend_dev_type(dev))
        if kind is None:
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        g.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        shared = kind == "igpu" or TEGRA_RELEASE.exists()
        if shared:
            from .memory import available_bytes
            free = ctypes.c_size_t(available_bytes() if ram_available is None else ram_available)
        devices.append(GpuDevice(_text(g.ggml_backend_dev_name(dev)), _text(g.ggml_backend_dev_description(dev)),
                                 _text(g.ggml_backend_reg_name(g.ggml_backend_dev_backend_reg(dev))),
                                 free.value, total.value, shared))
    return GpuFacts(backends, devices)


# ---- --gpu-layers auto ---------------------------------------------------------------------------

def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def auto_layers(need: int, facts: GpuFacts | None = None) -> tuple[int, str]:
    """``--gpu-layers auto``: (layers, why). Every layer (-1) when llama.cpp has a GPU device and
    ``need`` bytes (model + cache + overhead, the preflight's estimate) fit its free memory; else 0.
    ``why`` is "" when there is no GPU (a CPU machine is told nothing new)."""
    facts = gpu_facts() if facts is None else facts
    if not facts.devices:
        return 0, ""
    dev = max(facts.devices, key=lambda d: d.free)
    where = f"{dev.name} {dev.description}".strip()
    room = f"{_gib(need)} for model + cache, {_gib(dev.free)} free{' (shared with the CPU)' if dev.shared else ''}"
    if need <= dev.free:
        return ALL_LAYERS, f"GPU offload (--gpu-layers auto): every layer on {where}, {room}"
    return 0, f"not offloaded to {where} (--gpu-layers auto): {room}"


def need_bytes(model_bytes: int, cfg: dict, ctx: int, kv_type: str = "auto", seqs: int = 1) -> int:
    """The preflight's estimate (weights, KV cache, compute overhead) of a model on llama.cpp, whose
    ``--kv-type auto`` is f16: what the GPU must hold for every layer to go there. ``seqs``: the
    caches its context holds (``serve``: one per cache slot, ``ctx`` cells each, all on the device)."""
    from . import memory
    kv = memory.resolve_kv_type(kv_type, "llama.cpp")
    return memory.estimate(model_bytes, cfg["n_layer"], ctx * seqs, cfg["n_head_kv"], cfg["head_dim"],
                           memory.kv_bytes_per_elem(kv, cfg["head_dim"]))["total"]


def resolve_layers(gpu_layers, backend: str, model_bytes: int, cfg: dict, ctx: int,
                   kv_type: str = "auto", seqs: int = 1) -> tuple[int, str]:
    """``load``'s ``gpu_layers``: a count passes through; "auto" becomes ``auto_layers``' choice (with
    ``--backend native``: 0, that engine runs on the CPU) for ``seqs`` caches of ``ctx``. Returns
    (layers, why; "" when nothing new)."""
    if gpu_layers != AUTO:
        return gpu_layers, ""
    if backend == "native":
        return 0, ""
    return auto_layers(need_bytes(model_bytes, cfg, ctx, kv_type, seqs))


# ---- where the layers went (a real load, read from llama.cpp's log) ------------------------------

_LAYER = re.compile(r"layer\s+\d+ assigned to device (\S+?),")
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
_BUFFER = re.compile(r"(\S+) model buffer size =\s*([\d.]+) MiB")


@contextmanager
def llama_log():
    """The lines llama.cpp logs inside the block (its one log callback lives in ``llama_lib``)."""
    log = logging.getLogger("edgechat.llama")
    lines: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler, level = _Keep(logging.DEBUG), log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def placement(lines: list[str]) -> dict:
    """Where llama.cpp put a model, from its load log: layers per device, the "offloaded N/M" line's
    figures (None when it printed none: no GPU), and the weights' MiB per buffer."""
    layers: dict[str, int] = {}
    for line in lines:
        m = _LAYER.search(line)
        if m:
            layers[m.group(1)] = layers.get(m.group(1), 0) + 1
    off = next((m for m in map(_OFFLOADED.search, lines) if m), None)
    buffers = {m.group(1): float(m.group(2)) for m in map(_BUFFER.search, lines) if m}
    return {"layers": layers, "offloaded": [int(off.group(1)), int(off.group(2))] if off else None,
            "model_buffers_mib": buffers}


def offload_run(path: str | Path, gpu_layers: int = ALL_LAYERS, ctx: int = 64, threads: int = 2) -> dict:
    """Load ``path`` in llama.cpp with ``gpu_layers``, decode one token, and report where the layers
    went (``placement``) and whether any is on a GPU (``on_gpu``)."""
    from .backends.llama_cpp import LlamaCppBackend
    with llama_log() as lines:
        b = LlamaCppBackend(str(path), ctx=ctx, sinks=1, threads=threads, gpu_layers=gpu_layers)
        try:
            b.eval([0])
        finally:
            b.close()
    where = placement(lines)
    where["on_gpu"] = sum(n for dev, n in where["layers"].items() if dev != "CPU")
    return where
