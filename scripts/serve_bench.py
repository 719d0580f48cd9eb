"""Measure ``edgechat serve`` as a client sees it. Starts its own server on a free port for each model.

Concurrency (``--clients 1,2,4,8``): for each client count, that many streaming greedy requests at once
(``--parallel`` = the most clients): aggregate decode tok/s, per-stream p50/p95 inter-token latency
(and p95 "steady": the gaps after every stream's first token, when no prompt chunk joins a step), time
to first token; then a short request sent while 3 stream must get its first token within its solo time
to first token + 2 steps; then, on a server of 4 cache slots, the RSS with 4 streams against model +
caches. The clients are one thread reading plain sockets (``run_streams``): on a 2-core machine,
clients as heavy as an HTTP library each would take the cores the server measures on. Models side by
side: ``-m`` files and ``--shape`` presets (``edgechat bench --shape``: synthetic weights, built once
into a cache).

Without ``--clients``: requests/s for short prompts, time to first token of turn 1 vs turn 10 of a
growing conversation (the warm cache should keep them level), RSS before and after a load loop.

    .venv/bin/python scripts/serve_bench.py --shape smollm2-135m,llama-1b --clients 1,2,4,8
    .venv/bin/python scripts/serve_bench.py [-m FILE] [--threads 2] [--requests 200] [--conversations 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import selectors
import socket
import statistics
import subprocess
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
    ap.add_argument("-m", "--model", action="append", default=[], help="a GGUF file (repeat for more)")
    ap.add_argument("--shape", default="", metavar="NAME[:TYPE][,...]",
                    help="edgechat bench --shape presets, e.g. smollm2-135m,llama-1b (type: Q4_K_M; "
                         "smollm2-135m: its packaged Q4_1)")
    ap.add_argument("--clients", default="", metavar="N[,N]", help="concurrent streaming clients, e.g. 1,2,4,8")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens each concurrent stream decodes")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of every client count, interleaved "
                                                          "(medians reported: a shared machine is noisy)")
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--backend", default="auto", help="the server's --backend (auto, native, llama.cpp)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=200, help="requests in the load loop")
    ap.add_argument("--conversations", type=int, default=3, help="growing conversations (medians over them)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    models = [("file", Path(m)) for m in a.model] + [_preset(n) for n in a.shape.split(",") if n.strip()]
    if a.clients:
        clients = sorted({int(c) for c in a.clients.split(",")})
        a.load_start = _load()                          # a shared machine: say how busy it was
        rows = [concurrency(name, path, clients, a) for name, path in models or [_preset("smollm2-135m")]]
        print(json.dumps(rows, indent=2) if a.json else concurrency_table(rows, a))
        return 0
    model_args = ["-m", str(models[0][1])] if models else []
    with Server(*model_args, "--threads", str(a.threads), "--report-cache-hits") as s:   # evaluated tokens per turn
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


# ---- concurrency ---------------------------------------------------------------------------------

SHAPE_TYPE = "Q4_K_M"       # --shape presets' weight type unless NAME:TYPE says
TARGETS = {"llama-1b": 2.2}  # 4 clients' aggregate decode over one client's (issue 26); others: 1.8
DEFAULT_TARGET, ITL_TARGET, RSS_SLACK = 1.8, 1.6, 0.10
PROMPTS = ["Write about {}.", "Tell me a story about {}.", "Describe {} in detail.", "Explain {} to a child."]


def _preset(spec: str) -> tuple[str, Path]:
    from edgechat.app.bench_shapes import DEFAULT_SHAPE, DEFAULT_TYPE, shape_gguf
    name, _, ftype = spec.strip().partition(":")
    ftype = ftype or (DEFAULT_TYPE if name == DEFAULT_SHAPE else SHAPE_TYPE)
    return f"{name} {ftype}", shape_gguf(name, ftype)


def _geometry(path: Path, ctx: int) -> tuple[int, int, list[int]]:
    """(file bytes, bytes of one f16 cache of ``ctx`` tokens, end-of-turn ids to bias away)."""
    from edgechat.runtime.ggufload import read_model
    m = read_model(path)
    c = m.config
    cache = 2 * c["n_layer"] * ctx * c["n_head_kv"] * c["head_dim"] * 2          # K and V, f16
    eot = {m.metadata.get(k) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")}
    return path.stat().st_size, cache, sorted(int(t) for t in eot if isinstance(t, int))


class _Stream:
    """One greedy streaming request on a plain socket. HTTP/1.0: the reply's body is the event stream
    itself, up to the server closing the connection, so reading it costs a receive and a split."""

    def __init__(self, port: int, k: int, max_tokens: int, bias: dict):
        topic = TOPICS[k % len(TOPICS)]
        prompt = PROMPTS[k % len(PROMPTS)].format(topic) + f" ({k})"
        body = json.dumps({"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                           "temperature": 0, "stream": True, "logit_bias": bias,
                           "stream_options": {"include_usage": True}}).encode()
        host = f"127.0.0.1:{port}"
        self.request = (f"POST /v1/chat/completions HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self.port, self.buf, self.head = port, b"", None
        self.out = {"sent": 0.0, "chunks": [], "tokens": 0}

    def send(self) -> socket.socket:
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.out["sent"] = time.perf_counter()
        self.sock.sendall(self.request)
        self.sock.setblocking(False)
        return self.sock

    def read(self) -> bool:
        """What arrived (one timestamp for all of it); False once the server has closed the stream."""
        data = self.sock.recv(1 << 16)
        now = time.perf_counter()
        if not data:
            self.sock.close()
            if self.head is None or not self.head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the server answered {(self.head or self.buf)[:200]!r}")
            return False
        self.buf += data
        if self.head is None:
            if b"\r\n\r\n" not in self.buf:
                return True
            self.head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        *events, self.buf = self.buf.split(b"\n\n")
        for ev in events:
            if not ev.startswith(b"data: {"):
                continue
            chunk = json.loads(ev[6:])
            if chunk.get("usage"):
                self.out["tokens"] = chunk["usage"]["completion_tokens"]
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                self.out["chunks"].append(now)
        return True


def run_streams(port: int, specs: list[tuple[int, int]], bias: dict, late: tuple[int, int] | None = None) -> list[dict]:
    """Streams ``specs`` ((prompt number, max_tokens) each) at once, all read by this one thread (clients
    are light: on a 2-core machine the benchmark's own reading would otherwise take the server's cores);
    ``late``: one more, sent once every other stream has its first token. Each result: its send time,
    the arrival times of its text chunks and its completion tokens."""
    sel = selectors.DefaultSelector()
    streams = [_Stream(port, k, n, bias) for k, n in specs]
    for st in streams:
        sel.register(st.send(), selectors.EVENT_READ, st)
    pending = _Stream(port, *late, bias) if late else None
    open_, deadline = len(streams), time.monotonic() + 600
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            if not key.data.read():
                sel.unregister(key.fileobj)
                open_ -= 1
        if pending and all(st.out["chunks"] for st in streams):
            sel.register(pending.send(), selectors.EVENT_READ, pending)
            streams.append(pending)
            open_, pending = open_ + 1, None
    sel.close()
    if open_:
        raise RuntimeError("streams still open after 600 s")
    return [st.out for st in streams]


def _round(s: Server, n: int, max_tokens: int, bias: dict, first: int = 0) -> list[dict]:
    return run_streams(s.port, [(first + k, max_tokens) for k in range(n)], bias)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def measure(outs: list[dict]) -> dict:
    """Aggregate decode tok/s (tokens after each stream's first over the span from the first first token
    to the last token), inter-token latency percentiles over every stream, time to first token."""
    ok = [o for o in outs if o["chunks"]]
    decoded = sum(o["tokens"] - 1 for o in ok)
    span = max(o["chunks"][-1] for o in ok) - min(o["chunks"][0] for o in ok)
    gaps = [b - a for o in ok for a, b in zip(o["chunks"], o["chunks"][1:])]
    read = max(o["chunks"][0] for o in ok)          # every prompt read: no prompt chunk joins a step after
    steady = [b - a for o in ok for a, b in zip(o["chunks"], o["chunks"][1:]) if a >= read]
    ttft = [o["chunks"][0] - o["sent"] for o in ok]
    return {"decode_tps": decoded / span if span > 0 else 0.0, "itl_p50_ms": _pct(gaps, 0.5) * 1e3,
            "itl_p95_ms": _pct(gaps, 0.95) * 1e3, "itl_p95_steady_ms": _pct(steady, 0.95) * 1e3,
            "ttft_p50_ms": statistics.median(ttft) * 1e3,
            "ttft_max_ms": max(ttft) * 1e3, "streams": len(ok)}


def short_while_three(s: Server, max_tokens: int, bias: dict) -> dict:
    """A short request's time to first token alone, then while 3 streams decode (sent once all 3 have
    their first token); the allowance is its solo time + 2 steps (the 3 streams' median gap)."""
    solo = statistics.median(_ttft(run_streams(s.port, [SHORT], bias)[0]) for _ in range(3))
    *outs, short = run_streams(s.port, [(100 + k, max_tokens * 2) for k in range(3)], bias, late=SHORT)
    busy = _ttft(short)
    step = statistics.median(b - a for o in outs for a, b in zip(o["chunks"], o["chunks"][1:]))
    return {"solo_ttft_ms": solo * 1e3, "ttft_ms": busy * 1e3, "step_ms": step * 1e3,
            "ok": busy <= solo + 2 * step}


SHORT = (7, 4)          # the short request: prompt 7, 4 tokens


def _ttft(out: dict) -> float:
    return out["chunks"][0] - out["sent"]


def concurrency(name: str, path: Path, clients: list[int], a) -> dict:
    size, cache, eot = _geometry(path, a.ctx)
    bias = {str(t): -100 for t in eot}                 # every stream decodes max_tokens
    n = max(max(clients), 3)
    row = {"model": name, "path": str(path), "file_mib": size / 2**20, "cache_mib": cache / 2**20, "rounds": {}}
    with Server("-m", str(path), "--backend", a.backend, "--threads", str(a.threads), "--ctx", str(a.ctx),
                "--parallel", str(n), "--cache-slots", str(n)) as s:
        _round(s, 1, 8, bias)                           # warm up
        runs: dict[int, list[dict]] = {c: [] for c in clients}
        shorts = []
        for _ in range(a.repeat):                       # interleaved: the machine's load hits every count alike
            for c in clients:
                runs[c].append(measure(_round(s, c, a.max_tokens, bias, first=c * 10)))
            shorts.append(short_while_three(s, a.max_tokens, bias))
        row["rounds"] = {c: _medians(rs) for c, rs in runs.items()}
        row["short_while_3"] = {**_medians(shorts), "ok": sum(w["ok"] for w in shorts) * 2 > len(shorts),
                                "runs_ok": f"{sum(w['ok'] for w in shorts)}/{len(shorts)}"}
        row["parallel"] = s.health()["parallel"]
    # RSS with 4 streams on a server of 4 cache slots (the one above keeps a cache for each of its n
    # slots, every one that a round has used)
    with Server("-m", str(path), "--backend", a.backend, "--threads", str(a.threads), "--ctx", str(a.ctx),
                "--parallel", "4", "--cache-slots", "4") as s:
        row["rss_start_mib"] = s.rss() / 2**20          # loaded, before any request
        _round(s, 4, a.max_tokens, bias)
        row["rss_4_mib"] = s.rss() / 2**20
    return row


def _medians(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0] if not isinstance(runs[0][k], bool)}


