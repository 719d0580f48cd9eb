"""The ASGI app (Starlette): OpenAI's chat completions, completions and models, and /health.

Each request passes the Host/Origin guard (guard.py), then is read (JSON only, within the body's
size and time limits), validated and bounded (``max_tokens`` up to ``--max-tokens-limit``), then
queued for the engine thread (``EngineWorker``, or ``BatchWorker`` stepping several at once); its
events come back through the job's queue and go out as one JSON object or as server-sent events
ending in ``data: [DONE]``. A client that disconnects cancels its job (the engine stops within one
token). Every error is answered in OpenAI's shape and logged as one line; none stops the server.
"""
from __future__ import annotations

import asyncio
import hmac
import sys
import traceback
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from .errors import APIError, bad_request, busy, closing, internal, log_failure, model_not_found, unauthorized
from .guard import middleware
from .jobs import Delta, Final, Limits, run_chat, run_completion
from .responses import EXT, SSE_DONE, Reply, sse
from .schema import ChatRequest, CompletionRequest, parse
from .worker import END, EngineWorker, Job, QueueFull


@dataclass
class ServeState:
    """What the handlers share: the engine and its thread, the limits, the names it answers to."""

    engine: object
    pool: object
    worker: EngineWorker          # or a batching.BatchWorker (the same interface)
    limits: Limits
    model_id: str                 # the name /v1/models reports
    aliases: frozenset            # other names a request may use for it
    api_key: str | None
    max_body: int                 # bytes
    max_tokens_limit: int         # the most tokens a request may ask for (--max-tokens-limit)
    body_timeout: float = 30.0    # seconds to receive a whole body
    report_cache_hits: bool = False
    hosts: frozenset | None = None    # Host names answered (None: any)
    origins: frozenset = frozenset()  # web origins allowed (CORS)
    created: int = 0              # when the model was loaded (unix time)
    default_max_tokens: int | None = None   # a request without max_tokens gets this (--max-tokens), else the limit


def build_app(state: ServeState) -> Starlette:
    routes = [Route("/v1/chat/completions", chat_completions, methods=["POST"]),
              Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/models", list_models, methods=["GET"]),
              Route("/v1/models/{model:path}", get_model, methods=["GET"]),
              Route("/health", health, methods=["GET"])]
    app = Starlette(routes=routes, middleware=middleware(state.hosts, state.origins),
                    exception_handlers={APIError: _api_error, HTTPException: _http_error, Exception: _unexpected})
    app.state.serve = state
    return app


# ---- endpoints -----------------------------------------------------------------------------------

async def chat_completions(request: Request):
    s, req = await _accept(request, ChatRequest)
    job = _submit(s, lambda cancel: run_chat(s.engine, s.pool, req, s.limits, cancel), ("chat", req))
    reply = Reply("chat", s.model_id, s.report_cache_hits)
    return await _respond(request, job, reply, req, logprobs=bool(req.logprobs))


async def completions(request: Request):
    s, req = await _accept(request, CompletionRequest)
    job = _submit(s, lambda cancel: run_completion(s.engine, s.pool, req, s.limits, cancel), ("completion", req))
    reply = Reply("text", s.model_id, s.report_cache_hits)
    return await _respond(request, job, reply, req, logprobs=req.logprobs is not None)


async def list_models(request: Request):
    s = _authorized(request)
    return JSONResponse({"object": "list", "data": [_model_card(s)]})


async def get_model(request: Request):
    s = _authorized(request)
    _check_model(s, request.path_params["model"])
    return JSONResponse(_model_card(s))


async def health(request: Request):
    s: ServeState = request.app.state.serve
    i = s.engine.info
    return JSONResponse({"status": "ok", "model": s.model_id, "backend": i.backend, "ctx": i.ctx,
                         "slots": s.pool.slots, "parallel": s.worker.parallel,
                         "busy": s.worker.busy, "queued": s.worker.queued,
                         "jobs": dict(s.worker.stats)})


def _model_card(s: ServeState) -> dict:
    i = s.engine.info
    return {"id": s.model_id, "object": "model", "created": s.created, "owned_by": "edgechat",
            EXT: {"backend": i.backend, "reason": i.reason, "arch": i.arch, "types": i.types, "ctx": i.ctx,
                  "sinks": i.sinks, "pin_system": i.pin_system, "slots": s.pool.slots}}


# ---- request handling ----------------------------------------------------------------------------

async def _accept(request: Request, model):
    s = _authorized(request)
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json":
        raise closing(415, f"the body must be JSON, sent with 'Content-Type: application/json' (got "
                           f"'{media[:60] or 'no Content-Type'}')", "unsupported_media_type")
    req = parse(model, await _read_body(request, s.max_body, s.body_timeout))
    if req.model:
        _check_model(s, req.model)
    _bound(s, req)
    return s, req


