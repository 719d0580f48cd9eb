"""uvicorn's HTTP/1.1 protocol (h11) with a deadline on each request's headers.

uvicorn times out an idle keep-alive connection but not one that is sending its headers: a client
trickling them a byte at a time holds its connection for as long as it likes. Here the headers of
every request (the first on a connection, and each next one on a kept-alive connection) must be
complete within ``header_timeout`` seconds; otherwise the client gets 408 (when it sent anything)
and the connection closes. The body's deadline is the app's (``app._read_body``).
"""
from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import APIError, log_client


class TimedH11Protocol(H11Protocol):
    """``H11Protocol`` closing a connection whose next request's headers do not arrive in time."""

    def __init__(self, *args, header_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._got_bytes = False             # of the request whose headers are awaited

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:         # a request's headers are complete: its app runs
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()                         # the next request on this connection (disarmed if pipelined)
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        self._got_bytes = False
        self._header_timer = self.loop.call_later(self._header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._got_bytes:
            err = APIError(408, f"the request headers did not arrive within {self._header_timeout:g} s",
                           code="request_timeout")
            log_client(self.client, f"{err.status} {err.message}; connection closed")
            body = json.dumps(err.body()).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        self.transport.close()
