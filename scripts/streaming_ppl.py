#!/usr/bin/env python3
"""Streaming perplexity: a long text through the sink-ring cache, per 1k-token segment and overall.

    .venv/bin/python scripts/streaming_ppl.py [--tokens 20000] [--ctx 512] [--sinks 4]
        [--backends native,llama.cpp] [--threads N] [--chunk 512] [--kv-type f16|q8_0[,..]] [--json]

The text is natural_text of the tests (Python's own docs, pydoc_data.topics), BOS first. Each run feeds
it in evals of --chunk tokens with all logits and scores every next token. Runs, for each backend:

- ``sinks=S``: the StreamingLLM cache, capacity --ctx, S pinned sinks (llama.cpp: evict_chunk=1, i.e.
  seq_rm + seq_add per evicted token, the exact policy);
- ``window``: the same capacity with 0 sinks (plain window attention: the first tokens get evicted);
- ``dense``: no eviction at all, a cache as long as the text. Only where it fits the model's trained
  context (SmolLM2: 8192), so dense covers the first min(--tokens, n_ctx_train) tokens only; its segments
  after that are blank and its "overall" is over that prefix (the "first N" row compares all runs on it).

``--kv-type q8_0``: the runs use a q8_0 KV cache (native: int8 rows + an fp16 scale per 32 values;
llama.cpp: type_k/type_v q8_0 with flash attention and its own shift); the f16 sinks run of each backend
is added as the reference, and a last block compares q8_0 with f16 and native with llama.cpp.

Rows: 1k-token segments (the token being predicted), then overall, overall from the first eviction on
(tokens >= ctx), and the dense range. llama.cpp with evict_chunk=1 decodes one token per call once the
cache is full, so it takes minutes on 20k tokens (--backends native for a quick look, --llama-runs sinks
for the comparison that matters: native and llama.cpp with the same sink policy).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from edgechat.runtime.backends import make_backend

ROW_BLOCK = 128       # logits rows turned into log-probabilities at a time (float64 scratch)


def natural_ids(tok, n: int) -> list[int]:
    from pydoc_data.topics import topics
    text = "\n\n".join(topics[k] for k in sorted(topics))
    ids = [tok.bos_id] + tok.tokenize(text)[:n - 1]
    if len(ids) < n:
        sys.exit(f"natural_text has only {len(ids)} tokens; ask for fewer with --tokens")
    return ids


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log p(target) of each row of ``logits`` (rows, vocab), in float64."""
    out = np.empty(len(targets))
    for r in range(0, len(targets), ROW_BLOCK):
        lg = logits[r:r + ROW_BLOCK].astype(np.float64)
        mx = lg.max(axis=1)
        lse = mx + np.log(np.exp(lg - mx[:, None]).sum(axis=1))
        out[r:r + ROW_BLOCK] = lse - lg[np.arange(len(lg)), targets[r:r + ROW_BLOCK]]
    return out


def plans(args, kind: str, ids: list[int], n_dense: int) -> list[tuple]:
    """(run name, kv type, ctx, sinks, tokens) of one backend: each asked kv type, plus the f16 sinks
    run as the reference when f16 was not asked for."""
    out = []
    kv_types = args.kv_type if "f16" in args.kv_type else ["f16"] + args.kv_type
    for kv in kv_types:
        plan = [("sinks", f"sinks={args.sinks}", args.ctx, args.sinks, ids), ("window", "window", args.ctx, 0, ids)]
        if not args.no_dense:
            plan.append(("dense", "dense", n_dense, min(4, n_dense - 1), ids[:n_dense]))
        wanted = args.llama_runs if kind == "llama.cpp" else args.native_runs
        if kv not in args.kv_type:
            wanted = ("sinks",)
        out += [(s[1], kv) + s[2:] for s in plan if s[0] in wanted]
    return out


