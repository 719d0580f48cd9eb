"""``doctor``'s GPU part: llama.cpp's backends, its GPU devices and their free memory, what
``--gpu-layers auto`` does with the model, and where a real one-token run put its layers."""
from __future__ import annotations

from ..runtime.errors import EdgechatError

CPU_ONLY = "none that this llama.cpp can use (scripts/setup.sh builds it for CUDA or Metal where there is one)"


def gpu_report(dev: dict, path=None, model=None, ctx: int = 0, kv_type: str = "auto") -> dict:
    """The GPU facts of ``dev`` (``DeviceInfo.to_dict()``); with a model (``path`` and its
    ``local.describe`` entry): the auto decision at ``ctx`` and a one-token run with every layer asked
    on the GPU. Without a GPU device nothing is loaded (it could only say "CPU")."""
    report = {"backends": dev["llama_backends"], "devices": dev["gpus"], "auto": None, "run": None}
    if not dev["gpus"] or path is None or not (model and model.config):
        return report
    from ..runtime.gpu import GpuDevice, GpuFacts, auto_layers, need_bytes, offload_run
    need = need_bytes(model.size, model.config, ctx, kv_type)
    layers, why = auto_layers(need, GpuFacts(dev["llama_backends"], [GpuDevice(**g) for g in dev["gpus"]]))
    report["auto"] = {"layers": layers, "why": why}
    try:
        report["run"] = offload_run(path)
    except EdgechatError as e:
        report["run"] = {"error": str(e)}
    return report


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def gpu_rows(g: dict, offload: str) -> list[tuple[str, str]]:
    """doctor's text rows for a ``gpu_report``; ``offload`` is the "gpu offload" row when no run was made
    (what the build says: "no (llama.cpp was built for CPU only)")."""
    rows = [("gpu", "; ".join(f"{d['name']} {d['description']}: {_size(d['free'])} free of {_size(d['total'])}"
                              + (" (shared with the CPU)" if d["shared"] else "") for d in g["devices"]) or CPU_ONLY)]
    run = g["run"]
    if run is None:
        return rows + [("gpu offload", offload)]
    if "error" in run:
        return rows + [("gpu offload", f"the one-token run failed: {run['error']}")]
    where = ", ".join(f"{n} on {dev}" for dev, n in run["layers"].items()) or "no layer lines in llama.cpp's log"
    verdict = "yes" if run["on_gpu"] else "NO"
    rows.append(("gpu offload", f"{verdict}: layers {where} (a one-token run with --gpu-layers all, "
                                "llama.cpp's log)"))
    if g["auto"]:
        rows.append(("gpu-layers auto", g["auto"]["why"]))
    return rows
