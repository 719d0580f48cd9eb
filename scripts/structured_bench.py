#!/usr/bin/env python3
"""Structured output's cost: decode tok/s with a JSON schema vs without, mask time per token, compile time.

For each model (the packaged default; ``--shape llama-1b``: the tensor shapes of Llama 3.2 1B, random
weights, from ``edgechat bench``'s cache), greedy, the same prompt, speculation off:
  * decode tok/s = tokens after the first / time after the first, median of ``--runs`` alternating runs
    without and with a schema (the schema's reply is a long array, so both run ``--tokens`` tokens;
    the grammar's forced tokens count as decoded tokens: they are fed, as one batch with the sampled
    one), and with the schema but every token sampled and fed alone (the mask's own cost);
  * the mask's time per token (its worker thread: computed while the forward pass runs), p50 / p99, and
    how long the sampler waited for it (what the overlap did not hide);
  * with ``--streams N``: N constrained chats stepped together (``runtime.batch``, what ``serve --parallel``
    runs) on a schema of long fixed keys: steps, tokens and tok/s with the forced tokens joining their
    stream's step as one chunk vs every token a step of its own, alternating;
  * the compile time of each corpus schema (tests/schema_corpus.py) on a cold cache: the extra time to
    the first token of a new schema; its median and p90.

  .venv/bin/python scripts/structured_bench.py [--shape llama-1b] [--runs 5] [--tokens 128] [--streams 4]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from edgechat.runtime import constraint as C, load          # noqa: E402
from edgechat.runtime.sampler import make_sampler             # noqa: E402

PROMPT = [{"role": "user", "content": "List as many English words as you can, as a JSON object."}]
LONG_SCHEMA = {"type": "object", "required": ["words"], "additionalProperties": False,
               "properties": {"words": {"type": "array", "minItems": 400,
                                        "items": {"type": "string", "maxLength": 12}}}}


def decode_run(engine, schema: dict | None, tokens: int, forced: bool = True) -> tuple[float, int, list, list]:
    c = C.compile_constraint(C.Format("json_schema", schema), engine.tokenizer) if schema else None
    s = make_sampler(temp=0, repeat_penalty=1.0, constraint=c)
    if not forced:
        s.forced = lambda limit: []                    # every token sampled and fed alone: the mask's cost
    engine.reset()
    done = [ev for ev in engine.chat(PROMPT, sampler=s, max_tokens=tokens)][-1]
    st = done.stats
    return st.decode_tps, st.completion_tokens, (c.mask_s if c else []), (c.wait_s if c else [])


RECORD = {"type": "object", "additionalProperties": False,
          "required": ["customer_identification_number", "shipping_address_line", "billing_postal_code",
                       "preferred_delivery_window"],
          "properties": {"customer_identification_number": {"type": "integer", "minimum": 0, "maximum": 99999},
                         "shipping_address_line": {"type": "string", "maxLength": 40},
                         "billing_postal_code": {"type": "string", "maxLength": 10},
                         "preferred_delivery_window": {"type": "string", "enum": ["morning", "afternoon", "evening"]}}}


def batch_run(engine, n: int, tokens: int, forced: bool = True) -> tuple[float, int, int]:
    """``n`` greedy chats constrained to ``RECORD`` stepped together: (seconds, steps, tokens)."""
    import threading

    from edgechat.runtime.batch import Batch
    from edgechat.runtime.reply import Reply
    b, streams = Batch(engine), []
    for k in range(n):
        s = make_sampler(temp=0, repeat_penalty=1.0,
                         constraint=C.compile_constraint(C.Format("json_schema", RECORD), engine.tokenizer))
        if not forced:
            s.forced = lambda limit: []                # every token a step of its own
        streams.append(b.open_chat(engine.new_state(), [{"role": "user", "content": f"Customer record {k} as JSON."}],
                                   s, Reply(engine.tokenizer, max_tokens=tokens), threading.Event()))
    steps, t0 = 0, time.perf_counter()
    while not all(s.done for s in streams):
        b.step(streams)
        steps += 1
    dt = time.perf_counter() - t0
    for s in streams:
        b.finish(s)
        s.state.cache.close()                           # its ring's memory back before the next run
    return dt, steps, sum(len(s.reply.tokens) for s in streams)


def bench_batch(path: Path, n: int, runs: int, tokens: int) -> dict:
    engine = load(path, speculative="off", ctx=1024)
    batch_run(engine, n, 8)                             # warm-up
    res = {True: [], False: []}
    for _ in range(runs):
        for forced in (True, False):
            res[forced].append(batch_run(engine, n, tokens, forced))
    engine.close()
    out = {"model": path.name, "streams": n}
    for forced, name in ((True, "forced_in_step"), (False, "token_per_step")):
        dt = statistics.median(r[0] for r in res[forced])
        _, steps, toks = res[forced][0]
        out[name] = {"steps": steps, "tokens": toks, "tps": round(toks / dt, 1)}
    out["ratio"] = round(out["forced_in_step"]["tps"] / out["token_per_step"]["tps"], 3)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_model(path: Path, runs: int, tokens: int) -> dict:
    engine = load(path, speculative="off", ctx=1024)
    decode_run(engine, None, 8)                         # warm-up
    decode_run(engine, LONG_SCHEMA, 8)
    plain, schema, alone, masks, waits, counts = [], [], [], [], [], []
    for _ in range(runs):                               # alternating, so a load change hits all three
        tps, n, _, _ = decode_run(engine, None, tokens)
        plain.append(tps)
        tps, n2, m, w = decode_run(engine, LONG_SCHEMA, tokens)
        schema.append(tps)
        masks, waits = masks + m, waits + w
        tps, n3, m, w = decode_run(engine, LONG_SCHEMA, tokens, forced=False)
        alone.append(tps)
        masks, waits = masks + m, waits + w
        counts.append((n, n2, n3))
    engine.close()
    p, s, a = statistics.median(plain), statistics.median(schema), statistics.median(alone)
    return {"model": path.name, "backend": engine.info.backend, "isa": engine.info.isa,
            "threads": engine.info.threads, "tokens": counts[0],
            "decode_tps_plain": round(p, 1), "decode_tps_schema": round(s, 1), "ratio": round(s / p, 3),
            "decode_tps_schema_no_batching": round(a, 1), "ratio_no_batching": round(a / p, 3),
            "mask_us_p50": round(pct(masks, 0.5) * 1e6, 1), "mask_us_p99": round(pct(masks, 0.99) * 1e6, 1),
            "masks": len(masks), "wait_us_p50": round(pct(waits, 0.5) * 1e6, 1),
            "wait_us_p99": round(pct(waits, 0.99) * 1e6, 1)}


def compile_times(tok) -> dict:
    from schema_corpus import corpus
    times = []
    for schema in corpus().values():
        C._compiled.clear()                             # a new schema: nothing cached
        t0 = time.perf_counter()
        C.compile_constraint(C.Format("json_schema", schema), tok)
        times.append(time.perf_counter() - t0)
    return {"schemas": len(times), "compile_ms_median": round(statistics.median(times) * 1e3, 2),
            "compile_ms_p90": round(pct(times, 0.9) * 1e3, 2), "compile_ms_max": round(max(times) * 1e3, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", action="append", default=[], help="also an `edgechat bench` shape (llama-1b)")
    ap.add_argument("--type", default="Q4_0", help="weight type of the shape's file")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--streams", type=int, default=0, help="also N constrained streams stepped together")
    args = ap.parse_args()
    from edgechat.models.resolve import resolve
    paths = [Path(resolve(None))]
    if args.shape:
        from edgechat.app.bench_shapes import shape_gguf
        paths += [shape_gguf(name, args.type) for name in args.shape]
    from edgechat.runtime.tokenizer import Tokenizer
    tok = Tokenizer(paths[0])
    C.lltokenizer(tok)                                  # built once per vocab (not a per-schema cost)
    print(json.dumps(compile_times(tok)))
    for path in paths:
        print(json.dumps(bench_model(path, args.runs, args.tokens)), flush=True)
        if args.streams:
            print(json.dumps(bench_batch(path, args.streams, args.runs, args.tokens)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
