"""A chat source on an OpenAI-compatible server (vLLM, SGLang, llama-server, ollama, ``edgechat serve``):
messages in, the same ``TextEvent``s and ``DoneEvent`` as ``Engine.chat`` out. A URL in, never a model
name: the model id is the server's.

Each turn sends the whole conversation to ``/v1/chat/completions`` with ``stream: true`` (the server owns
its cache) and feeds the streamed text to a text-only ``Reply`` (stop strings, a ``<think>`` block, the
time to the first token). The stream is read on a thread of its own (``remote_stream.EventStream``), so
a cancel ends the reply at once even while the server sends nothing, and a server silent for longer
than the read timeout ends it.
Faults are one-line ``RemoteError``s; a stream cut after some text came ends the reply with finish
reason "error" (``DoneEvent.error`` says why) and the partial text kept. Redirects are followed only on
the same scheme, host and port. The key is sent as a bearer token and kept nowhere else: not in
``info``, errors (a server's message quoting it is redacted) or logs.
"""
from __future__ import annotations

import json
import ssl
import threading
import time
from typing import Iterator, Sequence

import httpx

from .errors import EdgechatError
from .events import DoneEvent, Stats, TextEvent
from .info import EngineInfo
from .remote_stream import EventStream, add_calls, delta_text, one_line
from .reply import Reply
from .sampler import DEFAULTS, RANDOM_SEED, SamplingParams

CONNECT_TIMEOUT_S = 10.0   # to open a connection (TCP and TLS)
READ_TIMEOUT_S = 120.0     # a server that sends nothing this long has stalled (a big prompt on a busy
                           # server can take a minute before its first token: vLLM's and llama-server's
                           # streams send nothing until then)
MAX_REDIRECTS = 3
# finish reasons as servers send them -> the engine's; others pass through unchanged
FINISH = {"stop": "stop", "eos": "stop", "length": "length", "function_call": "tool_calls"}
# llama.cpp-server extensions; sent only when they differ from the local defaults (a server that does
# not know them, OpenAI's own, refuses them; vLLM, SGLang, ollama and llama-server take them)
EXTENSIONS = ("top_k", "min_p", "repeat_penalty")
# what servers say when the conversation is longer than their context
CONTEXT_WORDS = ("context length", "context_length", "context size", "context window", "maximum context",
                 "too many tokens", "exceed_context")


class RemoteError(EdgechatError):
    """A server that cannot be reached or refused the request: one line, no traceback."""


class ContextTooLong(RemoteError):
    """The server's context is shorter than the conversation (a 400 for context length)."""


def normalize_url(url: str) -> str:
    """The server's API base: ``http(s)://host[:port]/path``; a URL without a path gets ``/v1`` (the
    OpenAI clients' base URL convention: ``http://localhost:11434/v1``)."""
    try:
        u = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as e:
        raise RemoteError(f"not a URL: {url!r} ({e})") from None
    if u.scheme not in ("http", "https") or not u.host:
        raise RemoteError(f"the server URL must start with http:// or https:// and name a host, got {url!r}")
    if u.userinfo:
        raise RemoteError("the server URL must not hold a user or password: pass the key with --remote-key")
    path = u.path.rstrip("/") or "/v1"
    return str(u.copy_with(path=path, query=None, fragment=None))


class RemoteSpeculation:
    """Speculation as the app reads it (``Engine.speculation``): the server decides, nothing is known here."""

    mode = "remote"
    drafter = None
    note = "the server decides"

    def close(self) -> None:
        pass


