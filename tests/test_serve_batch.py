"""serve --parallel: requests decoded together (app/serve/batching.py) through a real server on a
loopback port. Oracle: the same requests on a --parallel 1 server (the one-at-a-time worker), one
after the other: greedy text, log-probabilities, a structured reply and finish reasons must be equal
(each stream's logits are bit for bit its solo run's: tests/test_batch.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest

from serve_support import Server

CTX = "512"
GREEDY = {"temperature": 0}
CLIENT_TIMEOUT_S = 300          # one request on the loaded 2-core machine, with 16 others queued
STORM, DROPS = 16, 4            # storm clients; those that disconnect after their first token
TOPICS = ["a planet", "the sea", "bread", "a violin", "winter", "a bridge", "coffee", "a river", "chess",
          "a volcano", "paper", "the moon", "a forest", "rain", "a train", "honey"]


@pytest.fixture(scope="module")
def solo():
    with Server("--threads", "2", "--ctx", CTX, "--parallel", "1") as s:
        yield s


@pytest.fixture(scope="module")
def batched():
    with Server("--threads", "2", "--ctx", CTX, "--parallel", "4", "--cache-slots", "4") as s:
        yield s


def _chat(topic: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": f"Write two sentences about {topic}."}], "max_tokens": 24,
            **GREEDY, **extra}


# (endpoint, body): a plain chat, a stop string, log-probabilities, a JSON schema, a raw completion
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "moons": {"type": "integer"}},
          "required": ["name", "moons"], "additionalProperties": False}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}}}
REQUESTS = [("/chat/completions", _chat("a planet")),
            ("/chat/completions", _chat("the sea", stop=["."])),
            ("/chat/completions", _chat("bread", logprobs=True, top_logprobs=2)),
            ("/chat/completions", _chat("Mars as JSON", max_tokens=40, response_format={
                "type": "json_schema", "json_schema": {"name": "planet", "schema": SCHEMA}})),
            ("/completions", {"prompt": "The three largest cities of Europe are", "max_tokens": 24, "logprobs": 1,
                              **GREEDY}),
            ("/chat/completions", _chat("the weather in Paris", max_tokens=40, tools=[TOOL],
                                        tool_choice={"type": "function", "function": {"name": "get_weather"}}))]


def _answer(r: httpx.Response) -> tuple:
    """What must not depend on who else is served: text, finish reason, log-probabilities, usage, tool
    calls (their ids aside)."""
    assert r.status_code == 200, r.text
    body = r.json()
    c, u = body["choices"][0], body["usage"]
    text = c["message"]["content"] if "message" in c else c["text"]
    calls = [x["function"] for x in (c.get("message") or {}).get("tool_calls") or []]
    return (text, c["finish_reason"], json.dumps(c.get("logprobs")), u["prompt_tokens"], u["completion_tokens"],
            json.dumps(calls))


def _long_stream(server: Server, started: threading.Event, release: threading.Event) -> None:
    """A stream that keeps the batch busy until ``release``: the others join it mid-decode."""
    body = {"messages": [{"role": "user", "content": "Tell me a very long story."}], "max_tokens": 1000,
            "stream": True, "temperature": 0, "frequency_penalty": 1.0}
    with httpx.stream("POST", server.url + "/chat/completions", json=body, timeout=CLIENT_TIMEOUT_S) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: "):
                started.set()
            if release.is_set():
                return


def _concurrently(server: Server, requests: list) -> list:
    """Send ``requests`` at once while a long stream runs; returns their responses in order."""
    out: list = [None] * len(requests)
    started, release = threading.Event(), threading.Event()
    long = threading.Thread(target=_long_stream, args=(server, started, release))
    long.start()
    assert started.wait(CLIENT_TIMEOUT_S)

    def ask(i, path, body):
        out[i] = httpx.post(server.url + path, json=body, timeout=CLIENT_TIMEOUT_S)
    threads = [threading.Thread(target=ask, args=(i, *r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLIENT_TIMEOUT_S)
    release.set()
    long.join(CLIENT_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads + [long])
    return out


def _idle(server: Server, timeout: float = 60) -> dict:
    """/health once the engine has nothing left to do."""
    deadline = time.monotonic() + timeout
    while True:
        h = server.health()
        if (not h["busy"] and not h["queued"]) or time.monotonic() > deadline:
            return h
        time.sleep(0.05)


def test_concurrent_requests_equal_their_solo_answers(solo, batched):
    assert solo.health()["parallel"] == 1 and batched.health()["parallel"] == 4
    want = [_answer(httpx.post(solo.url + p, json=b, timeout=CLIENT_TIMEOUT_S)) for p, b in REQUESTS]
    got = [_answer(r) for r in _concurrently(batched, REQUESTS)]
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, (REQUESTS[i], g, w)
    json.loads(got[3][0])                                # the schema's reply is JSON
    assert got[5][1] == "tool_calls" and json.loads(got[5][5])[0]["name"] == "get_weather"
    h = _idle(batched)
    assert h["jobs"]["max_streams"] >= 2                 # they were decoded together (with the long stream)


def _stream(server: Server, topic: str, drop: bool) -> dict:
    """One storm client: its streamed text, finish reason and whether [DONE] came."""
    got = {"text": "", "finish": None, "done": False, "error": None}
    with httpx.stream("POST", server.url + "/chat/completions", json=_chat(topic, stream=True),
                      timeout=CLIENT_TIMEOUT_S) as resp:
        if resp.status_code != 200:
            got["error"] = resp.status_code
            return got
        for line in resp.iter_lines():
            if line == "data: [DONE]":
                got["done"] = True
            elif line.startswith("data: "):
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    got["error"] = chunk["error"]
                    continue
                c = chunk["choices"][0]
                got["text"] += c["delta"].get("content") or ""
                got["finish"] = c["finish_reason"] or got["finish"]
                if drop and got["text"]:
                    return got                           # disconnect after the first token
    return got


def test_storm_of_streams_with_disconnects(solo, batched):
    want = {t: _answer(httpx.post(solo.url + "/chat/completions", json=_chat(t), timeout=CLIENT_TIMEOUT_S))
            for t in TOPICS[DROPS:]}
    before = batched.health()["jobs"]
    results: list = [None] * STORM

    def client(i):
        results[i] = _stream(batched, TOPICS[i], drop=i < DROPS)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(STORM)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLIENT_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads)
    for i, r in enumerate(results):
        assert r["error"] is None, (TOPICS[i], r)
        if i < DROPS:
            continue
        text, finish = want[TOPICS[i]][:2]
        assert r["done"] and (r["text"], r["finish"]) == (text, finish), (TOPICS[i], r, text)
    after = _idle(batched)
    assert not after["busy"] and after["queued"] == 0
    jobs = after["jobs"]
    assert jobs["jobs"] == before["jobs"] + STORM
    assert jobs["stopped_early"] >= before["stopped_early"] + DROPS
    assert jobs["max_pieces_after_cancel"] <= 1          # a disconnect stops its stream within one token
    # healthy afterwards: a request is answered as before
    again = httpx.post(batched.url + "/chat/completions", json=_chat(TOPICS[-1]), timeout=CLIENT_TIMEOUT_S)
    assert _answer(again)[:2] == want[TOPICS[-1]][:2]


def test_parallel_over_cache_slots_is_a_one_line_error():
    r = subprocess.run([sys.executable, "-m", "edgechat.app.cli", "serve", "--parallel", "6", "--cache-slots", "4"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--parallel 6 is more than --cache-slots 4" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_llama_cpp_backend_decodes_requests_together():
    """llama.cpp holds a sequence per cache slot and steps them in one llama_decode: three requests at once
    all answer, each with the text the same server gives it alone (short greedy replies at short contexts:
    its batched logits match a solo decode's there, tests/test_llama_batch.py)."""
    with Server("--threads", "2", "--ctx", "256", "--backend", "llama.cpp", "--parallel", "3",
                "--cache-slots", "3") as s:
        assert s.health()["parallel"] == 3
        topics = ["a planet", "the sea", "bread"]
        alone = [_answer(httpx.post(s.url + "/chat/completions", json=_chat(t, max_tokens=8),
                                    timeout=CLIENT_TIMEOUT_S)) for t in topics]
        together: dict[int, tuple] = {}

        def ask(i):
            together[i] = _answer(httpx.post(s.url + "/chat/completions", json=_chat(topics[i], max_tokens=8),
                                             timeout=CLIENT_TIMEOUT_S))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(3):
            assert together[i][1] in ("stop", "length") and together[i][0].strip()
            assert together[i] == alone[i], topics[i]