def stream_nll(backend, ids: list[int], chunk: int, label: str) -> np.ndarray:
    """nll[i] = -log p(ids[i + 1] | what the cache holds after ids[:i + 1]); len(ids) - 1 values."""
    ids_a = np.asarray(ids)
    nll = np.empty(len(ids) - 1)
    tty = sys.stderr.isatty()
    t0 = time.perf_counter()
    for c0 in range(0, len(ids), chunk):
        c1 = min(c0 + chunk, len(ids))
        lg = backend.eval(ids[c0:c1], all_logits=True)
        rows = min(c1, len(ids) - 1) - c0              # the very last row predicts nothing
        nll[c0:c0 + rows] = token_nll(lg[:rows], ids_a[c0 + 1:c0 + 1 + rows])
        done = c1 / len(ids)
        el = time.perf_counter() - t0
        if tty or c1 == len(ids) or c1 * 10 // len(ids) != c0 * 10 // len(ids):
            print(f"\r  {label}: {c1}/{len(ids)} tokens, {el:.0f}s, eta {el / done - el:.0f}s   ",
                  end="" if tty else "\n", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    return nll


def ppl(nll: np.ndarray) -> float:
    return float(math.exp(nll.mean())) if len(nll) else float("nan")


def run(args) -> dict:
    from edgechat.models.resolve import resolve
    from edgechat.runtime.ggufload import read_model
    from edgechat.runtime.tokenizer import Tokenizer
    path = str(resolve(args.model))
    mf = read_model(path)
    tok = Tokenizer(path)
    ids = natural_ids(tok, args.tokens)
    n_train = int(mf.config.get("n_ctx_train", 0)) or len(ids)
    n_dense = min(len(ids), n_train, args.dense_max or len(ids))
    runs = []
    for kind in args.backends:
        for name, kv, ctx, sinks, toks in plans(args, kind, ids, n_dense):
            name = name if kv == "f16" else f"{name} {kv}"
            label = f"{kind} {name}"
            b = make_backend(kind, mf, path, ctx=ctx, sinks=sinks, threads=args.threads, evict_chunk=1, kv_type=kv)
            t = time.perf_counter()
            nll = stream_nll(b, toks, args.chunk, label)
            secs = time.perf_counter() - t
            info = b.cache_info()
            b.close()
            runs.append({"backend": kind, "run": name, "kv_type": kv, "ctx": ctx, "sinks": sinks, "tokens": len(toks),
                         "seconds": round(secs, 2), "evicted": info.evicted, "nll": nll})
    seg = args.segment
    n_pred = len(ids) - 1                                   # predicted tokens: ids[1:]
    bounds = [(s, min(s + seg, n_pred)) for s in range(0, n_pred, seg)]
    out = {"model": path, "tokens": len(ids), "ctx": args.ctx, "sinks": args.sinks, "segment": seg,
           "dense_tokens": n_dense, "n_ctx_train": n_train, "threads": args.threads, "chunk": args.chunk,
           "runs": []}
    for r in runs:
        nll = r.pop("nll")
        r["segments"] = [ppl(nll[a:b]) if b <= len(nll) else None for a, b in bounds]
        r["overall"] = ppl(nll)
        r["after_first_eviction"] = ppl(nll[args.ctx - 1:]) if not r["run"].startswith("dense") else None
        r["dense_range"] = ppl(nll[:n_dense - 1])
        out["runs"].append(r)
    out["segment_bounds"] = [[a + 1, b + 1] for a, b in bounds]   # token indices predicted, [a, b)
    out["kv_compare"] = kv_compare(out["runs"], args.sinks)
    return out


def kv_compare(runs: list[dict], sinks: int) -> list[str]:
    """The sinks runs' overall perplexity: each quantized cache against the same backend's f16, and
    native against llama.cpp at the same kv type (relative differences)."""
    sink = {(r["backend"], r["kv_type"]): r["overall"] for r in runs if r["run"].startswith(f"sinks={sinks}")}
    lines = []
    for (be, kv), p in sorted(sink.items()):
        if kv != "f16" and (be, "f16") in sink:
            f = sink[(be, "f16")]
            lines.append(f"{be} sinks {kv} vs f16: {p:.4f} vs {f:.4f} ({(p - f) / f:+.2%})")
        if be == "native" and ("llama.cpp", kv) in sink:
            q = sink[("llama.cpp", kv)]
            lines.append(f"native vs llama.cpp sinks {kv}: {p:.4f} vs {q:.4f} ({(p - q) / q:+.2%})")
    return lines


def fmt(x) -> str:
    return f"{x:10.3f}" if isinstance(x, float) and math.isfinite(x) else f"{'-':>10}"


def table(r: dict) -> str:
    runs = r["runs"]
    head = [f"{x['backend']} {x['run']}" for x in runs]
    W = max(12, *(len(h) + 2 for h in head))       # column width
    lines = [f"model {r['model']}",
             (f"{r['tokens']} tokens of natural_text, ctx {r['ctx']}, sinks {r['sinks']}, eval chunks of "
              f"{r['chunk']}, threads {r['threads']}; dense = no eviction, first {r['dense_tokens']} tokens "
              f"only (trained context {r['n_ctx_train']})"),
             f"{'tokens':>14}" + "".join(f"{h:>{W}}" for h in head)]
    for (a, b), i in zip(r["segment_bounds"], range(len(r["segment_bounds"]))):
        lines.append(f"{a:>6}-{b - 1:<7}" + "".join(f"{fmt(x['segments'][i]):>{W}}" for x in runs))
    lines.append(f"{'overall':>14}" + "".join(f"{fmt(x['overall']):>{W}}" for x in runs))
    lines.append(f"{'>= ctx':>14}" + "".join(f"{fmt(x['after_first_eviction']):>{W}}" for x in runs))
    if r["dense_tokens"] < r["tokens"]:
        lines.append(f"{'first ' + str(r['dense_tokens']):>14}" + "".join(f"{fmt(x['dense_range']):>{W}}" for x in runs))
    lines.append(f"{'evicted':>14}" + "".join(f"{x['evicted']:>{W}}" for x in runs))
    lines.append(f"{'seconds':>14}" + "".join(f"{x['seconds']:>{W}.1f}" for x in runs))
    return "\n".join(lines + r.get("kv_compare", []))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", help="model name or path (default: the packaged model)")
    p.add_argument("--tokens", type=int, default=20000, help="tokens of natural_text to stream (default 20000)")
    p.add_argument("--ctx", type=int, default=512, help="cache capacity for the sink and window runs (default 512)")
    p.add_argument("--sinks", type=int, default=4)
    p.add_argument("--segment", type=int, default=1000, help="tokens per reported segment (default 1000)")
    p.add_argument("--backends", default="native,llama.cpp", help="comma-separated: native, llama.cpp")
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--chunk", type=int, default=512, help="tokens per eval call (default 512)")
    p.add_argument("--no-dense", action="store_true", help="skip the dense (no eviction) runs")
    p.add_argument("--dense-max", type=int, default=0, help="cap the dense run's length (default: trained context)")
    p.add_argument("--llama-runs", default="sinks,window,dense",
                   help="the llama.cpp runs (comma-separated: sinks, window, dense); llama.cpp with "
                        "evict_chunk=1 is slow, and its sinks run is the one the native engine must match")
    p.add_argument("--native-runs", default="sinks,window,dense", help="the native runs (as --llama-runs)")
    p.add_argument("--kv-type", default="f16", help="KV cache types, comma-separated: f16, q8_0 (q8_0 adds the f16 "
                                                    "sinks runs as the reference)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.kv_type = [k.strip() for k in args.kv_type.split(",") if k.strip()]
    if not args.kv_type or any(k not in ("f16", "q8_0") for k in args.kv_type):
        p.error("--kv-type takes f16 and/or q8_0")
    args.llama_runs = [r.strip() for r in args.llama_runs.split(",") if r.strip()]
    args.native_runs = [r.strip() for r in args.native_runs.split(",") if r.strip()]
    if any(r not in ("sinks", "window", "dense") for r in args.llama_runs + args.native_runs):
        p.error("--llama-runs and --native-runs take sinks, window and/or dense")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if any(b not in ("native", "llama.cpp") for b in args.backends):
        p.error("--backends takes native and/or llama.cpp")
    if not 0 <= args.sinks < args.ctx or args.tokens < 2:
        p.error("need 0 <= --sinks < --ctx and --tokens >= 2")
    if args.threads is None:
        from edgechat.runtime.loader import default_threads
        args.threads = default_threads()
    r = run(args)
    print(json.dumps(r, indent=1) if args.json else table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
