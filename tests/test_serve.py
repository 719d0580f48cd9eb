"""``edgechat serve`` as a real subprocess on a free port, driven by the official ``openai`` client and
raw HTTP (httpx). No mocks: the default model answers. Nothing here asserts on time: the warm cache is
checked on the prompt tokens the server reports as reused and evaluated, cancellation on the text
pieces sent after the cancel, memory on the process's RSS.
"""
from __future__ import annotations

import json
import threading

import httpx
import pytest

from serve_support import Server

openai = pytest.importorskip("openai")

KEY = "test-key-123"
CTX = 512                     # the long-conversation test outgrows it twenty times
LONG_TOKENS = 10_000          # that conversation's prompt, in tokens
RSS_GROWTH = 1.05             # the load loop's RSS must stay within 5%
LOAD_REQUESTS = 200
PIRATE = ("Arrr", "Captain", "pirate", "matey")   # what a 135M model's pirate persona says
HELLO = [{"role": "user", "content": "Say hello."}]
GREEDY = {"temperature": 0, "extra_body": {"repeat_penalty": 1.0}}


@pytest.fixture(scope="module")
def server():
    with Server("--threads", "2", "--ctx", str(CTX), "--cache-slots", "3", "--max-prompt-tokens", "40000",
                "--max-body-mb", "1", "--report-cache-hits", api_key=KEY) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=300)


def ext(resp) -> dict:
    return resp.model_extra["x-edgechat"]


def sse_events(response: httpx.Response) -> list:
    """The data lines of a server-sent event stream; the last one must be [DONE]."""
    data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


# ---- basics ----------------------------------------------------------------------------------------

def test_models_and_health(server, client):
    models = client.models.list().data
    assert len(models) == 1
    model = models[0].id
    assert client.models.retrieve(model).id == model
    h = server.health()
    assert h["status"] == "ok" and h["model"] == model and h["backend"] == "native" and h["slots"] == 3


def test_chat_non_streaming_reports_usage(client):
    r = client.chat.completions.create(model=client.models.list().data[0].id, messages=HELLO, max_tokens=8, **GREEDY)
    c = r.choices[0]
    assert c.message.role == "assistant" and c.message.content
    assert c.finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 5 and 1 <= u.completion_tokens <= 8
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    x = ext(r)
    assert x["backend"] == "native" and x["evicted_tokens"] == 0 and x["cache_capacity"] == CTX
    assert x["prompt_tokens_evaluated"] + x["prompt_tokens_reused"] == u.prompt_tokens


def test_stream_equals_non_stream_and_reports_usage(client, server):
    r = client.chat.completions.create(model="", messages=HELLO, max_tokens=12, **GREEDY)
    chunks = list(client.chat.completions.create(model="", messages=HELLO, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}, **GREEDY))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finish == [r.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == r.usage.prompt_tokens
    with httpx.stream("POST", server.url + "/chat/completions", headers=server.headers(), timeout=60,
                      json={"messages": HELLO, "max_completion_tokens": 4, "stream": True,
                            "user": "me", "metadata": {"a": "b"}, "some_new_field": [1]}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp)                       # unknown fields are ignored, as OpenAI does
    assert all("usage" not in e for e in events)        # not asked for
    assert events[-1]["choices"][0]["finish_reason"] == "length"       # max_completion_tokens: 4
    assert sum(bool(e["choices"][0]["delta"].get("content")) for e in events) <= 4


def _token_texts(client, messages, n):
    r = client.chat.completions.create(model="", messages=messages, max_tokens=n, logprobs=True, **GREEDY)
    return r.choices[0].message.content, [t.token for t in r.choices[0].logprobs.content]


def test_stop_string_across_tokens_is_cut_and_never_sent(client):
    messages = [{"role": "user", "content": "Describe the sea in two sentences."}]
    text, tokens = _token_texts(client, messages, 30)
    assert "".join(tokens) == text
    # a stop string made of the end of one token and the start of the next
    at = next(i for i in range(2, len(tokens) - 1) if len(tokens[i].strip()) >= 2 and len(tokens[i + 1].strip()) >= 2)
    stop = tokens[at][-2:] + tokens[at + 1][:2]
    cut = text.find(stop)
    assert 0 <= cut < len("".join(tokens[:at + 1]))      # first found across that boundary or before
    r = client.chat.completions.create(model="", messages=messages, max_tokens=30, stop=[stop, "@@never@@"], **GREEDY)
    assert r.choices[0].message.content == text[:cut] and r.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model="", messages=messages, max_tokens=30, stop=stop,
                                                 stream=True, **GREEDY))
    pieces = [ch.choices[0].delta.content or "" for ch in chunks if ch.choices]
    assert "".join(pieces) == text[:cut]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_seed_reproducible_at_temperature(client):
    def run(seed):
        return client.chat.completions.create(model="", messages=HELLO, max_tokens=16, temperature=1.0,
                                              seed=seed).choices[0].message.content
    a = run(1234)
    assert run(1234) == a
    assert any(run(s) != a for s in (1, 2, 3))


