"""``edgechat bench --speculative``: decode speed with and without speculation on a fixed set of prompts.

Four prompts (a code edit, a rewrite, a quote, free chat), each answered greedily (temp 0) by one
loaded engine with speculation off and on, alternating which goes first, ``--runs`` times. The table
gives median decode tok/s of each, their ratio, the acceptance rate (accepted / drafted tokens), and
whether the texts were identical (they must be: speculation never changes a greedy answer).
"""
from __future__ import annotations

import json
import statistics
import sys

CODE = '''class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        if not self.items:
            raise IndexError("pop from an empty stack")
        return self.itmes.pop()

    def peek(self):
        return self.items[-1]

    def __len__(self):
        return len(self.items)
'''

NOTE = ("The weathr was nice yesterday, so we went to the park near the river. We had a picnik with "
        "sandwiches, apples and lemonade, and the children played footbal on the grass until it got dark. "
        "On the way home we stoped at the bakery and bought fresh bread for breakfast.")

SPEECH = ("Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived "
          "in Liberty, and dedicated to the proposition that all men are created equal.")

# chosen so that the default model (SmolLM2-135M) answers the first three mostly from the prompt's text,
# as a code edit, a rewrite and a quote do, and the last from its own
PROMPTS = {
    "code edit": f"Rewrite this code with the typo fixed:\n\n```python\n{CODE}```",
    "rewrite": f"Fix the typos:\n\n{NOTE}",
    "quote": f"Repeat this text word for word:\n\n{SPEECH}",
    "free chat": "What are three good things about living near the sea?",
}


def measure(engine, prompt: str, spec, max_tokens: int) -> dict:
    """One greedy reply from an empty cache with ``spec`` as the engine's speculation."""
    engine.reset()
    engine.speculation = spec
    done = None
    for ev in engine.chat([{"role": "user", "content": prompt}], temp=0, max_tokens=max_tokens):
        done = ev
    s = done.stats
    return {"text": done.text, "tokens": s.completion_tokens, "decode_tps": s.decode_tps,
            "draft_tokens": s.draft_tokens, "accepted_tokens": s.accepted_tokens}


def bench_prompt(engine, prompt: str, on, off, runs: int, max_tokens: int) -> dict:
    """Median tok/s off and on, the speedup, acceptance and whether every text matched."""
    samples = {"off": [], "on": []}
    for run in range(runs):
        for mode in ("off", "on") if run % 2 == 0 else ("on", "off"):
            samples[mode].append(measure(engine, prompt, off if mode == "off" else on, max_tokens))
    med = {m: statistics.median(x["decode_tps"] for x in samples[m]) for m in samples}
    drafted = sum(x["draft_tokens"] for x in samples["on"])
    accepted = sum(x["accepted_tokens"] for x in samples["on"])
    texts = {x["text"] for m in samples for x in samples[m]}
    return {"off_tps": med["off"], "on_tps": med["on"], "speedup": med["on"] / med["off"] if med["off"] else None,
            "tokens": samples["off"][0]["tokens"], "draft_tokens": drafted, "accepted_tokens": accepted,
            "acceptance": accepted / drafted if drafted else None, "identical": len(texts) == 1,
            "runs_tps": {m: [round(x["decode_tps"], 2) for x in samples[m]] for m in samples}}


def bench(engine, runs: int, max_tokens: int) -> dict:
    from ..runtime.speculative import Speculation
    on, off = engine.speculation, Speculation("off")
    if on.mode == "off":
        from ..runtime.errors import EdgechatError
        raise EdgechatError(f"bench --speculative: speculation is off ({on.note or '--speculative off'})")
    try:
        rows = {name: bench_prompt(engine, p, on, off, runs, max_tokens) for name, p in PROMPTS.items()}
    finally:
        engine.speculation = on
    return {"model": engine.info.name, "mode": on.mode, "threads": engine.info.threads, "runs": runs,
            "max_tokens": max_tokens, "rows": rows,
            "draft": str(getattr(on.drafter, "path", "")) or None}


def table(r: dict) -> str:
    draft = f", draft {r['draft']}" if r["draft"] else ""
    lines = [f"{r['model']}: speculative {r['mode']}{draft}, {r['threads']} threads, greedy, "
             f"up to {r['max_tokens']} tokens, medians of {r['runs']} runs (off and on alternate)",
             f"{'prompt':<11}{'tokens':>7}{'off tok/s':>11}{'on tok/s':>10}{'speedup':>9}{'accepted':>15}{'same text':>11}"]
    for name, row in r["rows"].items():
        acc = f"{row['accepted_tokens']}/{row['draft_tokens']}" + \
            (f" {row['acceptance']:.0%}" if row["acceptance"] is not None else "")
        lines.append(f"{name:<11}{row['tokens']:>7}{row['off_tps']:>11.1f}{row['on_tps']:>10.1f}"
                     f"{row['speedup']:>8.2f}x{acc:>15}{'yes' if row['identical'] else 'NO':>11}")
    return "\n".join(lines)


def run(args) -> int:
    """``edgechat bench --speculative`` after parsing."""
    from .loader import load_engine
    if getattr(args, "speculative", None) == "off":
        print("edgechat bench --speculative: --speculative off leaves nothing to compare", file=sys.stderr)
        return 2
    engine = load_engine(args)
    try:
        r = bench(engine, args.runs, args.spec_tokens)
    finally:
        engine.close()
    print(json.dumps(r, indent=1) if getattr(args, "json", False) else table(r))
    return 0 if all(row["identical"] for row in r["rows"].values()) else 1
