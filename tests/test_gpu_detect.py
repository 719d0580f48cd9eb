"""scripts/gpu_detect.py: which llama.cpp build setup makes (CUDA, Metal, CPU) for each kind of machine,
setup.sh's dry run with a fake nvcc and nvidia-smi on PATH, and the install: the CPU build as before,
a GPU build with its CMake flags outside pip's cache, and a failed GPU build falling back to the CPU."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_detect  # noqa: E402

# the flags llama.cpp's build documents (docs/build.md): CUDA on, one architecture; Metal on
CUDA = "-DGGML_CUDA=on"
METAL = "-DGGML_METAL=on"
ORIN_RELEASE = "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64\n"
NANO_RELEASE = "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64\n"
NVCC = "/usr/local/cuda/bin/nvcc"


@pytest.mark.parametrize("machine, expected", [
    # (system, machine, nvcc, tegra release, tegra model, compute caps, EDGECHAT_GPU) -> (kind, CMAKE_ARGS)
    (("Linux", "x86_64", None, None, None, [], None), ("cpu", "")),
    (("Linux", "x86_64", "/usr/bin/nvcc", None, None, ["8.6"], None),
     ("cuda", f"{CUDA} -DCMAKE_CUDA_ARCHITECTURES=86")),
    (("Linux", "x86_64", "/usr/bin/nvcc", None, None, ["8.9", "8.6", "8.9"], None),       # three GPUs, two kinds
     ("cuda", f"{CUDA} -DCMAKE_CUDA_ARCHITECTURES=86;89")),
    (("Linux", "x86_64", "/usr/bin/nvcc", None, None, [], None), ("cpu", "")),            # a toolkit, no GPU
    (("Linux", "x86_64", None, None, None, ["9.0"], None), ("cpu", "")),                  # a GPU, no toolkit
    (("Linux", "aarch64", NVCC, ORIN_RELEASE, "NVIDIA Jetson AGX Orin Developer Kit\x00", [], None),
     ("cuda", f"{CUDA} -DCMAKE_CUDA_ARCHITECTURES=87")),
    (("Linux", "aarch64", NVCC, ORIN_RELEASE, "NVIDIA Jetson Orin Nano Developer Kit\x00", [], None),
     ("cuda", f"{CUDA} -DCMAKE_CUDA_ARCHITECTURES=87")),
    (("Linux", "aarch64", NVCC, "# R35 (release)", "NVIDIA Jetson Xavier NX Developer Kit", [], None),
     ("cuda", f"{CUDA} -DCMAKE_CUDA_ARCHITECTURES=72")),
    (("Linux", "aarch64", NVCC, NANO_RELEASE, "NVIDIA Jetson Nano Developer Kit", [], None),
     ("cuda", f"{CUDA} -DCMAKE_CUDA_ARCHITECTURES=53")),
    (("Linux", "aarch64", NVCC, ORIN_RELEASE, None, [], None),                            # model unreadable
     ("cuda", f"{CUDA} -DCMAKE_CUDA_ARCHITECTURES=87")),
    (("Linux", "aarch64", NVCC, NANO_RELEASE, None, [], None), ("cuda", CUDA)),            # R32: which board?
    (("Linux", "aarch64", NVCC, ORIN_RELEASE, "NVIDIA Jetson AGX Orin", ["8.7"], None),
     ("cuda", f"{CUDA} -DCMAKE_CUDA_ARCHITECTURES=87")),
    (("Linux", "aarch64", None, ORIN_RELEASE, "NVIDIA Jetson AGX Orin", [], None), ("cpu", "")),
    (("Linux", "aarch64", None, None, None, [], None), ("cpu", "")),                      # a Raspberry Pi
    (("Darwin", "arm64", None, None, None, [], None), ("metal", METAL)),
    (("Darwin", "x86_64", None, None, None, [], None), ("cpu", "")),
    (("Linux", "x86_64", "/usr/bin/nvcc", None, None, ["8.6"], "none"), ("cpu", "")),
    (("Darwin", "arm64", None, None, None, [], "none"), ("cpu", "")),
    (("Linux", "x86_64", "/usr/bin/nvcc", None, None, [], "cuda"), ("cuda", CUDA)),
    (("Linux", "x86_64", None, None, None, [], "metal"), ("metal", METAL)),
], ids=["cpu", "gpu", "two-archs", "toolkit-only", "gpu-no-nvcc", "orin", "orin-nano", "xavier", "nano",
        "orin-by-release", "r32-unknown", "orin-smi", "jetson-no-nvcc", "arm-board", "apple-silicon", "intel-mac",
        "override-none", "override-none-mac", "override-cuda", "override-metal"])
def test_detect(machine, expected):
    choice = gpu_detect.detect(*machine)
    assert (choice.kind, choice.cmake_args) == expected, choice.reason
    assert choice.reason and choice.line().startswith("setup: llama.cpp for ")
    nvcc = machine[2]
    assert choice.env == ({"CUDACXX": nvcc} if choice.kind == "cuda" and nvcc else {})


def test_detect_says_why():
    assert "nvidia-smi lists none" in gpu_detect.detect("Linux", "x86_64", "/opt/nvcc").reason
    assert "install the CUDA toolkit" in gpu_detect.detect("Linux", "x86_64", None, compute_caps=["8.6"]).reason
    assert "Apple Silicon" == gpu_detect.detect("Darwin", "arm64", None).reason
    assert gpu_detect.detect("Linux", "x86_64", None, override="none").reason == "EDGECHAT_GPU=none"
    assert "Jetson AGX Orin" in gpu_detect.detect("Linux", "aarch64", NVCC, ORIN_RELEASE, "NVIDIA Jetson AGX Orin").reason
    with pytest.raises(ValueError, match="EDGECHAT_GPU=rocm: choose cuda, metal or none"):
        gpu_detect.detect("Linux", "x86_64", None, override="rocm")


# ---- this machine, through setup.sh and the script ----------------------------------------------

def _tool(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def fake_cuda(tmp_path) -> dict:
    """A PATH whose nvcc and nvidia-smi are fakes: an RTX 3090's compute capability, 8.6."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    _tool(bin_, "nvcc", "echo 'Cuda compilation tools, release 12.4'")
    _tool(bin_, "nvidia-smi", '[ "$1" = "--query-gpu=compute_cap" ] && echo 8.6')
    env = {k: v for k, v in os.environ.items() if k not in ("EDGECHAT_GPU", "CMAKE_ARGS")}
    return dict(env, PATH=f"{bin_}:/usr/bin:/bin", PYTHON=sys.executable)