class RemoteChat:
    """An OpenAI-compatible server as a chat source with ``Engine.chat``'s contract.

    Args:
        base_url: the server's API base (``http://host:8000/v1``; ``/v1`` is added to a bare host).
        model: the server's model id; "" picks the first one it lists (``connect``).
        api_key: sent as ``Authorization: Bearer``; None sends none.
        read_timeout: seconds of silence from the server before a reply fails (stalled).
        connect_timeout: seconds to open a connection.
    """

    def __init__(self, base_url: str, model: str = "", *, api_key: str | None = None,
                 read_timeout: float = READ_TIMEOUT_S, connect_timeout: float = CONNECT_TIMEOUT_S):
        self.base_url = normalize_url(base_url)
        self.model = model or ""
        self.read_timeout = read_timeout
        self._secret = api_key or ""
        self._origin = _origin(httpx.URL(self.base_url))
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            follow_redirects=True, max_redirects=MAX_REDIRECTS, event_hooks={"request": [self._same_origin]})
        self.server_models: list[dict] = []     # what /models listed at connect
        self.speculation = RemoteSpeculation()
        self.info = self._info(0, 0.0)

    def __repr__(self) -> str:
        return f"RemoteChat({self.base_url!r}, {self.model!r})"

    # ---- the server -----------------------------------------------------------------------------

    def connect(self) -> "RemoteChat":
        """Ask the server for its models (the endpoint answers, the key is taken); pick the first one
        when no model id was given. Raises ``RemoteError`` (unreachable, refused, no such model)."""
        t0 = time.perf_counter()
        self.server_models = self.models()
        ids = [m["id"] for m in self.server_models]
        if not self.model:
            if not ids:
                raise RemoteError(f"{self.base_url} lists no models: name one with -m")
            self.model = ids[0]
        elif ids and self.model not in ids:
            raise RemoteError(f"{self.base_url} has no model '{self.model}'; it has: {', '.join(ids[:10])}")
        entry = next((m for m in self.server_models if m["id"] == self.model), {})
        self.info = self._info(entry.get("context") or 0, time.perf_counter() - t0)
        return self

    def models(self) -> list[dict]:
        """The server's models (``GET /models``): dicts with ``id``, ``owned_by`` and ``context`` (the
        context length where the server says it: vLLM's ``max_model_len``, llama-server's ``n_ctx``)."""
        r = self._call(lambda: self._client.get(self.base_url + "/models"))
        if r.status_code >= 400:
            raise self.http_error(r)
        try:
            data = r.json().get("data") or []
            return [{"id": str(m["id"]), "owned_by": m.get("owned_by") or "", "context": _context(m)}
                    for m in data if isinstance(m, dict) and "id" in m]
        except (ValueError, AttributeError) as e:
            raise RemoteError(f"{self.base_url}/models did not answer an OpenAI model list ({e})") from None

    def _info(self, ctx: int, load_s: float) -> EngineInfo:
        return EngineInfo(backend="remote", reason=f"an OpenAI-compatible server at {self.base_url}",
                          arch="remote", path=self.base_url, name=self.model or "(the server's first model)",
                          types=[], threads=0, isa="remote", ctx=ctx, sinks=0, load_s=load_s,
                          extra={"base_url": self.base_url, "speculation": "remote"})

    # ---- what the app reads of an engine --------------------------------------------------------

    def cache_info(self) -> None:
        """The cache is the server's: nothing to report here."""
        return None

    def message_spans(self) -> list:
        """Token spans are the server's: none here."""
        return []

    def close(self) -> None:
        self._client.close()

    # ---- chat -----------------------------------------------------------------------------------

    def chat(self, messages: list[dict], *, cancel: threading.Event | None = None, reply: Reply | None = None,
             stops: Sequence[str] = (), response_format: dict | None = None, tools: list | None = None,
             tool_choice=None, on_prefill=None, truncate_prompt: bool = False, reasoning: bool | None = None,
             sampler=None, template_vars: dict | None = None, **sampling) -> Iterator[TextEvent | DoneEvent]:
        """Stream the server's reply to the whole conversation, as ``Engine.chat`` does.

        Args:
            messages: dicts with ``role`` and ``content``.
            cancel: set it to stop at once (the connection is closed; the partial reply is kept).
            reply: the stream's ``Reply`` (made here if None).
            stops: stop strings (sent to the server and cut here too).
            response_format, tools, tool_choice: sent as they are (OpenAI's shapes); the tool calls
                the server streams end up in ``reply.tool_calls`` (finish reason "tool_calls").
            on_prefill, truncate_prompt, sampler: the prompt's window and the sampling are the
                server's: not used.
            reasoning: split a ``<think>`` block off the answer (default on: a server without a
                reasoning parser sends it inline; one with a parser sends ``reasoning_content``).
            **sampling: ``SamplingParams`` fields.

        Yields:
            TextEvent for each piece of text, then one DoneEvent (``cache`` None; ``stats`` from the
            server's usage and the timings measured here).
        """
        params = SamplingParams.of(**sampling)
        body = self._body(messages, params, stops, response_format, tools, tool_choice)
        if template_vars:                  # the server's template switches (vLLM, llama-server, edgechat)
            body["chat_template_kwargs"] = dict(template_vars)
        reply = reply or Reply(None, stops=stops, reasoning=reasoning is not False)
        stream = EventStream(lambda: self._client.stream("POST", self.base_url + "/chat/completions", json=body),
                             self)
        thinking, finish, usage, chunks, error, calls = False, None, None, 0, "", {}
        try:
            while not reply.done:
                kind, value = stream.get(cancel)
                if kind == "cancelled" or kind == "end":
                    finish = finish or ("cancelled" if kind == "cancelled" else "stop")
                    break
                if kind == "error":
                    if not (reply.text or reply.reasoning):
                        raise value
                    finish, error = "error", str(value)
                    break
                usage = value.get("usage") or usage
                for choice in value.get("choices") or []:
                    delta = choice.get("delta") or {}
                    add_calls(calls, delta.get("tool_calls"))
                    piece, thinking = delta_text(delta, thinking)
                    chunks += bool(piece)
                    yield from reply.feed_text(piece) if piece else ()
                    reason = choice.get("finish_reason")
                    finish = FINISH.get(reason, reason) if reason else finish
        finally:
            stream.close()
        yield from reply.close(finish or "stop")
        if calls:
            from .tools import ToolCall
            reply.tool_calls = [ToolCall(c["name"], c["arguments"], c["id"]) if c["id"] else
                                ToolCall(c["name"], c["arguments"]) for _, c in sorted(calls.items())]
        yield DoneEvent(reply.text, reply.finish_reason, _stats(reply, usage, chunks), None,
                        reasoning=reply.reasoning, error=error)

    def _body(self, messages, params: SamplingParams, stops, response_format, tools, tool_choice) -> dict:
        body = {"model": self.model, "messages": [dict(m) for m in messages],    # tool_calls and ids too
                "stream": True, "stream_options": {"include_usage": True},
                "max_tokens": params.max_tokens, "temperature": params.temp, "top_p": params.top_p}
        if params.seed is not None and params.seed != RANDOM_SEED:
            body["seed"] = params.seed
        body.update({k: getattr(params, k) for k in EXTENSIONS if getattr(params, k) != getattr(DEFAULTS, k)})
        if stops:
            body["stop"] = list(stops)
        if response_format is not None:
            body["response_format"] = response_format
        if tools:
            body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        return body

    # ---- faults ---------------------------------------------------------------------------------

    def _same_origin(self, request: httpx.Request) -> None:
        """httpx's request hook (each redirect too): a request to another scheme, host or port is refused."""
        if _origin(request.url) != self._origin:
            raise RemoteError(f"{self.base_url} redirected to another host ({request.url.scheme}://"
                              f"{request.url.host}:{request.url.port or ''}): refused")

    def _call(self, send):
        """Run an httpx call; its transport errors become one-line ``RemoteError``s."""
        try:
            return send()
        except httpx.HTTPError as e:
            raise self.transport_error(e) from None

    def transport_error(self, e: Exception) -> RemoteError:
        """A transport fault (no HTTP status) as one line."""
        host = httpx.URL(self.base_url).host
        if isinstance(e, RemoteError):
            return e
        if isinstance(e, httpx.ConnectTimeout):
            return RemoteError(f"cannot reach {self.base_url}: no answer within {self._client.timeout.connect:g} s")
        if isinstance(e, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return RemoteError(f"the server at {host} sent nothing for {self.read_timeout:g} s: it stalled "
                               "(--remote-timeout sets how long to wait)")
        if isinstance(e, httpx.ConnectError):
            if _is_tls(e):
                return RemoteError(f"TLS error with {host}: {one_line(e)} (a private CA: set SSL_CERT_FILE)")
            return RemoteError(f"cannot reach {self.base_url}: {one_line(e)}")
        if isinstance(e, httpx.TooManyRedirects):
            return RemoteError(f"{self.base_url}: more than {MAX_REDIRECTS} redirects")
        if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError)):
            return RemoteError(f"the server at {host} closed the connection mid-reply ({one_line(e)})")
        return RemoteError(f"{self.base_url}: {type(e).__name__}: {one_line(e)}")

    def http_error(self, r: httpx.Response) -> RemoteError:
        """An HTTP error status as one line (the server's own message in it, the key redacted)."""
        s, message, code = r.status_code, *self._server_message(r)
        where = f"{r.request.method} {r.request.url.path}"
        said = f": {message}" if message else ""
        if s == 400 and (code == "context_length_exceeded" or any(w in message.lower() for w in CONTEXT_WORDS)):
            return ContextTooLong(f"the conversation is longer than the server's context{said}; start a new "
                                  "chat or clear this one")
        if s == 401:
            return RemoteError(f"the server refused the key (401){said}; pass --remote-key or set "
                               "EDGECHAT_REMOTE_KEY")
        if s == 404:
            return RemoteError(f"not found (404: {where}){said}; is {self.base_url} the server's /v1 base URL, "
                               "and the model one it serves (`edgechat models --base-url URL`)?")
        if s == 429:
            after = r.headers.get("retry-after")
            return RemoteError(f"the server is rate limiting (429){said}" + (f"; retry after {after} s" if after else ""))
        if 300 <= s < 400:
            return RemoteError(f"{where}: redirected ({s}) without a Location to follow")
        kind = {403: "forbidden"}.get(s, "server error" if s >= 500 else "refused")
        return RemoteError(f"{kind} ({s}: {where}){said}")

    def _server_message(self, r: httpx.Response) -> tuple[str, str]:
        """(message, code) of an error body: OpenAI's ``{"error": {...}}``, ``{"detail": ...}`` or text."""
        try:
            r.read()
        except httpx.HTTPError:
            return "", ""
        try:
            body = r.json()
        except ValueError:
            return self.redact(one_line(r.text)), ""
        err = body.get("error", body) if isinstance(body, dict) else body
        if not isinstance(err, dict):
            return self.redact(one_line(err)), ""
        message = err.get("message") or err.get("detail") or json.dumps(err)
        return self.redact(one_line(message)), str(err.get("code") or err.get("type") or "")

    def redact(self, text: str) -> str:
        """``text`` with the key, should a server quote it, as ***."""
        return text.replace(self._secret, "***") if self._secret else text

    def error(self, message: str) -> RemoteError:
        """A fault the stream itself shows (a server's error event, a chunk that is not JSON)."""
        return RemoteError(self.redact(message))


def _stats(reply: Reply, usage: dict | None, chunks: int) -> Stats:
    """The server's token counts (its usage; without one, the pieces received) and the timings measured
    here: time to the first piece, tokens per second as received."""
    usage = usage or {}
    s = Stats(prompt_tokens=int(usage.get("prompt_tokens") or 0),
              completion_tokens=int(usage.get("completion_tokens") or chunks))
    s.ttft_s, s.decode_s = reply.timings()
    s.prefill_s = s.ttft_s
    s.prefill_tps = s.prompt_tokens / s.prefill_s if s.prefill_s > 0 else 0.0
    s.decode_tps = (s.completion_tokens - 1) / s.decode_s if s.decode_s > 0 and s.completion_tokens > 1 else 0.0
    return s


def _context(entry: dict) -> int:
    """A model entry's context length, where the server says it."""
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    for value in (entry.get("max_model_len"), entry.get("context_length"), entry.get("context_window"),
                  meta.get("n_ctx"), meta.get("n_ctx_train")):
        if isinstance(value, int) and value > 0:
            return value
    return 0


def _origin(url: httpx.URL) -> tuple:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def _is_tls(e: BaseException) -> bool:
    seen = e
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
        if seen is e:
            break
    return False
