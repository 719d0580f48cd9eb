"""Native vs llama.cpp, side by side, on a matrix of models x weight types, same threads.

Each row is one GGUF: a --shape preset (the tensor shapes of a real model, synthetic weights, see
below) in each --type, or a file given with -m. Per row and run, native and llama.cpp each run in a
fresh child process (so peak RSS is its own), alternating: load, validate (greedy tokens compared),
warm up, then prefill at each --prefill length from an empty cache, and greedy decode of
--decode-tokens tokens with each --decode-depths prompt tokens already in the cache. The table gives
medians over --runs and native / llama.cpp ratios; achieved GB/s is the weight bytes one decoded
token reads (the file's tensors, less the unread embedding table when the output is untied) times
decode tok/s at the first depth; the DRAM read limit is a multi-threaded read of a 1 GiB buffer
with the same thread count. llama.cpp runs as its users get it: weight repacking (extra buffer
types) on, except with a llama.cpp built with AMX on an AMX CPU, where edgechat turns it off (the
header says which, and what llama.cpp was built with).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import statistics
import sys
import time

from ..runtime.memory import KV_CHOICES
from . import bench_gpu
from .bench_shapes import DEFAULT_SHAPE, DEFAULT_TYPE, PRESETS, SHAPES, TYPES
from .bench_table import BANDWIDTH_MIB, table  # noqa: F401  (bench.table: the text table of a result)

DEFAULT_PREFILL = (512, 2048)
DEFAULT_DEPTHS = (0, 4096)
DEFAULT_DECODE_TOKENS = 64
DEFAULT_SHAPE_TYPE = "Q4_K_M"       # synthetic presets when --type is not given
WARMUP_TOKENS = 32
SHAPES_HELP = "; ".join(f"{k} ({s.model}: {s.cfg.arch}, {s.cfg.n_layer} layers, n_embd {s.cfg.n_embd}, "
                        f"{s.cfg.n_head}/{s.cfg.n_head_kv} heads x {s.cfg.head_dim}, n_ff {s.cfg.n_ff})"
                        for k, s in SHAPES.items())


# ---- options ------------------------------------------------------------------------------------

def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of whole numbers") from None
    if not values or values[0] < 0:
        raise argparse.ArgumentTypeError(f"'{text}': give one or more numbers >= 0")
    return values


def _names(choices):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{', '.join(bad) or repr(text)}: choose from {', '.join(choices)}")
        return names
    return parse




def add_arguments(p: argparse.ArgumentParser) -> None:
    """bench's options, for the ``edgechat bench`` subparser and scripts/bench.py. Options the top-level
    parser also has (-m, --threads, --json) default to SUPPRESS so ``edgechat --threads 2 bench`` works."""
    from .argtypes import int_at_least as _int_at_least
    from .options import gpu_layers
    S = argparse.SUPPRESS
    p.add_argument("-m", "--model", default=S, help="a model name or .gguf path, run as it is (one row)")
    p.add_argument("--shape", type=_names(PRESETS), metavar="NAME[,NAME]",
                   help=f"presets: {DEFAULT_SHAPE} (the packaged default model, the real file); {SHAPES_HELP}. "
                   "Synthetic presets have seeded random weights and the default model's tokenizer, so "
                   "their vocab is 49152 (not the real model's; gemma3-1b: the real Gemma 3 tokenizer, "
                   "262,144, from scripts/fetch_gemma3.sh's file); written once into $EDGECHAT_BENCH_CACHE "
                   f"(default: the user cache dir's edgechat/bench-ggufs). Default: {DEFAULT_SHAPE} "
                   "unless -m is given")
    p.add_argument("--type", type=_names(TYPES), metavar="TYPE[,TYPE]",
                   help=f"weight types for --shape presets ({', '.join(TYPES)}), made by llama.cpp's "
                   f"quantizer. Default: {DEFAULT_TYPE} for {DEFAULT_SHAPE}, {DEFAULT_SHAPE_TYPE} for the others")
    p.add_argument("--layers", type=_int_at_least(1), help="synthetic presets: this many layers instead "
                   "of the real count (quick runs)")
    p.add_argument("--threads", type=_int_at_least(1), default=S, help="compute threads (default: physical cores)")
    p.add_argument("--runs", type=_int_at_least(1), default=3, help="runs per row (default: 3); the table gives medians")
    p.add_argument("--prefill", type=_int_list, default=DEFAULT_PREFILL, metavar="N[,N]",
                   help="prefill lengths, each from an empty cache (default: 512,2048)")
    p.add_argument("--decode-depths", type=_int_list, default=DEFAULT_DEPTHS, metavar="N[,N]",
                   help="tokens already in the cache when decode starts (default: 0,4096)")
    p.add_argument("--decode-tokens", type=_int_at_least(1), default=DEFAULT_DECODE_TOKENS,
                   help=f"greedy tokens timed per decode (default: {DEFAULT_DECODE_TOKENS})")
    p.add_argument("--json", action="store_true", default=S, help="print the results as one JSON object")
    p.add_argument("--gpu-layers", type=gpu_layers, default=S, metavar="all", help="all: a GPU column, "
                   "llama.cpp with every layer on the GPU (prefill and decode tok/s, VRAM) beside the CPU ones")
    g = p.add_argument_group("speculative decoding (bench --speculative)")
    g.add_argument("--speculative", dest="spec_bench", action="store_true",
                   help="instead of the matrix: decode tok/s with and without speculation (prompt lookup, "
                        "or --draft) on a code edit, a rewrite, a quote and free chat, with -m or the default "
                        "model; greedy texts must be identical")
    g.add_argument("--draft", default=S, metavar="MODEL", help="with --speculative: a draft model")
    g.add_argument("--spec-tokens", type=_int_at_least(1), default=256, help="with --speculative: "
                   "tokens per reply (default: 256)")
    p.add_argument("--kv-type", type=_names(KV_CHOICES), default=S, metavar="KV[,KV]",
                   help="KV cache rows (default auto: each engine's own default, as its users get it: q8_0 "
                   "native, f16 llama.cpp; f16 or q8_0: that type on both engines). Several (f16,q8_0): a "
                   "row per type for each file, their runs interleaved, and a line comparing each engine's "
                   "decode across them")


# ---- one measurement (child process) ------------------------------------------------------------

def _load(backend: str, path: str, threads: int, ctx: int, kv_type: str = "auto"):
    if backend == bench_gpu.GPU:
        return bench_gpu.load(path, threads, ctx, kv_type)
    from ..runtime.backends import make_backend
    from ..runtime.ggufload import read_model
    from ..runtime.memory import resolve_kv_type
    mf = read_model(path) if backend == "native" else None
    return make_backend(backend, mf, path, ctx=ctx, threads=threads, kv_type=resolve_kv_type(kv_type, backend))


def _decode(b, logits, n: int) -> tuple[float, list[int]]:
    """Greedy decode of ``n`` tokens from ``logits``: (tok/s, tokens)."""
    import numpy as np
    out = []
    t = time.perf_counter()
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        logits = b.eval(out[-1:])
    return n / (time.perf_counter() - t), out


def _measure(b, tokens: list[int], prefill: tuple[int, ...], depths: tuple[int, ...], n_decode: int) -> dict:
    """Time prefills and decodes on a loaded backend. Depths below the longest prefill run first from
    their own fill; the others extend the cache the longest prefill left (no prompt is fed twice)."""
    res: dict = {}
    b.eval(tokens[:WARMUP_TOKENS])
    _decode(b, b.eval(tokens[WARMUP_TOKENS:WARMUP_TOKENS + 1]), 2)        # warm up
    for d in [d for d in depths if d < max(prefill)]:
        b.reset()
        res[f"decode{d}_tps"], res[f"greedy{d}"] = _decode(b, b.eval(tokens[:max(d, 1)]), n_decode)
    filled, logits = 0, None
    for n in prefill:
        b.reset()
        t = time.perf_counter()
        logits = b.eval(tokens[:n])
        res[f"prefill{n}_tps"] = n / (time.perf_counter() - t)
        filled = n
    for i, d in enumerate(d for d in depths if d >= max(prefill)):
        if i > 0:                                       # the cache holds decoded tokens now
            b.reset()
            filled = 0
        if d > filled:
            logits = b.eval(tokens[filled:d])
        res[f"decode{d}_tps"], res[f"greedy{d}"] = _decode(b, logits, n_decode)
    return res


def _info_dict(info) -> dict:
    """A backend's info (a BackendInfo dataclass or a dict) as one flat dict, its ``extra`` merged in."""
    import dataclasses
    d = dataclasses.asdict(info) if dataclasses.is_dataclass(info) else dict(info)
    return {**d.pop("extra", {}), **d}


