"""runtime/gpu.py: llama.cpp's backends and GPU devices from ggml's registry, ``--gpu-layers auto``'s
decision, and where a real load put the layers, read from llama.cpp's own log."""
from __future__ import annotations

import logging

import pytest

from edgechat.runtime import gpu
from edgechat.runtime.gpu import GpuDevice, GpuFacts

GiB = 1 << 30


def _n_layer(path) -> int:
    """block_count as gguf's reader sees it (not edgechat's reader)."""
    import gguf
    r = gguf.GGUFReader(path)
    arch = r.fields["general.architecture"].contents()
    return r.fields[f"{arch}.block_count"].contents()


def test_gpu_facts_agree_with_llama_cpp():
    import llama_cpp
    facts = gpu.gpu_facts()
    assert facts.note == "" and "CPU" in facts.backends
    if not llama_cpp.llama_supports_gpu_offload():        # a CPU-only build has no GPU device
        assert facts.devices == [] and facts.backends == ["CPU"]
    for d in facts.devices:
        assert d.name and d.backend in facts.backends and d.backend != "CPU"
        assert 0 < d.free and (d.shared or d.free <= d.total)


def test_gpu_facts_without_llama_cpp(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "llama_cpp._ggml", None)      # its import now fails
    facts = gpu.gpu_facts()
    assert facts.devices == [] and facts.note.startswith("llama.cpp's backends unknown")


def _device(name="CUDA0", free=8 * GiB, shared=False) -> GpuDevice:
    return GpuDevice(name, "NVIDIA GeForce RTX 3070", "CUDA", free, 8 * GiB, shared)


def test_auto_offloads_every_layer_when_model_and_cache_fit():
    facts = GpuFacts(["CUDA", "CPU"], [_device("CUDA0", 2 * GiB), _device("CUDA1", 6 * GiB)])
    layers, why = gpu.auto_layers(5 * GiB, facts)
    assert layers == -1                                           # llama.cpp's "every layer"
    assert why == ("GPU offload (--gpu-layers auto): every layer on CUDA1 NVIDIA GeForce RTX 3070, "
                   "5.0 GiB for model + cache, 6.0 GiB free")     # the device with the most room
    assert gpu.auto_layers(6 * GiB, facts)[0] == -1                # exactly full still fits


def test_auto_keeps_the_cpu_when_it_does_not_fit_or_there_is_no_gpu():
    layers, why = gpu.auto_layers(7 * GiB, GpuFacts(["CUDA", "CPU"], [_device(free=6 * GiB)]))
    assert layers == 0 and why == ("not offloaded to CUDA0 NVIDIA GeForce RTX 3070 (--gpu-layers auto): "
                                   "7.0 GiB for model + cache, 6.0 GiB free")
    assert gpu.auto_layers(1, GpuFacts(["CPU"], [])) == (0, "")     # nothing new said on a CPU machine


def test_auto_on_shared_memory_says_so():
    layers, why = gpu.auto_layers(GiB, GpuFacts(["CUDA", "CPU"], [_device(free=3 * GiB, shared=True)]))
    assert layers == -1 and why.endswith("3.0 GiB free (shared with the CPU)")


def test_shared_memory_gpus_count_the_free_ram(monkeypatch, tmp_path):
    """A Jetson's GPU (/etc/nv_tegra_release) has the RAM the preflight reads: gpu_facts takes it."""
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.0\n")
    monkeypatch.setattr(gpu, "TEGRA_RELEASE", release)
    for d in gpu.gpu_facts(ram_available=123 * GiB).devices:       # none on a machine without a GPU
        assert d.shared and d.free == 123 * GiB


# llama.cpp's load log on a CUDA machine (the format of llama-model.cpp's load_tensors lines)
CUDA_LOG = ["load_tensors: layer   0 assigned to device CUDA0, is_swa = 0",
            "load_tensors: layer   1 assigned to device CUDA0, is_swa = 0",
            "load_tensors: layer   2 assigned to device CPU, is_swa = 0",
            "load_tensors: offloading 2 repeating layers to GPU",
            "load_tensors: offloaded 2/3 layers to GPU",
            "load_tensors:        CUDA0 model buffer size =    61.40 MiB",
            "load_tensors:   CPU_Mapped model buffer size =    30.70 MiB"]


def test_placement_reads_the_load_log():
    assert gpu.placement(CUDA_LOG) == {"layers": {"CUDA0": 2, "CPU": 1}, "offloaded": [2, 3],
                                       "model_buffers_mib": {"CUDA0": 61.4, "CPU_Mapped": 30.7}}
    assert gpu.placement([]) == {"layers": {}, "offloaded": None, "model_buffers_mib": {}}


def test_offload_run_reports_where_llama_cpp_put_the_layers(default_model):
    """A real load + one token with every layer asked on the GPU: every layer (the blocks and the
    output layer) is somewhere, on a GPU exactly when this llama.cpp has one."""
    run = gpu.offload_run(default_model)
    assert sum(run["layers"].values()) == _n_layer(default_model) + 1
    on_gpu = bool(gpu.gpu_facts().devices)
    assert (run["on_gpu"] > 0) == on_gpu and (run["offloaded"] is not None) == on_gpu
    assert run["model_buffers_mib"] and all(v > 0 for v in run["model_buffers_mib"].values())