def _setup_dry_run(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_setup_dry_run_with_a_fake_nvcc_prints_the_cuda_flags(fake_cuda, tmp_path):
    r = _setup_dry_run(fake_cuda)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"setup: llama.cpp for CUDA: nvcc at {tmp_path}/bin/nvcc, an NVIDIA GPU; architecture 86 from "
        "compute capability 8.6 (nvidia-smi)",
        f"CMAKE_ARGS={CUDA} -DCMAKE_CUDA_ARCHITECTURES=86"]


def test_setup_dry_run_overrides_and_refusals(fake_cuda, tmp_path):
    r = _setup_dry_run(dict(fake_cuda, EDGECHAT_GPU="none"))
    assert r.returncode == 0 and r.stdout.splitlines() == ["setup: llama.cpp for the CPU: EDGECHAT_GPU=none",
                                                           "CMAKE_ARGS="]
    (tmp_path / "bin" / "nvidia-smi").unlink()                   # the toolkit, no GPU: the CPU build
    r = _setup_dry_run(fake_cuda)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "CMAKE_ARGS="
    assert "but no NVIDIA GPU" in r.stdout
    r = _setup_dry_run(dict(fake_cuda, EDGECHAT_GPU="opencl"))
    assert r.returncode == 2 and r.stderr == "setup: EDGECHAT_GPU=opencl: choose cuda, metal or none\n"


# ---- the install ---------------------------------------------------------------------------------

@pytest.fixture
def fake_pip(tmp_path) -> tuple[Path, Path]:
    """A pip that records each call (CMAKE_ARGS, CUDACXX, arguments) and fails a CUDA build."""
    calls = tmp_path / "calls.txt"
    pip = _tool(tmp_path, "pip", f'echo "$CMAKE_ARGS|${{CUDACXX:-}}|$*" >> {calls}\n'
                                 'case "$CMAKE_ARGS" in *GGML_CUDA*) echo "nvcc fatal: no such arch" >&2; exit 1;; esac')
    return pip, calls