def _peak_rss_mib() -> float:
    """This process's peak RSS. Linux: VmHWM, not ru_maxrss, which keeps the parent's peak across the
    fork + exec that started this child (the 1 GiB bandwidth buffer, say)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 1024    # bytes on macOS, KiB elsewhere


def _child(backend: str, path: str, threads: int, tokens: list[int], plan: dict, out) -> None:
    """Child process: load, measure, put a dict (or {"error": ...}) on ``out``."""
    try:
        ctx = max(max(plan["prefill"]), max(plan["depths"])) + plan["decode_tokens"] + WARMUP_TOKENS + 8
        t0 = time.perf_counter()
        b = _load(backend, path, threads, ctx, plan.get("kv_type", "auto"))
        res = {"load_s": time.perf_counter() - t0, "info": _info_dict(b.info)}
        res |= _measure(b, tokens, plan["prefill"], plan["depths"], plan["decode_tokens"])
        res["peak_rss_mib"] = _peak_rss_mib()
        b.close()
    except Exception as e:      # reported in the table, the other rows go on
        res = {"error": f"{type(e).__name__}: {e}"}
    out.put(res)


def _run_child(backend: str, path: str, threads: int, tokens: list[int], plan: dict) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(backend, path, threads, tokens, plan, q))
    p.start()
    while True:
        try:
            res = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive():
                res = {"error": f"the {backend} process died (exit code {p.exitcode})"}
                break
    p.join()
    return res


# ---- the matrix ---------------------------------------------------------------------------------

def _rows(args) -> list[dict]:
    """[{"model", "type", "path"}] for -m and every --shape x --type (files built if missing)."""
    from ..models.resolve import resolve
    from .bench_shapes import shape_gguf
    rows = []
    model = getattr(args, "model", None)
    if model:
        path = resolve(model)
        rows.append({"model": os.path.basename(path), "type": None, "path": str(path)})
    for name in args.shape or (() if model else (DEFAULT_SHAPE,)):
        default_types = (DEFAULT_TYPE,) if name == DEFAULT_SHAPE else (DEFAULT_SHAPE_TYPE,)
        for ftype in args.type or default_types:
            path = shape_gguf(name, ftype, layers=args.layers if name != DEFAULT_SHAPE else None)
            label = name + (f" L{args.layers}" if args.layers and name != DEFAULT_SHAPE else "")
            rows.append({"model": label, "type": ftype, "path": str(path)})
    return rows


def _prompt_tokens(path: str, n: int) -> list[int]:
    """BOS + ``n`` - 1 tokens of English prose (Python's help topics), repeated if short."""
    from pydoc_data.topics import topics

    from ..runtime.tokenizer import Tokenizer
    tok = Tokenizer(path)
    text = "\n\n".join(topics[k] for k in sorted(topics))
    body = tok.tokenize(text[: 8 * n + 1000])
    while len(body) < n:
        body += body
    ids = [tok.bos_id] + body[: n - 1]
    tok.close()
    return ids


def _weight_bytes_per_token(path: str) -> tuple[int, str, str]:
    """(bytes one decoded token reads from the weights, file type names, arch)."""
    from ..runtime.ggufload import read_model
    m = read_model(path)
    names = {t.name for t in m.tensors}
    skip = "token_embd.weight" if "output.weight" in names else None   # untied: one row of it is read
    return sum(t.data.nbytes for t in m.tensors if t.name != skip), "+".join(m.types), m.arch


def _median_row(samples: list[dict], plan: dict, weight_bytes: int) -> dict | None:
    ok = [s for s in samples if "error" not in s]
    if not ok:
        return None
    keys = ["load_s", *(f"prefill{n}_tps" for n in plan["prefill"]),
            *(f"decode{d}_tps" for d in plan["depths"]), "peak_rss_mib"]
    med = {k: statistics.median(s[k] for s in ok) for k in keys}
    med["decode_gbps"] = med[f"decode{plan['depths'][0]}_tps"] * weight_bytes / 1e9
    return med


def _identical_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _bench_file(row: dict, args, plan: dict, threads: int) -> list[dict]:
    """One file's rows, one per KV type: every run measures each KV type in turn (so a comparison
    between them is not skewed by the machine drifting), each with both engines, alternating who goes
    first."""
    path = row["path"]
    tokens = _prompt_tokens(path, max(max(plan["prefill"]), max(plan["depths"]), WARMUP_TOKENS + 1))
    row["weight_bytes_per_token"], row["file_types"], row["arch"] = _weight_bytes_per_token(path)
    kvs = plan["kv_types"]
    engines = bench_gpu.engines(plan)
    samples = {kv: {b: [] for b in engines} for kv in kvs}
    for run in range(args.runs):
        for kv in kvs if run % 2 == 0 else kvs[::-1]:
            for b in engines if run % 2 == 0 else engines[::-1]:     # alternate who goes first
                samples[kv][b].append(_run_child(b, path, threads, tokens, plan | {"kv_type": kv}))
    return [_row_result(dict(row, kv_type=kv), samples[kv], plan) for kv in kvs]


def _row_result(row: dict, samples: dict, plan: dict) -> dict:
    med = {b: _median_row(samples[b], plan, row["weight_bytes_per_token"]) for b in samples}
    row["median"] = med
    row["ratio"] = {k: med["native"][k] / med["llama.cpp"][k] for k in med["native"]} \
        if med["native"] and med["llama.cpp"] else None
    row["errors"] = {b: s["error"] for b in samples for s in samples[b] if "error" in s}
    first = {b: next((s for s in samples[b] if "error" not in s), None) for b in samples}
    row["greedy_identical"] = {str(d): _identical_prefix(first["native"][f"greedy{d}"], first["llama.cpp"][f"greedy{d}"])
                               for d in plan["depths"]} if first["native"] and first["llama.cpp"] else None
    row["info"] = {b: first[b]["info"] for b in samples if first[b]}
    return row


def _cpu_name() -> str:
    from ..runtime.device import cpu_isa
    return cpu_isa()[0] or "unknown CPU"


def bench(args) -> dict:
    """Run the matrix; a JSON-able dict with the settings, the machine facts and one entry per row."""
    import psutil

    from ..runtime.kernels import native_isa, read_bandwidth
    threads = getattr(args, "threads", None) or psutil.cpu_count(logical=False) or os.cpu_count() or 1
    kv = getattr(args, "kv_type", None) or ("auto",)
    kv_types = list(dict.fromkeys((kv,) if isinstance(kv, str) else kv))  # the top-level --kv-type: one
    plan = {"prefill": list(args.prefill), "depths": list(args.decode_depths), "decode_tokens": args.decode_tokens,
            "kv_types": kv_types, "gpu": bench_gpu.wanted(args)}
    rows = _rows(args)
    dram = read_bandwidth(threads, BANDWIDTH_MIB)
    rows = [kv_row for r in rows for kv_row in _bench_file(r, args, plan, threads)]
    isas = sorted({r["info"]["native"]["isa"] for r in rows if "native" in r["info"]})
    llama = next((r["info"]["llama.cpp"] for r in rows if "llama.cpp" in r["info"]), {})
    return {"cpu": _cpu_name(), "threads": threads, "native_isa": ",".join(isas) or native_isa(),
            "edgechat_isa_env": os.environ.get("EDGECHAT_ISA"),
            "llama_cpp": {"version": llama.get("llama_cpp"), "build": llama.get("build"),
                          "weight_repacking": llama.get("extra_bufts")},
            "dram_read_gbps": dram, "runs": args.runs, "decode_tokens": args.decode_tokens,
            "prefill": plan["prefill"], "decode_depths": plan["depths"], "kv_type": ",".join(kv_types),
            "gpu": bench_gpu.describe() if plan["gpu"] else None, "rows": rows}


def run(args) -> int:
    """``edgechat bench`` after parsing: print the table (or JSON with --json)."""
    if getattr(args, "spec_bench", False):
        from . import bench_spec
        return bench_spec.run(args)
    if getattr(args, "model", None) and args.type:
        print("edgechat bench: --type applies to --shape presets; a -m file runs as it is", file=sys.stderr)
        return 2
    if min(args.prefill) < 1:
        print("edgechat bench: prefill lengths must be >= 1", file=sys.stderr)
        return 2
    if args.layers and not args.shape:
        print("edgechat bench: --layers applies to synthetic --shape presets", file=sys.stderr)
        return 2
    why = bench_gpu.refusal(args)
    if why:
        print(f"edgechat bench: {why}", file=sys.stderr)
        return 2
    r = bench(args)
    print(json.dumps(r, indent=1) if getattr(args, "json", False) else table(r))
    return 0


def main(argv=None) -> int:
    """scripts/bench.py: the same options as ``edgechat bench``."""
    p = argparse.ArgumentParser(prog="scripts/bench.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
