"""Device facts for ``doctor``: CPU ISA, cores, memory, GPU offload through llama.cpp (its backends and
GPU devices with their free memory: ``gpu.gpu_facts``), OS and arch."""
from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cpu import CPUINFO, physical_cores, proc_cpuinfo
from .gpu import gpu_facts

# cpu flag (as /proc/cpuinfo or sysctl spells it) -> the name edgechat reports
_X86_FLAGS = {"avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "avx512f": "avx512f",
              "avx_vnni": "avx_vnni", "avx512_vnni": "avx512_vnni"}
_ARM_FLAGS = {"asimd": "neon", "asimddp": "dotprod", "asimdhp": "fp16", "i8mm": "i8mm", "sve": "sve"}
_MAC_ARM_SYSCTL = {"hw.optional.neon": "neon", "hw.optional.arm.FEAT_DotProd": "dotprod",
                   "hw.optional.arm.FEAT_FP16": "fp16", "hw.optional.arm.FEAT_I8MM": "i8mm"}
# a ggml backend library in llama_cpp/lib -> the GPU kind it gives
_GPU_LIBS = (("cuda", "cuda"), ("metal", "metal"), ("hip", "rocm"), ("vulkan", "vulkan"),
             ("sycl", "sycl"))


@dataclass
class DeviceInfo:
    """What this machine offers the engines."""

    os: str
    arch: str
    cpu: str
    isa: list[str] = field(default_factory=list)
    cores_physical: int | None = None
    cores_logical: int | None = None
    ram_total: int = 0                 # bytes
    ram_available: int = 0             # bytes
    gpu_offload: bool = False          # llama.cpp can offload layers to a GPU
    gpu_kind: str | None = None        # "metal" | "cuda" | "rocm" | "vulkan" | "sycl" | None
    llama_cpp: str | None = None       # llama-cpp-python version, None when it does not import
    llama_backends: list[str] = field(default_factory=list)   # the build's ggml backends: "CUDA", "CPU"
    gpus: list[dict] = field(default_factory=list)   # gpu.GpuDevice dicts: name, description, free, total
    note: str = ""                     # why GPU facts are missing, when they are

    def to_dict(self) -> dict:
        return asdict(self)


def _machine() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(m, m)


def _proc_cpuinfo() -> tuple[str, set[str]]:
    """CPU model name and flags from /proc/cpuinfo (Linux); ("", set()) elsewhere."""
    name, flags = proc_cpuinfo(CPUINFO)
    return name, set(flags)


def _sysctl(name: str) -> str:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def cpu_isa() -> tuple[str, list[str]]:
    """``(cpu model, ISA features)`` relevant to the kernels, e.g. ``["avx2", "f16c", "fma"]``."""
    arch = _machine()
    if platform.system() == "Darwin":
        name = _sysctl("machdep.cpu.brand_string")
        if arch == "arm64":
            return name, sorted(v for k, v in _MAC_ARM_SYSCTL.items() if _sysctl(k) == "1")
        flags = " ".join(_sysctl(k) for k in ("machdep.cpu.features", "machdep.cpu.leaf7_features"))
        flags = {f.lower().replace(".", "_") for f in flags.split()}
        return name, sorted(v for k, v in _X86_FLAGS.items() if k in flags or k.replace("_", "") in flags)
    name, flags = _proc_cpuinfo()
    table = _ARM_FLAGS if arch == "arm64" else _X86_FLAGS
    isa = {v for k, v in table.items() if k in flags}
    if arch == "arm64" and not flags:
        isa.add("neon")                          # every AArch64 CPU has Advanced SIMD
    return name or platform.processor(), sorted(isa)


def gpu_offload() -> tuple[bool, str | None, str | None, str]:
    """``(can offload, GPU kind, llama-cpp-python version, note)`` from the installed llama.cpp."""
    try:
        import llama_cpp
    except Exception as e:                       # a missing or broken native lib: report, don't fail
        return False, None, None, f"llama-cpp-python does not import: {e}"
    version = getattr(llama_cpp, "__version__", "?")
    if not llama_cpp.llama_supports_gpu_offload():
        return False, None, version, "llama.cpp was built for CPU only"
    if platform.system() == "Darwin" and _machine() == "arm64":
        return True, "metal", version, ""
    libs = [p.name.lower() for p in (Path(llama_cpp.__file__).parent / "lib").glob("*")]
    kind = next((k for tag, k in _GPU_LIBS if any(f"ggml-{tag}" in n for n in libs)), None)
    return True, kind, version, "" if kind else "GPU backend library not identified"


def device_info() -> DeviceInfo:
    """Collect all device facts (imports llama_cpp to ask about GPU offload)."""
    import psutil
    cpu, isa = cpu_isa()
    mem = psutil.virtual_memory()
    offload, kind, version, note = gpu_offload()
    facts = gpu_facts(mem.available) if version else None
    return DeviceInfo(os=platform.system(), arch=_machine(), cpu=cpu, isa=isa,
                      cores_physical=physical_cores(),
                      cores_logical=psutil.cpu_count(logical=True),
                      ram_total=mem.total, ram_available=mem.available,
                      gpu_offload=offload, gpu_kind=kind, llama_cpp=version, note=note or (facts.note if facts else ""),
                      llama_backends=facts.backends if facts else [],
                      gpus=[asdict(d) for d in facts.devices] if facts else [])
