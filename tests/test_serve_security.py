"""``edgechat serve`` against a hostile client on the same machine (issue 30's probe, as tests).

Real servers on loopback ports, raw sockets where the HTTP client would be too polite (dropped
streams, trickled headers, bodies cut short), httpx elsewhere. Every wait is bounded by a socket
timeout or a deadline on a condition; nothing asserts on time.
"""
from __future__ import annotations

import json
import select
import socket
import threading

import httpx
import pytest

from serve_support import Server

CTX = 128
LIMIT = 4 * CTX                 # --max-tokens-limit's default: 4 x --ctx
GOOD_HOST = "good.host"
GOOD_ORIGIN = "http://good.example"
HELLO = [{"role": "user", "content": "Say hello."}]
DROPPED = 30                    # concurrent streams that read the headers and close (the probe's number)
ROUNDS = 3
WAIT_S = 120                    # bound on any one socket wait (a loaded 2-core machine)
SLOW_S = 1                      # the short server's header and body timeouts, in seconds
REQUEST_S = 3                   # its request timeout: a short reply fits in it on a loaded machine
PACE_S = 0.2                    # a trickling client's pause between bytes


@pytest.fixture(scope="module")
def server():
    with Server("--threads", "2", "--ctx", str(CTX), "--max-body-mb", "1", "--queue-size", str(DROPPED + 2),
                "--allowed-hosts", GOOD_HOST, "--allowed-origins", GOOD_ORIGIN) as s:
        yield s


@pytest.fixture(scope="module")
def short():
    """A server with short timeouts and no token limit to speak of: only the clock ends a reply."""
    with Server("--threads", "2", "--ctx", str(CTX), "--max-tokens-limit", "100000000",
                "--request-timeout", str(REQUEST_S), "--header-timeout", str(SLOW_S),
                "--body-timeout", str(SLOW_S)) as s:
        yield s


def post(s: Server, body, path="/chat/completions", **kw) -> httpx.Response:
    return httpx.post(s.url + path, content=body if isinstance(body, bytes) else json.dumps(body),
                      timeout=WAIT_S, **{"headers": {"content-type": "application/json"}, **kw})


def error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    return err


def raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    sock.sendall(data)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def head(method: str, path: str, port: int, headers: dict) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def ok_chat(s: Server, **extra) -> dict:
    r = post(s, {"messages": HELLO, "max_tokens": 2, "temperature": 0, **extra})
    assert r.status_code == 200, r.text
    return r.json()


# ---- 1. a dropped client never kills the server ----------------------------------------------------

def _drop_after_headers(port: int, i: int, statuses: list) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": f"Tell me a long story, number {i}."}],
                       "max_tokens": 200, "stream": True}).encode()
    with raw(port, head("POST", "/v1/chat/completions", port, {"Content-Type": "application/json",
                                                                "Content-Length": len(body)}) + body) as sock:
        got = b""
        while b"\r\n\r\n" not in got and (chunk := sock.recv(4096)):
            got += chunk
        statuses.append(got.split(b" ", 2)[1] if got else b"closed")
    # closed here: the server's next write goes to a closed socket (EPIPE; SIGPIPE unless ignored)


def test_streams_dropped_after_the_headers_never_kill_the_server(server):
    for _ in range(ROUNDS):
        statuses = []
        threads = [threading.Thread(target=_drop_after_headers, args=(server.port, i, statuses))
                   for i in range(DROPPED)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses.count(b"200") == DROPPED, statuses
        assert server.proc.poll() is None, server.log()
    assert ok_chat(server)["choices"][0]["message"]["content"]
    assert server.proc.poll() is None


# ---- 2. who may call: Host, Origin, content type ---------------------------------------------------

@pytest.mark.parametrize("method,path", [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
                                         ("GET", "/v1/models"), ("GET", "/health")])
def test_a_foreign_host_gets_403(server, method, path):
    body = {"messages": HELLO, "prompt": "Hi", "max_tokens": 2}
    r = httpx.request(method, server.base + path, json=body if method == "POST" else None,
                      headers={"Host": "evil.example"}, timeout=WAIT_S)
    assert error(r, 403)["code"] == "host_not_allowed"
    r = httpx.request(method, server.base + path, json=body if method == "POST" else None,
                      headers={"Host": f"evil.example:{server.port}"}, timeout=WAIT_S)
    assert r.status_code == 403


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "127.0.0.1", "[::1]", GOOD_HOST])
def test_this_machine_and_allowed_hosts_with_or_without_the_port(server, host):
    for value in (host, f"{host}:{server.port}"):
        r = httpx.get(server.url + "/models", headers={"Host": value}, timeout=WAIT_S)
        assert r.status_code == 200, (value, r.text)