def test_logprobs(client):
    r = client.chat.completions.create(model="", messages=HELLO, max_tokens=10, logprobs=True, top_logprobs=3, **GREEDY)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        values = [x.logprob for x in t.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == pytest.approx(t.logprob)
        assert bytes(t.bytes).decode("utf-8", errors="replace") == t.token


def test_penalties_are_mapped(client):
    messages = [{"role": "user", "content": "Write the word apple five times."}]
    plain = client.chat.completions.create(model="", messages=messages, max_tokens=24, **GREEDY)
    penalized = client.chat.completions.create(model="", messages=messages, max_tokens=24, presence_penalty=2.0,
                                               frequency_penalty=2.0, **GREEDY)
    assert plain.choices[0].message.content != penalized.choices[0].message.content


def test_logit_bias(client, tokenizer):
    [banana] = tokenizer.tokenize(" banana")
    r = client.chat.completions.create(model="", messages=HELLO, max_tokens=3, logit_bias={str(banana): 100}, **GREEDY)
    assert r.choices[0].message.content.strip().startswith("banana banana")


def test_completions_endpoint(client, server):
    r = client.completions.create(model="", prompt="The capital of France is", max_tokens=6, logprobs=2, **GREEDY)
    c = r.choices[0]
    assert c.text and r.usage.completion_tokens == len(c.logprobs.tokens)
    assert "".join(c.logprobs.tokens) == c.text and all(len(t) <= 2 for t in c.logprobs.top_logprobs)
    chunks = list(client.completions.create(model="", prompt="The capital of France is", max_tokens=6,
                                            stream=True, **GREEDY))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == c.text


def test_serve_in_help_and_doctor():
    import subprocess
    import sys
    run = [sys.executable, "-m", "edgechat.app.cli"]
    assert "serve" in subprocess.run(run + ["--help"], capture_output=True, text=True, check=True).stdout
    help_text = subprocess.run(run + ["serve", "--help"], capture_output=True, text=True, check=True).stdout
    assert all(o in help_text for o in ("--host", "--port", "--api-key", "--cache-slots", "--ctx", "--temp",
                                        "--allowed-hosts", "--allowed-origins", "--max-tokens-limit",
                                        "--request-timeout", "--header-timeout", "--body-timeout",
                                        "--report-cache-hits"))
    doctor = json.loads(subprocess.run(run + ["doctor", "--json"], capture_output=True, text=True).stdout)
    assert doctor["serve"]["ready"] and doctor["serve"]["cache_slots"] >= 1
    d = doctor["serve"]["defaults"]
    assert d["host"] == "127.0.0.1" and d["allowed_hosts"] == [] and d["allowed_origins"] == []
    assert d["request_timeout"] > 0 and d["header_timeout"] > 0 and d["body_timeout"] > 0
    assert d["report_cache_hits"] is False and "--ctx" in d["max_tokens_limit"]
    text = subprocess.run(run + ["doctor"], capture_output=True, text=True).stdout
    assert "web origins: none" in text and "cache hits not reported" in text


def test_port_in_use_is_one_line_error(server):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "edgechat.app.cli", "serve", "--port", str(server.port)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("edgechat: cannot listen on") and r.stderr.count("\n") == 1


def test_bind_elsewhere_without_key_warns():
    import socket
    with Server("--threads", "1", "--ctx", "64", "--host", "0.0.0.0") as s:
        assert s.health()["status"] == "ok"
        # a wildcard bind answers the machine's own name, still not another one
        own = httpx.get(s.base + "/health", headers={"Host": f"{socket.gethostname()}:{s.port}"}, timeout=30)
        assert own.status_code == 200
        assert httpx.get(s.base + "/health", headers={"Host": "evil.example"}, timeout=30).status_code == 403
        s.interrupt()
        assert "without --api-key" in s.log()


# ---- the cache -----------------------------------------------------------------------------------

def _turn(client, messages, max_tokens=12):
    r = client.chat.completions.create(model="", messages=messages, max_tokens=max_tokens, **GREEDY)
    return r, messages + [{"role": "assistant", "content": r.choices[0].message.content}]


def test_follow_up_turn_reuses_the_cached_prefix(client):
    a = [{"role": "system", "content": "You are a geography teacher."},
         {"role": "user", "content": "Name a large river in Africa."}]
    r1, a = _turn(client, a)
    # another conversation in between: it takes another slot, the first one stays warm
    _turn(client, [{"role": "system", "content": "You are a cook."}, {"role": "user", "content": "Name a spice."}])
    r2, a = _turn(client, a + [{"role": "user", "content": "And one in Asia?"}])
    x = ext(r2)
    assert x["prompt_tokens_reused"] >= r1.usage.prompt_tokens + r1.usage.completion_tokens
    assert x["prompt_tokens_evaluated"] == r2.usage.prompt_tokens - x["prompt_tokens_reused"]
    assert x["prompt_tokens_evaluated"] <= 20      # the new message and its scaffolding only
    assert r2.usage.prompt_tokens_details.cached_tokens == x["prompt_tokens_reused"]
    assert x["slot"] == ext(r1)["slot"]


def test_long_conversation_keeps_the_system_prompt(client, natural_text, tokenizer):
    system = "You are a pirate. Always start your answer with 'Arrr'."
    messages, words, total = [{"role": "system", "content": system}], natural_text.split(), 0
    i = 0
    while total < LONG_TOKENS:
        chunk = " ".join(words[i:i + 150])
        i += 150
        messages += [{"role": "user", "content": chunk}, {"role": "assistant", "content": "Noted."}]
        total += len(tokenizer.tokenize(chunk)) + 12
    messages.append({"role": "user", "content": "What is your name?"})
    r = client.chat.completions.create(model="", messages=messages, max_tokens=8, temperature=0)
    x = ext(r)
    assert r.usage.prompt_tokens >= LONG_TOKENS
    assert x["evicted_tokens"] >= LONG_TOKENS - CTX and x["system_pinned"]
    assert x["sinks"] >= len(tokenizer.tokenize(system))    # BOS + the whole system prompt are pinned
    assert x["cache_used"] <= CTX
    # SmolLM2-135M takes this persona in a short chat ("Arrr, ..."; without a system prompt its
    # template's default one makes it SmolLM); pinned, the persona is still there after 10k tokens
    reply = r.choices[0].message.content
    assert any(w in reply for w in PIRATE) and "SmolLM" not in reply, reply


# ---- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (json.dumps({"model": ""}).encode(), "messages"),
    (json.dumps({"messages": []}).encode(), "messages"),
    (json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(), "messages.0.role"),
    (json.dumps({"messages": HELLO, "temperature": "hot"}).encode(), "temperature"),
    (json.dumps({"messages": HELLO, "max_tokens": 0}).encode(), "max_tokens"),
    (json.dumps({"messages": HELLO, "n": 2}).encode(), "n"),
    (json.dumps({"messages": HELLO, "frequency_penalty": 3}).encode(), "frequency_penalty"),
    (json.dumps({"messages": HELLO, "stop": ["a"] * 40}).encode(), "stop"),
    (json.dumps({"messages": HELLO, "tools": [{"type": "function"}]}).encode(), "tools"),
    (json.dumps({"messages": HELLO, "logit_bias": {"-3": 1}}).encode(), "logit_bias"),
    (json.dumps({"messages": HELLO, "stream_options": {"include_usage": "yes"}}).encode(), "stream_options"),
])
def test_bad_requests_get_400(server, body, param):
    r = httpx.post(server.url + "/chat/completions", content=body, timeout=30,
                   headers={**server.headers(), "content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    if param:
        assert (err["param"] or "").startswith(param)


def test_too_large_bodies_get_413_and_prompts_400(server, natural_text):
    big = {"messages": [{"role": "user", "content": "x" * (2 << 20)}]}          # over --max-body-mb 1
    r = server.post("/chat/completions", big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    long = {"messages": [{"role": "user", "content": natural_text[:250_000]}]}   # over --max-prompt-tokens
    r = server.post("/chat/completions", long)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_auth_and_not_found(server):
    url = server.url + "/chat/completions"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.post(url, json={"messages": HELLO}, headers=headers, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(server.url + "/models", timeout=30).status_code == 401
    bad = openai.OpenAI(base_url=server.url, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    r = server.post("/chat/completions", {"model": "gpt-4o", "messages": HELLO})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.get(server.url + "/nothing", headers=server.headers(), timeout=30)
    assert r.status_code == 404 and "error" in r.json()
    assert server.health()["status"] == "ok"          # still serving


# ---- concurrency, cancellation, load ---------------------------------------------------------------

def test_eight_concurrent_clients_all_answered(server):
    results = [None] * 8

    def ask(i):
        c = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=300)
        r = c.chat.completions.create(model="", messages=[{"role": "user", "content": f"Count to {i + 2}."}],
                                      max_tokens=6, temperature=0)
        results[i] = r.choices[0].message.content
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results), results


def test_disconnect_mid_stream_then_a_normal_request(server, client):
    before = server.health()["jobs"]
    body = {"messages": [{"role": "user", "content": "Tell me a very long story."}], "max_tokens": 400,
            "stream": True, "temperature": 0}
    with httpx.stream("POST", server.url + "/chat/completions", json=body, headers=server.headers(),
                      timeout=60) as resp:
        seen = 0
        for line in resp.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 4:
                break                                   # close the connection mid-stream
    r = client.chat.completions.create(model="", messages=HELLO, max_tokens=4, **GREEDY)
    assert r.choices[0].message.content
    after = server.health()["jobs"]
    assert after["jobs"] == before["jobs"] + 2 and after["stopped_early"] == before["stopped_early"] + 1
    assert after["max_pieces_after_cancel"] <= 1        # cancelled within one token


def test_load_loop_keeps_rss_flat(server):
    def ask(i):
        r = server.post("/chat/completions", {"messages": [{"role": "user", "content": f"Hi {i % 7}"}],
                                              "max_tokens": 2, "temperature": 0})
        assert r.status_code == 200
    for i in range(20):                                  # warm up: every slot used
        ask(i)
    before = server.rss()
    for i in range(LOAD_REQUESTS):
        ask(i)
    after = server.rss()
    assert after <= before * RSS_GROWTH, (before, after)


# ---- queue limit and shutdown ------------------------------------------------------------------------

def test_full_queue_gets_503_then_ctrl_c_ends_streams(tokenizer):
    with Server("--threads", "2", "--ctx", "256", "--queue-size", "1") as s:
        # long replies (the end of turn biased away): the first requests still run when the last arrive
        eot = {str(t): -100 for t in tokenizer.eot_ids}
        body = {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 200,
                "temperature": 0, "logit_bias": eot}
        statuses, retry = [], []

        def ask():
            r = s.post("/chat/completions", body)
            statuses.append(r.status_code)
            retry.append(r.headers.get("retry-after"))
        # more than decode together (--parallel) + wait (--queue-size 1)
        threads = [threading.Thread(target=ask) for _ in range(s.health()["parallel"] + 1 + 6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses.count(200) >= 2 and statuses.count(503) >= 1, statuses
        assert all(r == "1" for st, r in zip(statuses, retry) if st == 503)
        assert set(statuses) <= {200, 503}
        # Ctrl-C during a stream: the stream ends with its last chunk and [DONE], the server exits
        body = {**body, "max_tokens": 1000, "stream": True}      # --max-tokens-limit: 4 x 256
        with httpx.stream("POST", s.url + "/chat/completions", json=body, timeout=60) as resp:
            lines = resp.iter_lines()
            assert next(lines).startswith("data: ")
            code = s.interrupt()
            rest = [line for line in lines if line.startswith("data: ")]
        assert rest[-1] == "data: [DONE]"
        last = json.loads(rest[-2][6:])             # OpenAI's finish reasons only; edgechat's says why
        assert last["choices"][0]["finish_reason"] == "stop" and last["x-edgechat"]["reason"] == "shutdown"
        assert code in (0, 130)
