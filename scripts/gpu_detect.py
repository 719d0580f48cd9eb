#!/usr/bin/env python3
"""Which llama.cpp build this machine wants, for scripts/setup.sh: CUDA, Metal or the CPU, and why.

``detect()`` is a function of its inputs only (OS, machine, nvcc, the Jetson release file and model,
the GPUs' compute capabilities, EDGECHAT_GPU), so every case is tested without the hardware;
``probe()`` reads them on this machine. CUDA needs nvcc and a GPU (nvidia-smi lists one, or a Jetson):
a CUDA toolkit alone (a CI image) keeps the CPU build. ``install()`` builds llama-cpp-python for the
choice: the CPU build is the plain ``pip install`` (pip's cached wheel is reused); a GPU build sets
CMAKE_ARGS and skips pip's wheel cache (the cached CPU wheel would be taken for it), and one that
fails falls back to the CPU build with one line saying so.

    python3 scripts/gpu_detect.py --dry-run                    # the choice and CMAKE_ARGS; builds nothing
    python3 scripts/gpu_detect.py install SPEC -- PIP...       # install SPEC with the PIP command
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

JETPACK_NVCC = "/usr/local/cuda/bin/nvcc"     # JetPack (and the CUDA .run installer) put nvcc here
TEGRA_RELEASE = "/etc/nv_tegra_release"       # "# R36 (release), REVISION: 4.0, ..." on a Jetson
TEGRA_MODEL = "/proc/device-tree/model"       # "NVIDIA Jetson AGX Orin Developer Kit"
OVERRIDES = {"cuda": "cuda", "metal": "metal", "none": "cpu", "cpu": "cpu"}
# Jetson model -> CUDA architecture (compute capability without the dot); first match wins (an
# "Orin Nano" is an Orin)
TEGRA_ARCH = (("orin", "87"), ("xavier", "72"), ("tx2", "62"), ("tx1", "53"), ("nano", "53"))
TEGRA_RELEASE_ARCH = {"35": "87", "36": "87"}  # L4T R35/R36 (JetPack 5/6) run only on Orin boards
BUILD_LOG = ".venv/llama-cpp-build.log"


@dataclass(frozen=True)
class Choice:
    """The llama.cpp build to make: ``kind`` "cuda" | "metal" | "cpu", its CMake flags, and why."""

    kind: str
    cmake_args: str
    reason: str
    env: dict = field(default_factory=dict)    # more build environment (CUDACXX: the nvcc found)

    def line(self) -> str:
        what = {"cuda": "CUDA", "metal": "Metal", "cpu": "the CPU"}[self.kind]
        return f"setup: llama.cpp for {what}: {self.reason}"


def cuda_arch(compute_caps: list[str], tegra_model: str | None, tegra_release: str | None) -> tuple[str, str]:
    """(CMAKE_CUDA_ARCHITECTURES value or "", where it came from): nvidia-smi's compute capabilities
    ("8.6" -> "86"; several GPUs: "86;89"), else the Jetson model, else its L4T release."""
    archs = sorted({c.strip().replace(".", "") for c in compute_caps if re.fullmatch(r"\d+\.\d+", c.strip())})
    if archs:
        return ";".join(archs), f"compute capability {', '.join(sorted(set(c.strip() for c in compute_caps)))} (nvidia-smi)"
    model = (tegra_model or "").strip("\x00 \n")
    for key, arch in TEGRA_ARCH:
        if key in model.lower():
            return arch, f"{model}"
    m = re.search(r"R(\d+)", tegra_release or "")
    if m and m.group(1) in TEGRA_RELEASE_ARCH:
        return TEGRA_RELEASE_ARCH[m.group(1)], f"Jetson L4T R{m.group(1)} (Orin)"
    return "", ""


def detect(system: str, machine: str, nvcc: str | None, tegra_release: str | None = None,
           tegra_model: str | None = None, compute_caps: list[str] | None = None,
           override: str | None = None) -> Choice:
    """The build for a machine.

    Args:
        system: ``platform.system()`` ("Linux", "Darwin", ...).
        machine: ``platform.machine()`` ("x86_64", "aarch64", "arm64").
        nvcc: the CUDA compiler's path, or None when there is none.
        tegra_release: the text of /etc/nv_tegra_release (a Jetson), or None.
        tegra_model: the device-tree model ("NVIDIA Jetson AGX Orin ..."), or None.
        compute_caps: ``nvidia-smi --query-gpu=compute_cap`` lines ("8.6"), one per GPU.
        override: EDGECHAT_GPU: "cuda", "metal" or "none" (None or "": detect).

    Returns:
        the Choice. Raises ValueError for an unknown override.
    """
    caps = compute_caps or []
    jetson = tegra_release is not None
    if override:
        kind = OVERRIDES.get(override.strip().lower())
        if kind is None:
            raise ValueError(f"EDGECHAT_GPU={override}: choose cuda, metal or none")
        if kind == "cuda":
            return _cuda(nvcc, caps, tegra_model, tegra_release, f"EDGECHAT_GPU={override}")
        return Choice(kind, "-DGGML_METAL=on" if kind == "metal" else "", f"EDGECHAT_GPU={override}")
    if system == "Darwin":
        if machine.lower() in ("arm64", "aarch64"):
            return Choice("metal", "-DGGML_METAL=on", "Apple Silicon")
        return Choice("cpu", "", "an Intel Mac (llama.cpp's Metal backend is built for Apple Silicon)")
    if nvcc and (jetson or caps):
        return _cuda(nvcc, caps, tegra_model, tegra_release, f"nvcc at {nvcc}, {'a Jetson' if jetson else 'an NVIDIA GPU'}")
    if nvcc:        # a CUDA toolkit on a machine without the GPU (a CI image, a build box): keep the CPU build
        return Choice("cpu", "", f"nvcc at {nvcc} but no NVIDIA GPU (nvidia-smi lists none; EDGECHAT_GPU=cuda "
                      "builds for CUDA anyway)")
    if jetson:
        return Choice("cpu", "", "a Jetson without nvcc (install JetPack's CUDA toolkit, then run setup again)")
    if caps:
        return Choice("cpu", "", "an NVIDIA GPU but no nvcc (install the CUDA toolkit, then run setup again)")
    return Choice("cpu", "", "no nvcc, not Apple Silicon")


def _cuda(nvcc, caps, tegra_model, tegra_release, why: str) -> Choice:
    arch, source = cuda_arch(caps, tegra_model, tegra_release)
    args = "-DGGML_CUDA=on" + (f" -DCMAKE_CUDA_ARCHITECTURES={arch}" if arch else "")
    why += f"; architecture {arch} from {source}" if arch else "; architecture: llama.cpp's default (the GPUs present at build time)"
    return Choice("cuda", args, why, {"CUDACXX": nvcc} if nvcc else {})


# ---- this machine --------------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _compute_caps() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.split() if out.returncode == 0 else []


def probe(env=os.environ) -> Choice:
    """``detect()`` with this machine's facts."""
    nvcc = shutil.which("nvcc", path=env.get("PATH")) or (JETPACK_NVCC if os.access(JETPACK_NVCC, os.X_OK) else None)
    return detect(platform.system(), platform.machine(), nvcc, _read(TEGRA_RELEASE), _read(TEGRA_MODEL),
                  _compute_caps(), env.get("EDGECHAT_GPU"))


