"""Measure ``edgechat serve`` as a client sees it: requests/s for short prompts, time to first token of
turn 1 vs turn 10 of a growing conversation (the warm cache should keep them level), and the server's
RSS before and after a load loop. Starts its own server on a free port (the default model).

    .venv/bin/python scripts/serve_bench.py [--threads 2] [--requests 200] [--conversations 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serve_support import Server  # noqa: E402

TURNS = 10
TURN_TEXT = ["Tell me one fact about {}.", "Why is that about {} interesting?", "Say more about {}."]
TOPICS = ["rivers", "bread", "owls", "copper", "tides", "maps", "glass", "tea", "bees", "ice"]


def short_requests(s: Server, n: int, clients: int, max_tokens: int) -> float:
    """Requests per second for ``n`` short chat requests from ``clients`` concurrent clients."""
    def ask(i):
        r = s.post("/chat/completions", {"messages": [{"role": "user", "content": f"Hi, number {i}!"}],
                                         "max_tokens": max_tokens, "temperature": 0})
        r.raise_for_status()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(ask, range(n)))
    return n / (time.perf_counter() - t0)


def ttft_stream(s: Server, messages: list[dict], max_tokens: int) -> tuple[float, str, dict]:
    """(seconds to the first text chunk, the reply, the x-edgechat of the last chunk)."""
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    t0, first, text, ext = time.perf_counter(), None, [], {}
    with httpx.stream("POST", s.url + "/chat/completions", json=body, headers=s.headers(), timeout=300) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            delta = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if delta and first is None:
                first = time.perf_counter() - t0
            text.append(delta or "")
            ext = chunk.get("x-edgechat", ext)
    return first or (time.perf_counter() - t0), "".join(text), ext


def growing_conversation(s: Server, k: int, max_tokens: int) -> list[tuple[float, int]]:
    """TTFT and prompt tokens evaluated of each turn of one conversation."""
    messages = [{"role": "system", "content": f"You are a concise assistant (conversation {k})."}]
    out = []
    for turn in range(TURNS):
        topic = TOPICS[(turn + k) % len(TOPICS)]
        messages.append({"role": "user", "content": TURN_TEXT[turn % len(TURN_TEXT)].format(topic)})
        ttft, reply, ext = ttft_stream(s, messages, max_tokens)
        messages.append({"role": "assistant", "content": reply})
        out.append((ttft, ext.get("prompt_tokens_evaluated", -1)))
    return out


def rss_under_load(s: Server, n: int) -> tuple[int, int]:
    short_requests(s, 20, 1, 2)              # warm up: every slot used
    before = s.rss()
    short_requests(s, n, 2, 2)
    return before, s.rss()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=200, help="requests in the load loop")
    ap.add_argument("--conversations", type=int, default=3, help="growing conversations (medians over them)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with Server("--threads", str(a.threads), "--report-cache-hits") as s:     # evaluated tokens per turn
        rps1 = short_requests(s, 30, 1, 8)
        rps4 = short_requests(s, 30, 4, 8)
        convs = [growing_conversation(s, k, 16) for k in range(a.conversations)]
        rss = rss_under_load(s, a.requests)
    t1 = statistics.median(c[0][0] for c in convs)
    t10 = statistics.median(c[TURNS - 1][0] for c in convs)
    result = {"requests_per_s": {"1_client": round(rps1, 2), "4_clients": round(rps4, 2)},
              "ttft_s": {"turn_1": round(t1, 4), "turn_10": round(t10, 4), "ratio": round(t10 / t1, 3)},
              "evaluated_tokens": {"turn_1": [c[0][1] for c in convs],
                                   "turn_10": [c[TURNS - 1][1] for c in convs]},
              "rss_mib": {"before": round(rss[0] / 2**20, 1), "after": round(rss[1] / 2**20, 1),
                          "growth": round(rss[1] / rss[0] - 1, 4), "requests": a.requests}}
    print(json.dumps(result, indent=2) if a.json else _table(result))
    return 0


def _table(r: dict) -> str:
    q, t, e, m = r["requests_per_s"], r["ttft_s"], r["evaluated_tokens"], r["rss_mib"]
    return "\n".join([
        f"short prompts (8 tokens out): {q['1_client']} req/s with 1 client, {q['4_clients']} req/s with 4",
        f"TTFT turn 1 {t['turn_1'] * 1000:.1f} ms, turn 10 {t['turn_10'] * 1000:.1f} ms: ratio {t['ratio']} "
        f"(prompt tokens evaluated: turn 1 {e['turn_1']}, turn 10 {e['turn_10']})",
        f"RSS {m['before']} MiB before, {m['after']} MiB after {m['requests']} requests ({m['growth']:+.2%})"])


if __name__ == "__main__":
    sys.exit(main())
