"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``, with the HTTP status."""
from __future__ import annotations

import sys

from starlette.responses import JSONResponse

RETRY_AFTER_S = 1     # what a 503 (queue full) asks the client to wait
LOG_CHARS = 300       # a logged failure's line is cut there (a message may quote the request)


class APIError(Exception):
    """An error answered to the client; the server goes on."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unauthorized() -> APIError:
    return APIError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')",
                    type="authentication_error", code="invalid_api_key",
                    headers={"WWW-Authenticate": 'Bearer realm="edgechat"'})


def forbidden(message: str, code: str) -> APIError:
    return APIError(403, message, type="permission_error", code=code)


def closing(status: int, message: str, code: str) -> APIError:
    """A refusal after which the connection closes (the rest of the body is not read)."""
    return APIError(status, message, code=code, headers={"Connection": "close"})


def model_not_found(name: str, served: str) -> APIError:
    return APIError(404, f"the model '{name}' does not exist here; this server runs '{served}'",
                    param="model", code="model_not_found")


def busy(queued: int) -> APIError:
    return APIError(503, f"the server is busy ({queued} requests queued); retry after {RETRY_AFTER_S} s",
                    type="server_error", code="queue_full", headers={"Retry-After": str(RETRY_AFTER_S)})


def internal(message: str) -> APIError:
    return APIError(500, message, type="server_error", code="internal_error")


def log_failure(scope, err: APIError) -> None:
    """One line on stderr for a request answered with an error (no traceback: the client's fault)."""
    log_client(scope.get("client"), f"{scope.get('method', '?')} {scope.get('path', '?')}: {err.status} {err.message}")


def log_client(client, what: str) -> None:
    who = f"{client[0]}:{client[1]}" if client else "?"
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in f"{who} {what}"[:LOG_CHARS])  # one line
    print(f"edgechat serve: {line}", file=sys.stderr, flush=True)