def test_llama_log_leaves_the_logger_as_it_was():
    log = logging.getLogger("edgechat.llama")
    before = (log.level, list(log.handlers))
    with gpu.llama_log() as lines:
        log.debug("load_tensors: a line")
    assert lines == ["load_tensors: a line"]
    assert (log.level, log.handlers) == before


# ---- load(..., gpu_layers="auto") ----------------------------------------------------------------

NATIVE_REASON = "the native engine runs this arch and these tensor types"


def _load(path, **kw):
    from edgechat.runtime import load
    return load(path, ctx=256, threads=2, speculative="off", **kw)


def test_auto_on_this_machine(default_model):
    """No GPU in this llama.cpp: auto is 0 and the native engine runs, its reason as it always was."""
    if gpu.gpu_facts().devices:
        pytest.skip("this llama.cpp has a GPU device")
    e = _load(default_model, gpu_layers="auto")
    try:
        assert (e.info.backend, e.info.reason, e.info.gpu_layers) == ("native", NATIVE_REASON, 0)
    finally:
        e.close()


@pytest.fixture
def a_gpu(monkeypatch):
    """llama.cpp said to have a CUDA device with 6 GiB free (the load itself is real: on a CPU-only
    build llama.cpp keeps the layers on the CPU)."""
    from edgechat.runtime import loader
    facts = GpuFacts(["CUDA", "CPU"], [_device(free=6 * GiB)])
    monkeypatch.setattr(gpu, "gpu_facts", lambda ram_available=None: facts)
    monkeypatch.setattr(loader, "_can_offload", lambda: True)
    return facts


def test_auto_offloads_every_layer_when_it_fits(default_model, a_gpu):
    e = _load(default_model, gpu_layers="auto")
    try:
        assert (e.info.backend, e.info.gpu_layers) == ("llama.cpp", -1)
        assert e.info.reason.startswith("GPU offload (--gpu-layers auto): every layer on CUDA0 NVIDIA GeForce "
                                         "RTX 3070, ") and e.info.reason.endswith(", 6.0 GiB free")
    finally:
        e.close()


def test_auto_with_a_gpu_too_small_keeps_the_native_engine_and_says_why(default_model, a_gpu, monkeypatch):
    small = GpuFacts(["CUDA", "CPU"], [_device(free=64 << 20)])          # 64 MiB: less than the file
    monkeypatch.setattr(gpu, "gpu_facts", lambda ram_available=None: small)
    e = _load(default_model, gpu_layers="auto")
    try:
        assert (e.info.backend, e.info.gpu_layers) == ("native", 0)
        assert e.info.reason.startswith(f"{NATIVE_REASON}; not offloaded to CUDA0 NVIDIA GeForce RTX 3070 "
                                        "(--gpu-layers auto): ")
    finally:
        e.close()


def test_auto_sizes_the_offload_for_every_cache_the_context_holds(default_model, a_gpu, monkeypatch):
    """serve on llama.cpp holds a sequence per cache slot, ctx cells each, all on the device: a GPU with
    room for the model and one cache but not four keeps the layers on the CPU when four are asked for."""
    from edgechat.runtime.ggufload import read_model
    cfg, size = read_model(default_model).config, default_model.stat().st_size
    one, four = (gpu.need_bytes(size, cfg, 256, seqs=n) for n in (1, 4))
    assert four - one == 3 * (gpu.need_bytes(size, cfg, 512) - one)          # the caches grow, nothing else
    room = GpuFacts(["CUDA", "CPU"], [_device(free=(one + four) // 2)])
    monkeypatch.setattr(gpu, "gpu_facts", lambda ram_available=None: room)
    assert gpu.resolve_layers("auto", "llama.cpp", size, cfg, 256)[0] == -1
    layers, why = gpu.resolve_layers("auto", "llama.cpp", size, cfg, 256, seqs=4)
    assert layers == 0 and why.startswith("not offloaded to CUDA0")
    for seqs, expected in ((1, ("llama.cpp", -1)), (4, ("native", 0))):
        e = _load(default_model, gpu_layers="auto", seqs=seqs)
        try:
            assert (e.info.backend, e.info.gpu_layers) == expected
        finally:
            e.close()


@pytest.mark.parametrize("backend, expected", [("native", ("native", 0, "asked for with --backend native")),
                                               ("llama.cpp", ("llama.cpp", -1, "asked for with --backend llama.cpp; "
                                                              "GPU offload (--gpu-layers auto): every layer"))])
def test_auto_with_a_backend_asked_for(default_model, a_gpu, backend, expected):
    """native runs on the CPU whatever auto finds; llama.cpp asked for offloads what fits."""
    e = _load(default_model, gpu_layers="auto", backend=backend)
    try:
        assert (e.info.backend, e.info.gpu_layers) == expected[:2] and e.info.reason.startswith(expected[2])
    finally:
        e.close()


@pytest.mark.parametrize("text, value", [("auto", "auto"), ("all", -1), ("0", 0), ("12", 12)])
def test_the_option_parses(text, value):
    from edgechat.app.cli import build_parser
    assert build_parser().parse_args(["--gpu-layers", text]).gpu_layers == value
    assert build_parser().parse_args([]).gpu_layers == "auto"                  # the default


def test_a_bad_value_is_a_usage_error(capsys):
    from edgechat.app.cli import build_parser
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--gpu-layers", "most"])
    assert e.value.code == 2 and "--gpu-layers: 'most' is not a whole number" in capsys.readouterr().err