def concurrency_table(rows: list[dict], a) -> str:
    import platform
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    version = subprocess.run([sys.executable, "-m", "edgechat.app.cli", "--version"], capture_output=True,
                             text=True).stdout.strip()
    out = [f"{version}; backend {a.backend}; CPU: {cpu}, {a.threads} threads; ctx {a.ctx}, {a.max_tokens} tokens a stream, greedy, "
           f"streaming; medians of {a.repeat} interleaved rounds; load average at start {a.load_start}, at end {_load()}", "",
           f"{'model':<22}{'clients':>8}{'agg tok/s':>11}{'x 1':>7}{'ITL p50':>9}{'p95 ms':>8}{'x 1':>7}"
           f"{'steady':>8}{'TTFT p50':>10}{'max ms':>8}"]
    for r in rows:
        one = r["rounds"].get(1) or next(iter(r["rounds"].values()))
        for c, m in r["rounds"].items():
            out.append(f"{r['model']:<22}{c:>8}{m['decode_tps']:>11.1f}{m['decode_tps'] / one['decode_tps']:>7.2f}"
                       f"{m['itl_p50_ms']:>9.1f}{m['itl_p95_ms']:>8.1f}{m['itl_p95_ms'] / one['itl_p95_ms']:>7.2f}"
                       f"{m['itl_p95_steady_ms']:>8.1f}{m['ttft_p50_ms']:>10.0f}{m['ttft_max_ms']:>8.0f}")
    out.append("")
    for r in rows:
        one, four = r["rounds"].get(1), r["rounds"].get(4)
        w = r["short_while_3"]
        out.append(f"{r['model']}: short request while 3 stream: first token {w['ttft_ms']:.0f} ms, allowed "
                   f"{w['solo_ttft_ms']:.0f} ms solo + 2 x {w['step_ms']:.1f} ms step: {_ok(w['ok'])} (in {w['runs_ok']} runs)")
        if one and four:
            want = TARGETS.get(r["model"].split()[0], DEFAULT_TARGET)
            speed, itl = four["decode_tps"] / one["decode_tps"], four["itl_p95_ms"] / one["itl_p95_ms"]
            limit = (r["file_mib"] + 4 * r["cache_mib"]) * (1 + RSS_SLACK)
            runtime = r["rss_start_mib"] - r["file_mib"]     # the interpreter, libraries, scratch buffers
            steady = four["itl_p95_steady_ms"] / one["itl_p95_steady_ms"]
            out.append(f"  4 clients: aggregate decode {speed:.2f}x one client's (target >= {want}x: {_ok(speed >= want)}), "
                       f"p95 inter-token {itl:.2f}x (target <= {ITL_TARGET}x: {_ok(itl <= ITL_TARGET)}); once every "
                       f"prompt is read (no prompt chunk in a step): {steady:.2f}x")
            rss = r["rss_4_mib"]
            out.append(f"  RSS with 4 streams (4 cache slots) {rss:.0f} MiB vs model {r['file_mib']:.0f} + 4 x "
                       f"{r['cache_mib']:.1f} MiB f16 caches + {RSS_SLACK:.0%} = {limit:.0f} MiB ({_ok(rss <= limit)}); "
                       f"the loaded server held {r['rss_start_mib']:.0f} MiB, {runtime:.0f} MiB beside the model file; "
                       f"counting that too: {_ok(rss <= limit + runtime)}")
    return "\n".join(out)


def _load() -> str:
    import os
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _ok(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _table(r: dict) -> str:
    q, t, e, m = r["requests_per_s"], r["ttft_s"], r["evaluated_tokens"], r["rss_mib"]
    return "\n".join([
        f"short prompts (8 tokens out): {q['1_client']} req/s with 1 client, {q['4_clients']} req/s with 4",
        f"TTFT turn 1 {t['turn_1'] * 1000:.1f} ms, turn 10 {t['turn_10'] * 1000:.1f} ms: ratio {t['ratio']} "
        f"(prompt tokens evaluated: turn 1 {e['turn_1']}, turn 10 {e['turn_10']})",
        f"RSS {m['before']} MiB before, {m['after']} MiB after {m['requests']} requests ({m['growth']:+.2%})"])


if __name__ == "__main__":
    sys.exit(main())