def _bound(s: ServeState, req) -> None:
    """``max_tokens`` up to the server's limit (none given: ``serve --max-tokens``, else the limit, as
    OpenAI); bias on real tokens."""
    if req.limit() is None:
        req.max_tokens = min(s.default_max_tokens or s.max_tokens_limit, s.max_tokens_limit)
    elif req.limit() > s.max_tokens_limit:
        param = req.limit_param()
        raise bad_request(f"{param}: {req.limit()} is more than this server's limit of {s.max_tokens_limit} "
                          "tokens (--max-tokens-limit)", param=param)
    vocab = s.engine.tokenizer.n_vocab
    bad = [t for t in req.bias_ids() if t >= vocab]
    if bad:
        raise bad_request(f"logit_bias: token id {bad[0]} is outside the vocabulary (0..{vocab - 1})",
                          param="logit_bias")


def _authorized(request: Request) -> ServeState:
    s: ServeState = request.app.state.serve
    if s.api_key is None:
        return s
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), s.api_key.encode()):
        raise unauthorized()
    return s


def _check_model(s: ServeState, name: str) -> None:
    if name != s.model_id and name not in s.aliases:
        raise model_not_found(name, s.model_id)


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, at most ``limit`` bytes (413), in ``timeout`` seconds (408)."""
    declared = request.headers.get("content-length", "")
    declared = declared if declared.isascii() and declared.isdigit() else ""     # h11 checked it too
    if declared and int(declared) > limit:
        raise _too_large(int(declared), limit)
    parts, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(size, limit)
                parts.append(chunk)
    except TimeoutError:
        raise closing(408, f"the request body did not arrive within {timeout:g} s ({size} bytes came)",
                      "request_timeout") from None
    except ClientDisconnect:
        of = f" of {declared}" if declared else ""
        raise closing(400, f"the client went away while sending the body ({size}{of} bytes came)",
                      "client_disconnected") from None
    return b"".join(parts)


def _too_large(size: int, limit: int) -> APIError:
    return closing(413, f"the request body is {size} bytes or more; this server takes at most {limit} "
                        "(--max-body-mb)", "request_too_large")


def _submit(s: ServeState, run, request: tuple[str, object]) -> Job:
    job = Job(run, asyncio.get_running_loop(), request)
    try:
        s.worker.submit(job)
    except QueueFull:
        raise busy(s.worker.queued) from None
    return job


async def _respond(request: Request, job: Job, reply: Reply, req, logprobs: bool):
    """Wait for the job's first event (a failure before any text is an HTTP error), then answer."""
    watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
    try:
        first = await job.events.get()
    except BaseException:
        watcher.cancel()
        job.cancel.set()
        raise
    if isinstance(first, APIError) or first is END:
        watcher.cancel()
        raise first if isinstance(first, APIError) else APIError(503, "the server is shutting down",
                                                                   type="server_error", code="shutting_down")
    if req.stream:
        return _SSEResponse(_stream(reply, job, first, req, logprobs), job, watcher)
    try:
        return JSONResponse(await _collect(reply, job, first, logprobs))
    finally:
        watcher.cancel()


async def _cancel_on_disconnect(request: Request, job: Job) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancel.set()
            return


async def _collect(reply: Reply, job: Job, item, logprobs: bool) -> dict:
    deltas, final = [], None
    while item is not END:
        if isinstance(item, APIError):
            raise item
        if isinstance(item, Delta):
            deltas.append(item)
        elif isinstance(item, Final):
            final = item
        item = await job.events.get()
    if final is None:
        raise internal("the generation ended without a result")
    if reply.kind == "chat":
        return reply.chat_completion(deltas, final, logprobs)
    return reply.completion(deltas, final, logprobs)


async def _stream(reply: Reply, job: Job, item, req, logprobs: bool):
    chat, final, offset = reply.kind == "chat", None, 0
    if chat:
        yield sse(reply.chat_chunk(first=True))
    while item is not END:
        if isinstance(item, Delta):
            yield sse(reply.chat_chunk(item, logprobs=logprobs) if chat else
                      reply.text_chunk(item, None, logprobs, offset))
            offset += len(item.text)
        elif isinstance(item, Final):
            final = item
        elif isinstance(item, APIError):
            yield sse(item.body())
        item = await job.events.get()
    if final is not None:
        yield sse(reply.chat_chunk(final=final) if chat else reply.text_chunk(None, final, False))
        if req.include_usage():
            yield sse(reply.usage_chunk(final))
    yield SSE_DONE


class _SSEResponse(StreamingResponse):
    """Server-sent events; the disconnect watcher (not Starlette's) cancels the job."""

    media_type = "text/event-stream"

    def __init__(self, content, job: Job, watcher: asyncio.Task):
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._job, self._watcher = job, watcher

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.stream_response(send)
        except OSError:             # the client went away mid-stream
            self._job.cancel.set()
        finally:
            self._watcher.cancel()
            self._job.cancel.set()  # a no-op when it has finished
            await self.body_iterator.aclose()


# ---- errors --------------------------------------------------------------------------------------

async def _api_error(request: Request, exc: APIError):
    log_failure(request.scope, exc)
    return exc.response()


async def _http_error(request: Request, exc: HTTPException):
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = {404: f"no such endpoint: {request.method} {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return await _api_error(request, APIError(exc.status_code, message, code=kind))


async def _unexpected(request: Request, exc: Exception):
    traceback.print_exception(exc, file=sys.stderr)
    return internal(f"internal error: {type(exc).__name__}").response()

