"""Time the native engine's batched decode step in-process (no server): one forward pass over N
sequences (``runtime.token_cache.step``), each on a cache of its own with a short prompt already read,
against one sequence, alternating in one process. What ``serve --parallel`` pays per step before any
Python around it; ``scripts/serve_bench.py`` measures what clients see.

    .venv/bin/python scripts/step_bench.py --shape llama-1b --seqs 1,4,8 --rounds 5
    .venv/bin/python scripts/step_bench.py -m MODEL.gguf
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import _preset  # noqa: E402

STEPS = 64            # decode steps timed per round (a serve_bench stream's length)
PROMPT = 30           # prompt tokens each cache holds before a round (7 more per sequence index)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", help="a GGUF file (default: --shape)")
    ap.add_argument("--shape", default="smollm2-135m", help="an edgechat bench --shape preset (NAME[:TYPE])")
    ap.add_argument("--seqs", default="1,4", help="sequence counts, e.g. 1,2,4,8")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of every count, interleaved (medians)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=1024)
    a = ap.parse_args()
    from edgechat.runtime.loader import load
    from edgechat.runtime.token_cache import step
    name, path = ("file", Path(a.model)) if a.model else _preset(a.shape)
    counts = sorted({int(n) for n in a.seqs.split(",")})
    engine = load(str(path), backend="native", threads=a.threads, ctx=a.ctx)
    states = [engine.new_state() for _ in range(max(counts))]
    times: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(a.rounds):
        for n in counts:
            for i, s in enumerate(states[:n]):
                s.cache.reset(s.cache.info.sinks)
                s.cache.feed(list(range(100 + i, 100 + i + PROMPT + 7 * i)))
            caches = [s.cache for s in states[:n]]
            t0 = time.perf_counter()
            for r in range(STEPS):
                step(caches, [[5 + r % 50]] * n)
            times[n].append((time.perf_counter() - t0) / STEPS)
    one = statistics.median(times[counts[0]])
    print(f"{name} ({path.name}), {a.threads} threads, {STEPS} steps a round, medians of {a.rounds} interleaved rounds")
    for n in counts:
        t = statistics.median(times[n])
        print(f"{n:>3} sequences: {t * 1e3:7.2f} ms a step ({t / one:.2f}x {counts[0]}), "
              f"{n / t:7.1f} tok/s ({n / t * one / counts[0]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