def _install_cli(env: dict, pip: Path, log: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_detect.py"), "--log", str(log), "install",
                           "llama-cpp-python>=0.3.10", "--", str(pip), "-q"], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_failed_cuda_build_falls_back_to_the_cpu_build_in_one_line(fake_cuda, fake_pip, tmp_path):
    pip, calls = fake_pip
    log = tmp_path / "build.log"
    r = _install_cli(fake_cuda, pip, log)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("setup: llama.cpp for CUDA") and lines[1].startswith("setup: building llama-cpp-python")
    assert lines[2:] == [f"setup: the CUDA build of llama-cpp-python failed (see {log}); installing the CPU build "
                         "instead: --gpu-layers will be ignored"]
    assert "nvcc fatal" in log.read_text() and "nvcc fatal" not in r.stdout + r.stderr   # the build's noise: in the log
    nvcc = f"{tmp_path}/bin/nvcc"
    assert calls.read_text().splitlines() == [
        f"{CUDA} -DCMAKE_CUDA_ARCHITECTURES=86|{nvcc}|-q install --no-cache-dir --force-reinstall --no-deps "
        "llama-cpp-python>=0.3.10",
        "||-q install llama-cpp-python>=0.3.10"]                   # the CPU build, pip's cache allowed


def test_a_cuda_build_that_works_installs_its_deps_after(fake_cuda, tmp_path):
    calls = tmp_path / "calls.txt"
    pip = _tool(tmp_path, "pip", f'echo "$CMAKE_ARGS|$*" >> {calls}')
    r = _install_cli(fake_cuda, pip, tmp_path / "build.log")
    assert r.returncode == 0 and "failed" not in r.stdout
    # the fake pip built nothing, so this venv's llama.cpp still cannot offload: said in one line
    assert r.stdout.splitlines()[2:] == [f"setup: warning: llama-cpp-python built, but it does not offload to "
                                         f"CUDA (see {tmp_path / 'build.log'})"]
    assert calls.read_text().splitlines() == [
        f"{CUDA} -DCMAKE_CUDA_ARCHITECTURES=86|-q install --no-cache-dir --force-reinstall --no-deps "
        "llama-cpp-python>=0.3.10",
        "|-q install llama-cpp-python>=0.3.10"]


def test_the_cpu_build_is_the_plain_cached_install(fake_pip, tmp_path):
    """No GPU: exactly the pip call setup made before there was detection (no flags, pip's cache on)."""
    pip, calls = fake_pip
    env = {k: v for k, v in os.environ.items() if k not in ("EDGECHAT_GPU", "CMAKE_ARGS")}
    env["PATH"] = "/usr/bin:/bin"                                 # no nvcc, no nvidia-smi
    r = _install_cli(env, pip, tmp_path / "build.log")
    assert r.returncode == 0, r.stderr
    [line] = r.stdout.splitlines()                                # JetPack's nvcc path may exist here
    assert line.startswith("setup: llama.cpp for the CPU: ")
    assert calls.read_text().splitlines() == ["||-q install llama-cpp-python>=0.3.10"]
    assert not (tmp_path / "build.log").exists()


def test_a_failing_cpu_install_returns_pips_code(tmp_path):
    pip = _tool(tmp_path, "pip", "exit 3")
    choice = gpu_detect.detect("Linux", "x86_64", None)
    assert gpu_detect.install(choice, "llama-cpp-python", [str(pip)], log=str(tmp_path / "log")) == 3


def test_an_installed_gpu_build_is_not_rebuilt(tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    pip = _tool(tmp_path, "pip", f'echo "$*" >> {calls}')
    monkeypatch.setattr(gpu_detect, "built_for", lambda python, kind: kind == "cuda")
    said = []
    choice = gpu_detect.detect("Linux", "x86_64", "/usr/bin/nvcc", compute_caps=["8.6"])
    assert gpu_detect.install(choice, "llama-cpp-python", [str(pip)], log=str(tmp_path / "log"), say=said.append) == 0
    assert said == ["setup: llama.cpp is already built for CUDA"]
    assert calls.read_text().splitlines() == ["install llama-cpp-python"]


def test_built_for_reads_this_llama_cpp():
    """This venv's llama.cpp: it offloads to CUDA only if it has the CUDA backend library."""
    import llama_cpp
    libs = " ".join(p.name.lower() for p in (Path(llama_cpp.__file__).parent / "lib").glob("*"))
    has_cuda = bool(llama_cpp.llama_supports_gpu_offload()) and "ggml-cuda" in libs
    assert gpu_detect.built_for(sys.executable, "cuda") == has_cuda
    assert gpu_detect.built_for("/nonexistent/python", "cuda") is False
