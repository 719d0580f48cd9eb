"""``edgechat bench``'s text table: a row per model x type, each metric as native, llama.cpp and their
ratio (and, with ``--gpu-layers all``, llama.cpp on the GPU and its VRAM), under a header with the machine
facts the figures depend on."""
from __future__ import annotations

from ..runtime.info import ENGINES
from .bench_gpu import GPU

BANDWIDTH_MIB = 1024      # the DRAM read probe's buffer (bench runs it; the header names it)


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _columns(r: dict) -> list[tuple[str, str]]:
    return ([(f"prefill {n} tok/s", f"prefill{n}_tps") for n in r["prefill"]]
            + [(f"decode@{d} tok/s", f"decode{d}_tps") for d in r["decode_depths"]]
            + [(f"decode@{r['decode_depths'][0]} GB/s", "decode_gbps"), ("load s", "load_s"),
               ("peak RSS MiB", "peak_rss_mib")])


def _gpu_lines(r: dict) -> list[str]:
    if not r.get("gpu"):
        return []
    return [f"gpu        {r['gpu']}: llama.cpp with every layer there (--gpu-layers all), the gpu column; "
            "VRAM = the weights, KV cache and compute buffers llama.cpp's log puts on it"]


def _header(r: dict) -> list[str]:
    repack = r["llama_cpp"]["weight_repacking"]
    repack = ("on (extra buffer types)" if repack else "OFF: AMX CPU, edgechat turns llama.cpp's extra buffer "
              "types off (its AMX path crashes), so llama.cpp runs slower here than on other CPUs (README: "
              "a build without AMX via LLAMA_CPP_LIB_PATH keeps them on)"
              if repack is False else "unknown")
    forced = f" (forced by EDGECHAT_ISA={r['edgechat_isa_env']})" if r["edgechat_isa_env"] else ""
    return [f"cpu        {r['cpu']}, {r['threads']} threads",
            f"native     kernel table {r['native_isa']}{forced}",
            f"llama.cpp  {r['llama_cpp']['version']} [{r['llama_cpp'].get('build') or '?'}], weight repacking {repack}",
            f"DRAM read  {r['dram_read_gbps']:.1f} GB/s ({r['threads']} threads, {BANDWIDTH_MIB} MiB buffer)",
            f"KV cache   {_kv_header(r.get('kv_type', 'f16'))}",
            f"medians of {r['runs']} run(s), each in a fresh process; decode {r['decode_tokens']} greedy tokens; "
            "ratio = native / llama.cpp (higher is better for tok/s and GB/s, lower for load and RSS)",
            "load s     the engine's constructor: native repacks its matmul weights there; llama.cpp maps the "
            "file and pages in the types it does not repack on first use (in its untimed warm-up)"] + _gpu_lines(r)


def _kv_header(kv: str) -> str:
    """The header's KV line: the types, and what auto runs on each engine."""
    from ..runtime.memory import AUTO_KV_TYPE
    notes = ["a row per type"] if "," in kv else []
    if "auto" in kv.split(","):
        notes.append("auto: each engine's default, " + ", ".join(f"{b} {t}" for b, t in AUTO_KV_TYPE.items()))
    return f"{kv} ({'; '.join(notes) or 'both engines'})"


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters (an ellipsis marks the cut), so the columns stay aligned."""
    return text if len(text) <= width else text[:width - 1] + "…"


def table(r: dict) -> str:
    """The matrix as one text table: a row per model x type, each metric as native, llama.cpp, ratio
    (and gpu: llama.cpp with every layer on the GPU, with a VRAM column)."""
    cols, gpu = _columns(r), bool(r.get("gpu"))
    w = 7
    group = (3 if gpu else 2) * w + 7
    vram = f" | {'VRAM MiB':>8}" if gpu else ""
    head1 = f"{'model':<18}{'type':<8}" + "".join(f" | {label:^{group}}" for label, _ in cols) + vram + " | greedy same"
    head2 = f"{'':<26}" + "".join(f" | {'native':>{w}}{'llama':>{w}}{'ratio':>7}" + (f"{'gpu':>{w}}" if gpu else "")
                                  for _ in cols) + (f" | {'gpu':>8}" if gpu else "") + " |"
    lines = _header(r) + ["", head1, head2, "-" * len(head1)]
    for row in r["rows"]:
        med, ratio = row["median"], row["ratio"] or {}
        cells = ""
        for _, k in cols:
            n, l = (med[b][k] if med[b] else None for b in ENGINES)
            rt = f"{ratio[k]:.2f}x" if k in ratio else "-"
            g = f"{_num(med[GPU][k] if med.get(GPU) else None):>{w}}" if gpu else ""
            cells += f" | {_num(n):>{w}}{_num(l):>{w}}{rt:>7}{g}"
        if gpu:
            cells += f" | {_num(row['info'].get(GPU, {}).get('vram_mib')):>8}"
        same = row["greedy_identical"]
        same = ",".join(str(v) for v in same.values()) + f"/{r['decode_tokens']}" if same else "-"
        label = row["model"] + (f" {row['kv_type']}" if "," in r.get("kv_type", "") else "")
        name, kind = _fit(label, 17), _fit(row["type"] or row["file_types"], 7)
        lines.append(f"{name:<18}{kind:<8}{cells} | {same}")
        lines += [f"  {b} failed: {e}" for b, e in row["errors"].items()]
    return "\n".join(lines + _kv_lines(r))


def _kv_lines(r: dict) -> list[str]:
    """With several KV types: each engine's decode tok/s with every other type / with the first, per file."""
    kvs = r.get("kv_type", "f16").split(",")
    if len(kvs) < 2:
        return []
    out = ["", f"decode tok/s by KV type, each engine against itself (> 1: faster than {kvs[0]}):"]
    by_file: dict[tuple, dict] = {}
    for row in r["rows"]:
        by_file.setdefault((row["model"], row["type"] or row["file_types"]), {})[row["kv_type"]] = row["median"]
    for (model, kind), meds in by_file.items():
        base = meds.get(kvs[0])
        for kv in kvs[1:]:
            cells = []
            for b in ENGINES:
                if not (base and base[b] and meds.get(kv) and meds[kv][b]):
                    cells.append(f"{b} -")
                    continue
                cells.append(f"{b} " + ", ".join(f"@{d} {meds[kv][b][f'decode{d}_tps'] / base[b][f'decode{d}_tps']:.2f}x"
                                                 for d in r["decode_depths"]))
            out.append(f"  {model} {kind}  {kv} / {kvs[0]}:  " + ";  ".join(cells))
    return out