def test_an_origin_not_allowed_gets_403_and_no_cors(server):
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{server.port}"):
        r = httpx.get(server.url + "/models", headers={"Origin": origin}, timeout=WAIT_S)
        assert error(r, 403)["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in r.headers
        r = post(server, {"messages": HELLO, "max_tokens": 2}, headers={"Origin": origin, "content-type": "text/plain"})
        assert r.status_code == 403
        r = httpx.options(server.url + "/chat/completions", timeout=WAIT_S,
                          headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_an_allowed_origin_gets_cors_and_a_working_preflight(server):
    r = httpx.options(server.url + "/chat/completions", timeout=WAIT_S,
                      headers={"Origin": GOOD_ORIGIN, "Access-Control-Request-Method": "POST",
                               "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == GOOD_ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    r = post(server, {"messages": HELLO, "max_tokens": 2, "temperature": 0},
             headers={"Origin": GOOD_ORIGIN, "content-type": "application/json"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == GOOD_ORIGIN
    assert r.json()["choices"][0]["message"]["content"]
    r = httpx.get(server.url + "/models", timeout=WAIT_S)           # no Origin (not a browser): no CORS
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_body_that_is_not_json_gets_415(server, content_type):
    body = json.dumps({"messages": HELLO, "max_tokens": 2}).encode()
    headers = {"content-type": content_type} if content_type else {}
    r = httpx.post(server.url + "/chat/completions", content=body, headers=headers, timeout=WAIT_S)
    assert error(r, 415)["code"] == "unsupported_media_type"
    r = httpx.post(server.url + "/completions", content=body, headers=headers, timeout=WAIT_S)
    assert r.status_code == 415


def test_json_with_a_charset_is_json(server):
    ok_chat(server)
    r = post(server, {"messages": HELLO, "max_tokens": 2}, headers={"content-type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200, r.text


# ---- 3. bounds ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_over_the_limit_gets_400_naming_it(server, field):
    for value in (10**30, LIMIT + 1):
        err = error(post(server, {"messages": HELLO, field: value}), 400)
        assert err["param"] == field and str(LIMIT) in err["message"] and "--max-tokens-limit" in err["message"]
    err = error(post(server, {"prompt": "Hi", "max_tokens": 10**30}, "/completions"), 400)
    assert err["param"] == "max_tokens" and str(LIMIT) in err["message"]


def _eos_banned(tokenizer) -> dict:
    return {str(t): -100 for t in tokenizer.eot_ids}


def test_an_eos_biased_request_ends_at_the_limit_then_the_next_is_served(server, tokenizer):
    r = post(server, {"messages": [{"role": "user", "content": "Count."}], "temperature": 0,
                      "logit_bias": _eos_banned(tokenizer)})                 # no max_tokens: the limit
    body = r.json()
    assert r.status_code == 200 and body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == LIMIT
    assert ok_chat(server)["choices"][0]["message"]["content"]


def test_serve_max_tokens_is_a_request_s_default(tokenizer):
    """``serve --max-tokens N``: a request without max_tokens stops after N; one that asks gets its own."""
    with Server("--threads", "2", "--ctx", str(CTX), "--max-tokens", "5") as s:
        body = {"messages": [{"role": "user", "content": "Count."}], "temperature": 0,
                "logit_bias": _eos_banned(tokenizer)}
        r = post(s, body).json()
        assert r["choices"][0]["finish_reason"] == "length" and r["usage"]["completion_tokens"] == 5
        r = post(s, {**body, "max_tokens": 7}).json()
        assert r["choices"][0]["finish_reason"] == "length" and r["usage"]["completion_tokens"] == 7


def test_an_eos_biased_request_ends_by_the_request_timeout(short, tokenizer):
    body = {"messages": [{"role": "user", "content": "Count."}], "temperature": 0,
            "logit_bias": _eos_banned(tokenizer)}
    r = post(short, body).json()
    assert r["choices"][0]["finish_reason"] == "length" and r["x-edgechat"]["reason"] == "request_timeout"
    assert r["usage"]["completion_tokens"] >= 1
    with httpx.stream("POST", short.url + "/chat/completions", json={**body, "stream": True}, timeout=WAIT_S) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert events[-1]["x-edgechat"]["reason"] == "request_timeout"
    r = post(short, {"messages": HELLO, "max_tokens": 1, "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 1


@pytest.mark.parametrize("key", ["100000000000000000000", "²", "-3", "+3", " 3", "3.0", "1e3", "", "٣"])
def test_logit_bias_keys_are_decimal_token_ids(server, key):
    err = error(post(server, {"messages": HELLO, "max_tokens": 2, "logit_bias": {key: 1}}), 400)
    assert err["param"] == "logit_bias" and err["type"] == "invalid_request_error"


def test_logit_bias_outside_the_vocabulary_gets_400(server, tokenizer):
    err = error(post(server, {"messages": HELLO, "max_tokens": 2, "logit_bias": {str(tokenizer.n_vocab): 1}}), 400)
    assert err["param"] == "logit_bias" and str(tokenizer.n_vocab - 1) in err["message"]
    ok_chat(server, logit_bias={str(tokenizer.n_vocab - 1): 1})


@pytest.mark.parametrize("field,text", [
    ("repeat_penalty", "0"), ("repeat_penalty", "Infinity"), ("repeat_penalty", "NaN"), ("repeat_penalty", "-1"),
    ("temperature", "Infinity"), ("temperature", "1e999"), ("top_p", "NaN"), ("min_p", "-Infinity"),
    ("frequency_penalty", "NaN"), ("top_k", "100000000000000000000"), ("seed", "1.5"),
])
def test_numbers_must_be_finite_and_in_range(server, field, text):
    body = b'{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "%s": %s}' % (field.encode(), text.encode())
    err = error(post(server, body), 400)
    assert err["param"] == field, err


def test_a_repeat_penalty_just_above_zero_is_served(server):
    r = ok_chat(server, repeat_penalty=0.01)
    assert r["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_50_mb_body_gets_413(server):
    with raw(server.port, head("POST", "/v1/chat/completions", server.port,
                               {"Content-Type": "application/json", "Content-Length": 50 << 20}) + b"{" * 65536) as s:
        reply = read_all(s)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_too_large"
    # no Content-Length (chunked): counted as it comes
    with raw(server.port, head("POST", "/v1/chat/completions", server.port,
                               {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})) as s:
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        try:
            for _ in range(50 << 4):                   # 50 MB, unless the server answers first
                s.sendall(chunk)
        except OSError:                                # it answered and closed
            pass
        reply = read_all(s)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert server.proc.poll() is None


# ---- 4. the shared cache is not reported ----------------------------------------------------------

def test_no_reuse_counts_without_report_cache_hits(server):
    messages = [{"role": "system", "content": "The PIN is 4721."}, {"role": "user", "content": "Hi."}]
    for _ in range(2):                                 # the second one continues the cached prefix
        r = ok_chat(server, messages=messages)
        assert "prompt_tokens_details" not in r["usage"] and r["usage"]["prompt_tokens"] > 5
        x = r["x-edgechat"]
        assert x["backend"] == "native"
        assert not {"prompt_tokens_reused", "prompt_tokens_evaluated", "slot", "cache_used"} & set(x), x
    body = {"messages": messages, "max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.url + "/chat/completions", json=body, timeout=WAIT_S) as resp:
        text = resp.read().decode()
    assert '"usage"' in text and "cached_tokens" not in text and "prompt_tokens_reused" not in text


# ---- 5. client failures: one log line each; timeouts -------------------------------------------------

def _logged_by(s: Server, act) -> str:
    """What the server logs while ``act`` runs: up to the marker line a 404 logs after it."""
    start = s.log_lines()
    act()
    marker = f"/v1/marker-{start}"
    assert httpx.get(s.base + marker, timeout=WAIT_S).status_code == 404
    return s.wait_log(marker, start)


def test_a_body_cut_short_logs_one_line(server):
    def cut():
        with raw(server.port, head("POST", "/v1/chat/completions", server.port,
                                   {"Content-Type": "application/json", "Content-Length": 1000}) + b'{"messages"'):
            pass
        server.wait_log("went away while sending the body")
    lines = _logged_by(server, cut).splitlines()
    assert len(lines) == 2 and "went away while sending the body (11 of 1000 bytes" in lines[0], lines
    assert "Traceback" not in server.log()


def test_a_bad_request_logs_one_line(server):
    lines = _logged_by(server, lambda: error(post(server, b"{not json"), 400)).splitlines()
    assert len(lines) == 2 and ": 400 the body is not a JSON object" in lines[0], lines


RESET = b"(reset)"


def _trickle(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` a byte every PACE_S seconds until the server answers or closes; what it sent, or
    RESET: a byte that reaches the server as it closes makes it reset the connection, and the reset
    may discard its answer before it is read (the server's log says what it did)."""
    stop = threading.Event()

    def send():
        for i in range(len(data)):
            if stop.is_set() or select.select([sock], [], [], PACE_S)[0]:
                return                                  # the server answered or closed
            try:
                sock.sendall(data[i:i + 1])
            except OSError:
                return
    t = threading.Thread(target=send)
    t.start()
    try:
        return read_all(sock)
    except ConnectionResetError:
        return RESET
    finally:
        stop.set()
        t.join()


def test_headers_trickled_or_stalled_get_408_and_others_are_served(short):
    start = short.log_lines()
    request = head("POST", "/v1/chat/completions", short.port, {"Content-Type": "application/json",
                                                                 "Content-Length": 2}) + b"{}"
    with raw(short.port, request[:20]) as sock:            # then nothing more
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")
    replies = []

    def slowloris():
        with raw(short.port, b"") as sock:
            replies.append(_trickle(sock, request * 10))
    t = threading.Thread(target=slowloris)
    t.start()
    ok_chat(short)                                          # served while the trickle goes on
    t.join()
    assert replies[0] == RESET or replies[0].startswith(b"HTTP/1.1 408 ") and b"request_timeout" in replies[0]
    assert short.wait_log("request headers did not arrive", start).count("408 the request headers") == 2
    with raw(short.port, b"") as sock:                     # connected, silent: closed without a word
        assert read_all(sock) == b""


def test_a_trickled_body_gets_408(short):
    request = head("POST", "/v1/chat/completions", short.port, {"Content-Type": "application/json",
                                                                 "Content-Length": 1000})
    start = short.log_lines()
    with raw(short.port, request) as sock:
        reply = _trickle(sock, b" " * 1000)
    assert reply == RESET or reply.startswith(b"HTTP/1.1 408 ") and b"request body did not arrive" in reply
    assert short.wait_log("408 the request body did not arrive", start).count("\n") == 1
    assert "Traceback" not in short.log()
    ok_chat(short)


# ---- 6. errors name the field, union fields too ------------------------------------------------------

@pytest.mark.parametrize("body,param,words", [
    ({"messages": HELLO, "stop": ["x"] * 10_000}, "stop", "at most 16"),
    ({"messages": HELLO, "stop": 5}, "stop", "a string or a list"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content.0.type", "'image_url'"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", "a string, a list of text parts"),
    ({"messages": HELLO, "max_tokens": 1.5}, "max_tokens", "integer"),
])
def test_union_and_field_errors_name_the_field(server, body, param, words):
    err = error(post(server, body), 400)
    assert err["param"] == param and err["message"].startswith(param + ": ") and words in err["message"], err


@pytest.mark.parametrize("prompt,param", [([1, "a"], "prompt.1"), (["a", "b"], "prompt"), ([-1], "prompt.0"),
                                          ({"a": 1}, "prompt")])
def test_completion_prompt_errors_name_the_item(server, prompt, param):
    err = error(post(server, {"prompt": prompt, "max_tokens": 2}, "/completions"), 400)
    assert err["param"] == param, err


# ---- pure functions ----------------------------------------------------------------------------------

def test_host_names_and_the_allowlist():
    from edgechat.app.serve.guard import allowed_hosts, host_name
    assert host_name("[::1]:8080") == host_name("[::1]") == host_name("::1") == "::1"
    assert host_name("LocalHost.:80") == "localhost" and host_name("10.0.0.2:1") == "10.0.0.2"
    assert host_name("[::1]evil.example") != "::1" and host_name("127.0.0.1:evil") != "127.0.0.1"
    local = allowed_hosts("127.0.0.1", ["a.lan"])
    assert {"127.0.0.1", "localhost", "::1", "a.lan"} <= local and socket.gethostname().lower() not in local
    assert socket.gethostname().lower() in allowed_hosts("0.0.0.0", [])
    assert allowed_hosts("127.0.0.1", ["*"]) is None


def test_wildcard_allowlists_warn(server):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "edgechat.app.cli", "serve", "--port", str(server.port),
                        "--allowed-hosts", "*", "--allowed-origins", "http://a.example,*"],
                       capture_output=True, text=True, timeout=WAIT_S)
    lines = r.stderr.splitlines()          # the port is taken: the warnings, then the one-line error
    assert r.returncode == 1 and len(lines) == 3, r.stderr
    assert "--allowed-hosts '*'" in lines[0] and "--allowed-origins '*'" in lines[1]
    assert lines[2].startswith("edgechat: cannot listen on")
