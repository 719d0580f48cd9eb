"""``edgechat bench --gpu-layers all``: a gpu engine beside native and llama.cpp on the CPU (prefill and
decode tok/s, VRAM from llama.cpp's log), refused in one line where llama.cpp has no GPU."""
from __future__ import annotations

import json

import pytest

from edgechat.app import bench, bench_gpu
from edgechat.app.bench_table import _columns
from edgechat.app.cli import build_parser
from edgechat.runtime import gpu

# llama.cpp's buffer lines on a CUDA machine (llama-model.cpp / llama-context.cpp's formats)
CUDA_LOG = ["load_tensors:        CUDA0 model buffer size =    61.40 MiB",
            "load_tensors:   CPU_Mapped model buffer size =    30.70 MiB",
            "llama_kv_cache:      CUDA0 KV buffer size =    12.00 MiB",
            "llama_context:  CUDA_Host  output buffer size =     0.19 MiB",
            "sched_reserve:      CUDA0 compute buffer size =    20.10 MiB",
            "sched_reserve:  CUDA_Host compute buffer size =     4.00 MiB",
            "~llama_context:      CUDA0 compute buffer size is  20.1000 MiB, matches expectation of  20.1000 MiB"]


def test_vram_is_what_llama_cpp_put_on_the_gpu():
    # 61.4 + 12.0 + 20.1 on CUDA0; the CPU-side buffers (mapped weights, pinned host memory) are not VRAM
    assert bench_gpu.vram_mib(CUDA_LOG) == pytest.approx(61.4 + 12.0 + 20.1)
    assert bench_gpu.vram_mib(["load_tensors:   CPU_Mapped model buffer size =    92.10 MiB"]) == 0


def _args(*argv: str):
    return build_parser().parse_args(["bench", "--threads", "2", "--runs", "1", "--prefill", "32",
                                      "--decode-depths", "0", "--decode-tokens", "4", *argv])


def test_the_option_after_or_before_the_subcommand():
    assert _args("--gpu-layers", "all").gpu_layers == -1
    assert build_parser().parse_args(["--gpu-layers", "all", "bench"]).gpu_layers == -1
    assert _args().gpu_layers == "auto" and not bench_gpu.wanted(_args())


def test_refused_in_one_line(capsys):
    assert bench.run(_args("--gpu-layers", "3")) == 2
    assert capsys.readouterr().err == ("edgechat bench: --gpu-layers 3: bench takes all (a GPU column: llama.cpp "
                                       "with every layer on the GPU)\n")
    if gpu.gpu_facts().devices:
        return
    assert bench.run(_args("--gpu-layers", "all")) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgechat bench: --gpu-layers all: this llama.cpp has no GPU") and err.count("\n") == 1


def test_the_gpu_column(tmp_path, monkeypatch, capsys):
    """The whole bench with the gpu engine, for real: on a machine without a GPU its llama.cpp keeps the
    layers on the CPU (so it is run here as if there were one), and its VRAM is then 0."""
    monkeypatch.setenv("EDGECHAT_BENCH_CACHE", str(tmp_path))
    has_gpu = bool(gpu.gpu_facts().devices)
    if not has_gpu:
        monkeypatch.setattr(bench_gpu, "refusal", lambda args: None)
        monkeypatch.setattr(bench_gpu, "describe", lambda: "CUDA0 (none here: llama.cpp on the CPU)")
    assert bench.run(_args("--gpu-layers", "all", "--json")) == 0
    r = json.loads(capsys.readouterr().out)
    [row] = r["rows"]
    assert not row["errors"], row["errors"]
    assert set(row["median"]) == {"native", "llama.cpp", "gpu"}
    g = row["median"]["gpu"]
    assert g["prefill32_tps"] > 0 and g["decode0_tps"] > 0
    assert (row["info"]["gpu"]["vram_mib"] > 0) == has_gpu and row["info"]["gpu"]["gpu_layers"] == -1
    assert set(row["ratio"]) == set(row["median"]["native"])              # native / llama.cpp, as before
    text = bench.table(r).splitlines()
    head2 = next(line for line in text if line.startswith(" " * 26 + " | "))       # the engines line
    assert head2.count("gpu") == len(_columns(r)) + 1                     # a gpu cell a metric, and VRAM
    assert any(line.startswith("gpu        ") for line in text)
    assert any("VRAM MiB" in line for line in text)
