"""Device facts and ``edgechat doctor``: ISA, cores, RAM, GPU offload, memory estimate, backend pick."""
from __future__ import annotations

import json
import os
import platform
import sys

import pytest

from edgechat.app import manage
from edgechat.models import resolve as resolve_mod
from edgechat.runtime import device
from edgechat.runtime.errors import ModelNotFound
from hf_server import write_tiny_gguf
from test_models import home, run_cli, run_manage  # noqa: F401  (home is a fixture)

KNOWN_ISA = {"avx", "avx2", "fma", "f16c", "avx512f", "avx_vnni", "avx512_vnni",
             "neon", "dotprod", "fp16", "i8mm", "sve"}


def _kv_oracle(path, ctx: int, kv_type: str = "f16") -> int:
    """KV bytes from gguf.GGUFReader's metadata: 2 (K,V) * n_layer * ctx * n_head_kv * row bytes, a row
    being head_dim * 2 (f16) or head_dim + 2 per 32 values (q8_0: int8 and an fp16 scale per block)."""
    import gguf
    r = gguf.GGUFReader(path)
    arch = r.fields["general.architecture"].contents()
    get = lambda k: r.fields[f"{arch}.{k}"].contents()            # noqa: E731
    head_dim = get("embedding_length") // get("attention.head_count")
    row = head_dim * 2 if kv_type == "f16" else head_dim + 2 * -(-head_dim // 32)
    return 2 * get("block_count") * ctx * get("attention.head_count_kv") * row


# ---- device --------------------------------------------------------------------------------------

def test_device_info_is_sane():
    import psutil
    d = device.device_info()
    assert d.os == platform.system() and d.arch
    assert set(d.isa) <= KNOWN_ISA
    assert d.cores_logical >= (d.cores_physical or 1) >= 1
    assert 0 < d.ram_available <= d.ram_total == psutil.virtual_memory().total
    if sys.platform.startswith("linux") and platform.machine() == "x86_64":
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
        assert ("avx2" in d.isa) == ("avx2" in flags) and ("fma" in d.isa) == ("fma" in flags)


def test_cpu_isa_reads_arm_features(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimdhp asimddp\n"
                       "CPU implementer\t: 0x41\n")
    monkeypatch.setattr(device, "CPUINFO", cpuinfo)
    monkeypatch.setattr(device.platform, "system", lambda: "Linux")
    monkeypatch.setattr(device.platform, "machine", lambda: "aarch64")
    assert device.cpu_isa()[1] == ["dotprod", "fp16", "neon"]


def test_gpu_offload_agrees_with_llama_cpp():
    import llama_cpp
    offload, kind, version, note = device.gpu_offload()
    assert offload == bool(llama_cpp.llama_supports_gpu_offload()) and version == llama_cpp.__version__
    assert (kind is None and note) if not offload else kind in ("metal", "cuda", "rocm", "vulkan", "sycl", None)


def test_gpu_offload_without_llama_cpp(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)             # import now raises ImportError
    assert device.gpu_offload()[:3] == (False, None, None)


# ---- doctor --------------------------------------------------------------------------------------

def test_doctor_report_default_model(home):
    r = manage.doctor_report(ctx=4096)
    default = resolve_mod.default_model_path()
    assert r["model"]["path"] == str(default) and r["model"]["size"] == default.stat().st_size
    assert r["kv_type"] == "q8_0"                  # --kv-type auto on the native engine
    assert r["memory"]["kv"] == _kv_oracle(default, 4096, "q8_0") == 2 * 30 * 4096 * 3 * (64 + 4)
    assert manage.doctor_report(ctx=4096, kv_type="f16")["memory"]["kv"] == _kv_oracle(default, 4096)
    assert r["memory"]["model"] == default.stat().st_size
    assert r["memory"]["total"] > r["memory"]["model"] + r["memory"]["kv"]
    assert r["memory"]["available"] == r["device"]["ram_available"]
    assert r["backend"] == {"name": "native",
                            "reason": "the native engine runs this arch and these tensor types"}
    assert manage.doctor_report(ctx=8192)["memory"]["kv"] == 2 * r["memory"]["kv"]


def test_doctor_report_unsupported_model_picks_llama_cpp(home, tmp_path):
    path = write_tiny_gguf(tmp_path / "g.gguf", arch="gemma")
    r = manage.doctor_report(str(path), ctx=1000)
    assert r["backend"]["name"] == "llama.cpp" and "arch 'gemma'" in r["backend"]["reason"]
    assert r["kv_type"] == "f16" and r["memory"]["kv"] == _kv_oracle(path, 1000)   # auto on llama.cpp


def test_doctor_report_without_default_model(home, monkeypatch):
    def missing():
        raise ModelNotFound("the default model is not installed")
    monkeypatch.setattr(resolve_mod, "default_model_path", missing)
    r = manage.doctor_report()
    assert r["model"] is None and "the default model is not installed" in r["problems"]


def test_doctor_command_text(home, capsys):
    rc = run_manage("doctor", "--ctx", "1024")
    out = capsys.readouterr().out
    for label in ("system", "isa", "cores", "ram", "gpu offload", "model", "memory @ ctx 1024",
                  "backend (auto)"):
        assert any(line.startswith(label) for line in out.splitlines()), label
    assert ("no problems found" in out) == (rc == 0)


def test_doctor_command_errors(home, capsys):
    assert run_manage("doctor", "--model", "no-such-model") == 1
    err = capsys.readouterr().err
    assert err.startswith("edgechat: unknown model 'no-such-model'") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:
        run_manage("doctor", "--ctx", "0")
    assert exit_.value.code == 2


def test_doctor_console_script_json_offline(home):
    r = run_cli("doctor", "--json", "--ctx", "512", env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode in (0, 1), r.stderr
    report = json.loads(r.stdout)
    assert report["ctx"] == 512 and report["model"]["name"] == "smollm2-135m"
    assert report["kv_type"] == "q8_0" and report["memory"]["kv"] == 2 * 30 * 512 * 3 * (64 + 4)
    assert r.returncode == (1 if report["problems"] else 0)


def test_doctor_report_bad_file_is_a_problem(home, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all, just some bytes")
    r = manage.doctor_report(str(bad))
    assert r["backend"] is None and r["memory"] is None
    assert any(p.startswith(f"{bad}: bad GGUF") for p in r["problems"])


# ---- the GPU ---------------------------------------------------------------------------------------

def _rows(text: str) -> dict:
    """doctor's text as {label: value} (labels and values are two or more spaces apart)."""
    import re
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in text.splitlines() if re.search(r"\S\s{2,}\S", line))


def test_doctor_gpu_on_this_machine(home):
    import llama_cpp
    r = manage.doctor_report(ctx=1024)
    g = r["gpu"]
    assert g["backends"] == r["device"]["llama_backends"] and "CPU" in g["backends"]
    rows = _rows(manage.format_doctor(r))
    assert rows["llama.cpp"] == f"{llama_cpp.__version__} (backends: {', '.join(g['backends'])})"
    if not g["devices"]:                                 # nothing is loaded to learn what is known
        assert g["run"] is None and g["auto"] is None
        assert rows["gpu"].startswith("none that this llama.cpp can use") and rows["gpu offload"].startswith("no")
    else:
        assert g["run"]["on_gpu"] > 0 and rows["gpu offload"].startswith("yes: layers ")


def _a_gpu(monkeypatch, free: int):
    from edgechat.runtime.gpu import GpuDevice, GpuFacts
    facts = GpuFacts(["CUDA", "CPU"], [GpuDevice("CUDA0", "NVIDIA GeForce RTX 3070", "CUDA", free, 8 << 30, False)])
    monkeypatch.setattr(device, "gpu_facts", lambda ram_available=None: facts)


def test_doctor_with_a_gpu_runs_one_token_and_reads_llama_cpps_log(home, monkeypatch):
    """llama.cpp said to have a CUDA device with 6 GiB free: the default model and its cache fit, so
    auto runs llama.cpp with every layer there; the one-token run is real (on this machine's llama.cpp
    its layers land where that build puts them) and its log says where."""
    import gguf
    _a_gpu(monkeypatch, 6 << 30)
    r = manage.doctor_report(ctx=1024)
    g, default = r["gpu"], resolve_mod.default_model_path()
    blocks = gguf.GGUFReader(default).fields["llama.block_count"].contents()
    assert sum(g["run"]["layers"].values()) == blocks + 1                # the blocks and the output layer
    assert g["auto"]["layers"] == -1 and g["auto"]["why"].startswith(
        "GPU offload (--gpu-layers auto): every layer on CUDA0 NVIDIA GeForce RTX 3070, ")
    assert r["backend"] == {"name": "llama.cpp", "reason": g["auto"]["why"]} and r["kv_type"] == "f16"
    rows = _rows(manage.format_doctor(r))
    assert rows["gpu"] == "CUDA0 NVIDIA GeForce RTX 3070: 6.0 GiB free of 8.0 GiB"
    where = ", ".join(f"{n} on {dev}" for dev, n in g["run"]["layers"].items())
    verdict = "yes" if g["run"]["on_gpu"] else "NO"
    assert rows["gpu offload"] == f"{verdict}: layers {where} (a one-token run with --gpu-layers all, llama.cpp's log)"
    assert rows["gpu-layers auto"] == g["auto"]["why"]
    assert rows["backend (auto)"] == f"llama.cpp: {g['auto']['why']}"


def test_doctor_with_a_gpu_too_small_keeps_the_native_engine(home, monkeypatch):
    _a_gpu(monkeypatch, 64 << 20)                    # 64 MiB free: less than the 94 MiB file alone
    r = manage.doctor_report(ctx=1024)
    assert r["gpu"]["auto"]["layers"] == 0 and r["gpu"]["auto"]["why"].startswith("not offloaded to CUDA0")
    assert r["backend"]["name"] == "native"


def test_doctor_names_the_chat_template(default_model, capsys):
    """The file's own template for the default model; for the Gemma 270M base file (no template) the
    family's built-in one, and a pointer to --raw."""
    from test_gemma3 import GEMMA3_FILE
    from edgechat.app import cli
    cli.main(["-m", str(default_model), "doctor", "--json"])
    assert json.loads(capsys.readouterr().out)["chat_template"] == "the file's own"
    if not GEMMA3_FILE.is_file():
        pytest.skip(f"{GEMMA3_FILE} missing: scripts/setup.sh --test fetches it")
    cli.main(["-m", str(GEMMA3_FILE), "doctor", "--json"])
    told = json.loads(capsys.readouterr().out)["chat_template"]
    assert told.startswith("gemma (built in") and "--raw" in told
