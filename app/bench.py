"""Native vs llama.cpp on one GGUF, same threads, one run, alternating: prefill and decode tok/s, load
time, peak RSS, achieved GB/s. Each measurement runs in a fresh child process so RSS is its own."""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time

PREFILL_LENGTHS = (512, 1024)
DECODE_TOKENS = 128
DECODE_PROMPT = 32


def _measure(backend: str, path: str, threads: int, tokens: list[int], out) -> None:
    """Child process: load, validate, warm up, time prefill and decode; put a dict on ``out``."""
    import resource

    import numpy as np

    from edgechat.runtime.backends.llama_cpp import LlamaCppBackend
    from edgechat.runtime.backends.native import NativeBackend
    from edgechat.runtime.ggufload import read_model
    ctx = max(PREFILL_LENGTHS) + DECODE_TOKENS + 64
    t0 = time.perf_counter()
    if backend == "native":
        b = NativeBackend(read_model(path), ctx=ctx, sinks=4, threads=threads)
    else:
        b = LlamaCppBackend(path, ctx=ctx, sinks=4, threads=threads)
    res = {"backend": backend, "load_s": time.perf_counter() - t0}
    b.eval(tokens[:64])                                    # warm up
    for n in PREFILL_LENGTHS:
        b.reset()
        t = time.perf_counter()
        b.eval(tokens[:n])
        res[f"prefill{n}_tps"] = n / (time.perf_counter() - t)
    b.reset()
    logits = b.eval(tokens[:DECODE_PROMPT])
    generated = []
    t = time.perf_counter()
    for _ in range(DECODE_TOKENS):
        tok = int(np.argmax(logits))
        generated.append(tok)
        logits = b.eval([tok])
    res["decode_tps"] = DECODE_TOKENS / (time.perf_counter() - t)
    res["greedy"] = generated
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    b.close()
    out.put(res)


def _run_child(backend, path, threads, tokens) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_measure, args=(backend, path, threads, tokens, q))
    p.start()
    res = q.get()
    p.join()
    return res


def bench(model=None, threads: int = 2, runs: int = 3) -> dict:
    """Alternate native and llama.cpp ``runs`` times each; medians and native/llama.cpp ratios."""
    from pydoc_data.topics import topics

    from ..models.resolve import resolve
    from ..runtime.tokenizer import Tokenizer
    path = str(resolve(model))
    tok = Tokenizer(path)
    text = "\n\n".join(topics[k] for k in sorted(topics))
    tokens = [tok.bos_id] + tok.tokenize(text[:20000])[: max(PREFILL_LENGTHS) - 1]
    results = {"native": [], "llama.cpp": []}
    for _ in range(runs):
        for backend in results:
            results[backend].append(_run_child(backend, path, threads, tokens))
    keys = ["load_s"] + [f"prefill{n}_tps" for n in PREFILL_LENGTHS] + ["decode_tps", "peak_rss_mib"]
    med = {b: {k: statistics.median(r[k] for r in rs) for k in keys} for b, rs in results.items()}
    import os
    model_bytes = os.path.getsize(path)
    for b in med:
        med[b]["decode_gbps"] = med[b]["decode_tps"] * model_bytes / 1e9
    ratios = {k: med["native"][k] / med["llama.cpp"][k] for k in keys + ["decode_gbps"]}
    g_n, g_l = results["native"][0]["greedy"], results["llama.cpp"][0]["greedy"]
    agree = next((i for i, (a, b) in enumerate(zip(g_n, g_l)) if a != b), len(g_n))
    return {"model": path, "threads": threads, "runs": runs, "median": med, "ratio_native_over_llama_cpp": ratios,
            "greedy_tokens_identical_prefix": agree, "decode_tokens": DECODE_TOKENS}


def _table(r: dict) -> str:
    rows = [("load s", "load_s"), ("prefill 512 tok/s", "prefill512_tps"), ("prefill 1024 tok/s", "prefill1024_tps"),
            ("decode tok/s", "decode_tps"), ("decode GB/s", "decode_gbps"), ("peak RSS MiB", "peak_rss_mib")]
    m, ra = r["median"], r["ratio_native_over_llama_cpp"]
    lines = [f"model {r['model']}  threads {r['threads']}  runs {r['runs']} (medians)",
             f"{'':22}{'native':>12}{'llama.cpp':>12}{'ratio':>9}"]
    for label, k in rows:
        lines.append(f"{label:22}{m['native'][k]:12.2f}{m['llama.cpp'][k]:12.2f}{ra[k]:9.3f}")
    lines.append(f"greedy decode: first {r['greedy_tokens_identical_prefix']} of {r['decode_tokens']} tokens identical")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="edgechat bench", description=__doc__)
    p.add_argument("-m", "--model", help="model name or path (default: the packaged model)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = bench(args.model, args.threads, args.runs)
    print(json.dumps(r["median"] | {"ratios": r["ratio_native_over_llama_cpp"],
                                    "greedy_identical_prefix": r["greedy_tokens_identical_prefix"]}, indent=1)
          if args.json else _table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
