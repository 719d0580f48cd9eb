"""A small local ASGI app for the remote client's fault tests, served by uvicorn on a thread: an
OpenAI-shaped server that lists one model and then misbehaves.

- ``POST /v1/chat/completions`` answers 200 with a server-sent-event stream's headers and never sends
  a chunk (a stalled server); it returns when the client goes away.
- ``/v1/redirect/...`` answers 307 to the same path on another host (127.0.0.2): a redirect the client
  must refuse.
- ``/v1/fail/CODE/...`` answers status CODE with an OpenAI-shaped error (429 with ``Retry-After``).

``StallServer(tls=dir)`` serves HTTPS with a self-signed certificate written there (openssl).
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import uvicorn

from serve_support import free_port

MODEL = "stalled-model"
START_TIMEOUT_S = 30


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path.startswith("/v1/fail/"):
        code = int(path.split("/")[3])
        body = json.dumps({"error": {"message": f"made to fail with {code}", "type": "test", "code": None}})
        headers = [(b"content-type", b"application/json")] + [(b"retry-after", b"7")] * (code == 429)
        await _answer(send, code, body.encode(), headers)
    elif path.startswith("/v1/redirect/"):
        target = f"http://127.0.0.2:{scope['server'][1]}/v1/{path.removeprefix('/v1/redirect/')}"
        await _answer(send, 307, b"", [(b"location", target.encode())])
    elif path == "/v1/models":
        body = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]})
        await _answer(send, 200, body.encode(), [(b"content-type", b"application/json")])
    elif path == "/v1/chat/completions":
        await _stall(receive, send)
    else:
        await _answer(send, 404, b'{"error": {"message": "no such route"}}', [(b"content-type", b"application/json")])


async def _answer(send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stall(receive, send) -> None:
    """The stream's headers, then nothing until the client disconnects."""
    while (await receive()).get("more_body"):          # the request body
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        pass


def _self_signed(folder: Path) -> dict:
    """uvicorn's TLS options for a self-signed certificate of 127.0.0.1 written to ``folder``."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


class StallServer:
    """``app`` on a free loopback port, on a thread; ``url`` is its /v1 base. A context manager."""

    def __init__(self, tls: Path | None = None):
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off",
                                timeout_graceful_shutdown=1, **(_self_signed(tls) if tls else {}))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the stall server did not start"
            time.sleep(0.02)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._server.should_exit = True
        self._thread.join(START_TIMEOUT_S)