# ---- the build -----------------------------------------------------------------------------------

def built_for(python: str, kind: str) -> bool:
    """Whether ``python``'s llama-cpp-python already offloads to ``kind`` (so setup need not build it)."""
    code = ("import sys, llama_cpp, pathlib; ok = llama_cpp.llama_supports_gpu_offload(); "
            "libs = ' '.join(p.name.lower() for p in (pathlib.Path(llama_cpp.__file__).parent / 'lib').glob('*')); "
            "sys.exit(0 if ok and (sys.argv[1] == 'metal' and sys.platform == 'darwin' or 'ggml-' + sys.argv[1] in libs) else 1)")
    try:
        return subprocess.run([python, "-c", code, kind], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def install(choice: Choice, spec: str, pip: list[str], log: str = BUILD_LOG, python: str = sys.executable,
            say=print) -> int:
    """Install ``spec`` (llama-cpp-python) with the ``pip`` command for ``choice``; returns pip's exit code.

    The CPU build is ``pip install spec`` (pip's cache reuses a wheel it built before). A GPU build runs
    with CMAKE_ARGS, without pip's cache, into ``log``; when it fails, the CPU build is installed instead
    and one line says so. A Python whose llama.cpp already offloads to the chosen GPU is left as it is.
    """
    if choice.kind == "cpu":
        return subprocess.run([*pip, "install", spec]).returncode
    name = {"cuda": "CUDA", "metal": "Metal"}[choice.kind]
    if built_for(python, choice.kind):
        say(f"setup: llama.cpp is already built for {name}")
        return subprocess.run([*pip, "install", spec]).returncode
    say(f"setup: building llama-cpp-python for {name} (CMAKE_ARGS={choice.cmake_args}; 10-30 minutes), "
        f"output in {log}")
    env = {**os.environ, **choice.env, "CMAKE_ARGS": choice.cmake_args, "FORCE_CMAKE": "1"}
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        # no cache: pip would take its cached CPU wheel of the same version for this build
        built = subprocess.run([*pip, "install", "--no-cache-dir", "--force-reinstall", "--no-deps", spec],
                               env=env, stdout=out, stderr=subprocess.STDOUT).returncode == 0
    if not built:
        say(f"setup: the {name} build of llama-cpp-python failed (see {log}); installing the CPU build "
            "instead: --gpu-layers will be ignored")
    code = subprocess.run([*pip, "install", spec]).returncode     # the CPU build, or the GPU build's deps
    if built and code == 0 and not built_for(python, choice.kind):
        say(f"setup: warning: llama-cpp-python built, but it does not offload to {name} (see {log})")
    return code


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gpu_detect.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="print the choice and CMAKE_ARGS; build nothing")
    p.add_argument("--log", default=BUILD_LOG, help=f"a GPU build's output (default {BUILD_LOG})")
    p.add_argument("command", nargs="?", choices=["install"])
    p.add_argument("spec", nargs="?", help="what to install (llama-cpp-python>=...)")
    p.add_argument("pip", nargs=argparse.REMAINDER, help="-- then the pip command (python -m pip -q ...)")
    args = p.parse_args(argv)
    try:
        choice = probe()
    except ValueError as e:
        print(f"setup: {e}", file=sys.stderr)
        return 2
    print(choice.line())
    if args.dry_run:
        print(f"CMAKE_ARGS={choice.cmake_args}")
        return 0
    pip = args.pip[1:] if args.pip[:1] == ["--"] else args.pip
    if args.command != "install" or not args.spec or not pip:
        p.error("give --dry-run, or: install SPEC -- PIP...")
    sys.stdout.flush()
    return install(choice, args.spec, pip, args.log)


if __name__ == "__main__":
    sys.exit(main())
