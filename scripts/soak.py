#!/usr/bin/env python3
"""Soak: an endless multi-turn dialogue through Engine.chat, in constant memory and constant time,
native and llama.cpp side by side.

    .venv/bin/python scripts/soak.py [--tokens 100000] [--ctx 512,2048] [--max-tokens 96]
        [--user-tokens 64] [--backends native,llama.cpp] [--evict-chunk N] [--threads N]
        [--pin-system] [--json]

Each (backend, ctx) runs in its own child process (so its RSS is its own), one after the other. User
turns are consecutive chunks of --user-tokens tokens of natural_text (Python's docs,
pydoc_data.topics, cycled); replies are generated greedily (temp 0, the default repetition penalty) up
to --max-tokens; the whole message list is passed to Engine.chat every turn, as the app does, until
--tokens tokens have gone through the cache. llama.cpp evicts --evict-chunk entries at a time (default:
the backend's default, as the app runs it).

Reported per backend and ctx:
- decode latency (ms/token) per 1k tokens of conversation: the first bucket, the first bucket that
  starts once the ring is full (attention over a full cache costs more than over a filling one), and
  the last (the table shows a few buckets; --json has them all);
- RSS (psutil) after the first turn, at the end, and the largest seen;
- time to first token of early turns (the first 10%) vs late turns (the last 10%), over turns with the
  same number of new tokens (the commonest count), medians; and the same for prefill alone;
- cache capacity/bytes (they must never change), evicted tokens, rebuilds.
With both backends, the table ends with native / llama.cpp ratios. No pass/fail: numbers to read (the
machine may be shared; say so when quoting them).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from array import array

SYSTEM = "You are a helpful assistant. Answer briefly."
EARLY_LATE_FRACTION = 0.10


class TurnLog:
    """Per-turn records kept as float64 columns (8 bytes a field), so the soak's own bookkeeping stays
    out of the RSS it measures; reads back as dicts."""
    INTS = ("turn", "stream_start", "stream_end", "prompt_tokens", "completion_tokens", "rebuild_tokens",
            "evicted", "used", "rss")
    FLOATS = ("ttft_s", "prefill_s", "decode_s", "turn_s")
    FINISH = ("stop", "length", "cancelled")

    def __init__(self):
        self._cols = {f: array("d") for f in self.INTS + self.FLOATS + ("finish",)}

    def append(self, rec: dict) -> None:
        for f, col in self._cols.items():
            col.append(self.FINISH.index(rec[f]) if f == "finish" else rec[f])

    def __len__(self) -> int:
        return len(self._cols["turn"])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        c = self._cols
        rec = {f: int(c[f][i]) for f in self.INTS}
        rec.update({f: c[f][i] for f in self.FLOATS})
        rec["finish"] = self.FINISH[int(c["finish"][i])]
        return rec

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def soak_one(model, ctx: int, tokens: int, max_tokens: int, user_tokens: int, backend: str, threads: int,
             pin_system: bool, quiet: bool, evict_chunk: int | None = None) -> dict:
    from pydoc_data.topics import topics

    import psutil
    from edgechat.models.resolve import resolve
    from edgechat.runtime import load
    from edgechat.runtime.events import DoneEvent
    proc = psutil.Process()
    e = load(resolve(model), backend=backend, ctx=ctx, threads=threads, pin_system=pin_system, evict_chunk=evict_chunk)
    text_ids = e.tokenize("\n\n".join(topics[k] for k in sorted(topics)))
    info0 = e.cache_info()
    msgs = [{"role": "system", "content": SYSTEM}]
    turns = TurnLog()
    rss_first = rss_max = None
    pos_text = 0
    t_start = time.perf_counter()
    bad = []
    while True:
        pos0 = turns[-1]["stream_end"] if turns else 0     # tokens of conversation so far
        if pos0 >= tokens:
            break
        chunk = text_ids[pos_text:pos_text + user_tokens]
        pos_text += user_tokens
        if len(chunk) < user_tokens:
            pos_text, chunk = user_tokens, text_ids[:user_tokens]
        msgs.append({"role": "user", "content": e.detokenize(chunk)})
        t_req = time.perf_counter()
        done = None
        for ev in e.chat(msgs, max_tokens=max_tokens, temp=0.0):
            if isinstance(ev, DoneEvent):
                done = ev
        msgs.append({"role": "assistant", "content": done.text})
        info = done.cache
        stream_end = e.message_spans()[-1][1]              # logical end of the reply, evictions included
        if info.capacity != info0.capacity or info.bytes != info0.bytes:
            bad.append(f"turn {len(turns)}: capacity/bytes changed: {info}")
        rss = proc.memory_info().rss
        rss_first = rss if rss_first is None else rss_first
        rss_max = max(rss_max or 0, rss)
        s = done.stats
        turns.append({"turn": len(turns), "stream_start": pos0, "stream_end": stream_end,
                      "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
                      "ttft_s": s.ttft_s, "prefill_s": s.prefill_s, "decode_s": s.decode_s,
                      "turn_s": time.perf_counter() - t_req, "rebuild_tokens": s.rebuild_tokens,
                      "finish": done.finish_reason, "evicted": info.evicted, "used": info.used,
                      "rss": rss})
        if not quiet and (sys.stderr.isatty() or stream_end * 10 // tokens != pos0 * 10 // tokens):
            el = time.perf_counter() - t_start
            print(f"\r  {backend} ctx {ctx}: {stream_end}/{tokens} tokens, {len(turns)} turns, {el:.0f}s, "
                  f"rss {rss / 2**20:.0f} MiB   ", end="" if sys.stderr.isatty() else "\n",
                  file=sys.stderr, flush=True)
    if not quiet and sys.stderr.isatty():
        print(file=sys.stderr)
    wall = time.perf_counter() - t_start
    rss_last = proc.memory_info().rss
    result = {"backend": e.info.backend, **summarize(ctx, turns, rss_first, rss_last, rss_max, wall, info0, bad)}
    e.close()
    return result


def summarize(ctx, turns, rss_first, rss_last, rss_max, wall, info0, bad) -> dict:
    turns = list(turns)
    # decode_s: from the first sampled token on, one eval + one sample each; keyed by the reply's start
    decode_marks = [(t["stream_start"] + t["prompt_tokens"], t["completion_tokens"], t["decode_s"])
                    for t in turns if t["completion_tokens"]]
    buckets: dict[int, list[float]] = {}        # 1k bucket of the reply's start -> [steps, seconds]
    for pos, steps, secs in decode_marks:
        b = buckets.setdefault(pos // 1000, [0, 0.0])
        b[0] += steps
        b[1] += secs
    per_1k = [{"from": k * 1000, "ms_per_token": 1000 * secs / steps, "n": steps}
              for k, (steps, secs) in sorted(buckets.items())]
    # llama.cpp evicts a chunk at a time, so "full" is "has evicted", or used == capacity
    full_at = next((t["stream_end"] for t in turns if t["used"] >= ctx or t["evicted"]), None)
    full_1k = next((b for b in per_1k if full_at is not None and b["from"] >= full_at), None)
    n_edge = max(1, int(len(turns) * EARLY_LATE_FRACTION))
    early, late = turns[:n_edge], turns[-n_edge:]
    # the commonest new-token count present in both groups: same prompt size, different history length
    counts = {}
    for t in turns:
        counts[t["prompt_tokens"]] = counts.get(t["prompt_tokens"], 0) + 1
    shared = [c for c in sorted(counts, key=counts.get, reverse=True)
              if any(t["prompt_tokens"] == c for t in early) and any(t["prompt_tokens"] == c for t in late)]
    ttft = None
    if shared:
        c = shared[0]
        e_t = [t for t in early if t["prompt_tokens"] == c]
        l_t = [t for t in late if t["prompt_tokens"] == c]
        ttft = {"new_tokens": c, "early_turns": len(e_t), "late_turns": len(l_t),
                "early_ttft_ms": 1000 * statistics.median(t["ttft_s"] for t in e_t),
                "late_ttft_ms": 1000 * statistics.median(t["ttft_s"] for t in l_t),
                "early_prefill_ms": 1000 * statistics.median(t["prefill_s"] for t in e_t),
                "late_prefill_ms": 1000 * statistics.median(t["prefill_s"] for t in l_t)}
    return {"ctx": ctx, "turns": len(turns), "tokens": turns[-1]["stream_end"] if turns else 0,
            "wall_s": wall, "capacity": info0.capacity, "cache_bytes": info0.bytes,
            "evicted": turns[-1]["evicted"] if turns else 0, "ring_full_at": full_at,
            "rebuilds": sum(1 for t in turns if t["rebuild_tokens"]),
            "decode_tokens": sum(m[1] for m in decode_marks),
            "decode_ms_first_1k": per_1k[0]["ms_per_token"] if per_1k else None,
            "decode_ms_last_1k": per_1k[-1]["ms_per_token"] if per_1k else None,
            "decode_ms_first_full_1k": full_1k["ms_per_token"] if full_1k else None,
            "decode_first_full_from": full_1k["from"] if full_1k else None,
            "decode_per_1k": per_1k,
            "rss_first_mib": rss_first / 2**20 if rss_first else None, "rss_last_mib": rss_last / 2**20,
            "rss_max_mib": rss_max / 2**20 if rss_max else None, "ttft": ttft,
            "invariant_violations": bad, "per_turn": turns}


def _child(args, backend, ctx, q):
    try:
        q.put(soak_one(args.model, ctx, args.tokens, args.max_tokens, args.user_tokens, backend,
                       args.threads, args.pin_system, args.quiet, args.evict_chunk))
    except BaseException as e:  # report, don't hang the parent
        q.put({"backend": backend, "ctx": ctx, "error": f"{type(e).__name__}: {e}"})
        raise


def run_one(args, backend, ctx) -> dict:
    mc = mp.get_context("spawn")
    q = mc.Queue()
    p = mc.Process(target=_child, args=(args, backend, ctx, q))
    p.start()
    res = q.get()
    p.join()
    return res


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def table(results: list[dict], args) -> str:
    lines = [f"soak: {args.tokens} tokens of dialogue per run, user turns of {args.user_tokens} tokens, "
             f"greedy replies <= {args.max_tokens} tokens, threads {args.threads}"
             + (", --pin-system" if args.pin_system else "")]
    for r in results:
        head = f"{r['backend']} ctx {r['ctx']}"
        if "error" in r:
            lines.append(f"{head}: ERROR {r['error']}")
            continue
        lines += ["", (f"{head}: {r['turns']} turns, {r['tokens']} tokens in {r['wall_s']:.0f}s; "
                       f"ring full at token {r['ring_full_at']}; evicted {r['evicted']}; rebuilds {r['rebuilds']}; "
                       f"cache {r['cache_bytes'] / 2**20:.1f} MiB, capacity {r['capacity']} "
                       f"({'unchanged' if not r['invariant_violations'] else 'CHANGED'})")]
        per = r["decode_per_1k"]
        if per:
            step = max(1, len(per) // 8)
            shown = per[::step] + ([per[-1]] if (len(per) - 1) % step else [])
            lines.append("  decode ms/token by conversation position: " +
                         ", ".join(f"{b['from'] // 1000}k {b['ms_per_token']:.1f}" for b in shown))
            full = (f"first 1k with the ring full ({r['decode_first_full_from'] // 1000}k) "
                    f"{r['decode_ms_first_full_1k']:.1f}, " if r["decode_ms_first_full_1k"] else "")
            lines.append(f"  decode ms/token: first 1k {r['decode_ms_first_1k']:.1f}, {full}last 1k "
                         f"{r['decode_ms_last_1k']:.1f} ({r['decode_tokens']} decode steps); last / first "
                         f"{_ratio(r['decode_ms_last_1k'], r['decode_ms_first_1k'])}, last / first full "
                         f"{_ratio(r['decode_ms_last_1k'], r['decode_ms_first_full_1k'])}")
        lines.append(f"  RSS first turn {r['rss_first_mib']:.1f} MiB, last {r['rss_last_mib']:.1f} MiB "
                     f"({100 * (r['rss_last_mib'] / r['rss_first_mib'] - 1):+.1f}%), max {r['rss_max_mib']:.1f} MiB")
        t = r["ttft"]
        if t:
            lines.append(f"  TTFT, turns with {t['new_tokens']} new tokens: early {t['early_ttft_ms']:.0f} ms "
                         f"(median of {t['early_turns']}), late {t['late_ttft_ms']:.0f} ms (median of "
                         f"{t['late_turns']}), late / early {_ratio(t['late_ttft_ms'], t['early_ttft_ms'])}; "
                         f"prefill alone {t['early_prefill_ms']:.0f} -> {t['late_prefill_ms']:.0f} ms")
        else:
            lines.append("  TTFT: no new-token count shared by early and late turns (too few turns)")
        for v in r["invariant_violations"][:3]:
            lines.append(f"  ! {v}")
    by = {(r["backend"], r["ctx"]): r for r in results if "error" not in r}
    pairs = [(by[("native", c)], by[("llama.cpp", c)]) for (b, c) in by if b == "native" and ("llama.cpp", c) in by]
    if pairs:
        lines += ["", "native / llama.cpp (below 1 is native faster or smaller):"]
        for n, l in pairs:
            tt = (n["ttft"] or {}).get("late_ttft_ms"), (l["ttft"] or {}).get("late_ttft_ms")
            lines.append(f"  ctx {n['ctx']}: decode last 1k {_ratio(n['decode_ms_last_1k'], l['decode_ms_last_1k'])}, "
                         f"late TTFT {_ratio(*tt)}, RSS last {_ratio(n['rss_last_mib'], l['rss_last_mib'])}, "
                         f"wall {_ratio(n['wall_s'], l['wall_s'])}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", help="model name or path (default: the packaged model)")
    p.add_argument("--tokens", type=int, default=100_000, help="tokens of dialogue per run (default 100000)")
    p.add_argument("--ctx", default="512,2048", help="comma-separated cache sizes (default 512,2048)")
    p.add_argument("--max-tokens", type=int, default=96, help="reply length limit (default 96)")
    p.add_argument("--user-tokens", type=int, default=64, help="tokens of text per user turn (default 64)")
    p.add_argument("--backends", default="native,llama.cpp",
                   help="comma-separated: native, llama.cpp, auto (default native,llama.cpp)")
    p.add_argument("--evict-chunk", type=int, default=None, help="llama.cpp eviction chunk (default: the backend's)")
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--pin-system", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true", help="everything, per-turn records included")
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in backends if b not in ("native", "llama.cpp", "auto")]
    if bad:
        p.error(f"unknown backend {bad[0]!r} (choose from native, llama.cpp, auto)")
    if args.threads is None:
        from edgechat.runtime.loader import default_threads
        args.threads = default_threads()
    results = [run_one(args, b, int(c)) for c in args.ctx.split(",") if c.strip() for b in backends]
    if args.json:
        print(json.dumps({"args": vars(args), "results": results}, indent=1))
    else:
        print(table(results, args))
    return 1 if any("error" in r or r.get("invariant_violations") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
