"""Who may talk to the server: the Host and Origin allowlists (an ASGI middleware before the app).

A web page cannot use a local server unless the server lets it. DNS rebinding (a page whose domain
comes to resolve to 127.0.0.1) is closed by the Host check: by default only names of this machine
are answered. Cross-site requests are closed by the Origin check: a request that carries an Origin
header (browsers send one on every cross-site POST) is refused unless that origin is allowed, and
only allowed origins get CORS headers (Starlette's ``CORSMiddleware``, with its preflight).
"""
from __future__ import annotations

import re
import socket

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from .defaults import LOCAL_HOSTS
from .errors import forbidden, log_failure

WILDCARDS = ("0.0.0.0", "::", "")
HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]]+))(?::[0-9]*)?")   # host[:port], [v6][:port]
ANY = "*"


def host_name(value: str) -> str:
    """A Host header (or --allowed-hosts entry) without its port, brackets, case or final dot:
    ``[::1]:8080`` -> ``::1``, ``LocalHost.:80`` -> ``localhost``; a bare IPv6 address stays whole, and
    a value of another shape is returned as it is (it matches no allowed name)."""
    value = value.strip().lower()
    m = HOST.fullmatch(value)
    if m is None:
        return value
    return (m["v6"] or m["name"]).rstrip(".")


def allowed_hosts(bind: str, extra: list[str]) -> frozenset | None:
    """The Host names answered: this machine's (and, for a wildcard bind, its hostname and addresses),
    the bound host, and ``extra``; None when ``extra`` holds ``*`` (no check)."""
    if ANY in extra:
        return None
    names = {*LOCAL_HOSTS, host_name(bind), *(host_name(h) for h in extra)}
    if bind in WILDCARDS:
        names |= _own_names()
    return frozenset(n for n in names if n)


def _own_names() -> set[str]:
    import psutil
    names = {socket.gethostname().lower()}
    for addrs in psutil.net_if_addrs().values():
        names |= {a.address.partition("%")[0].lower() for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)}
    return names


def origin_name(value: str) -> str:
    return value.strip().lower().rstrip("/")


class Guard:
    """Refuses (403, OpenAI's error shape, one log line) a request whose Host is not allowed or whose
    Origin is not allowed; ``hosts`` None answers any Host, ``origins`` holding ``*`` any origin."""

    def __init__(self, app, hosts: frozenset | None, origins: frozenset):
        self.app, self.hosts, self.origins = app, hosts, origins

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        host, origin = headers.get("host"), headers.get("origin")
        err = None
        if self.hosts is not None and host is not None and host_name(host) not in self.hosts:
            err = forbidden(f"the Host '{host[:80]}' is not a name of this server (--allowed-hosts)",
                            "host_not_allowed")
        elif origin is not None and ANY not in self.origins and origin_name(origin) not in self.origins:
            err = forbidden(f"requests from the web origin '{origin[:80]}' are not allowed (--allowed-origins)",
                            "origin_not_allowed")
        if err is None:
            return await self.app(scope, receive, send)
        log_failure(scope, err)
        await err.response()(scope, receive, send)


def middleware(hosts: frozenset | None, origins: frozenset) -> list:
    """The middleware stack, outermost first: the guard, then CORS for the allowed origins."""
    stack = [Middleware(Guard, hosts=hosts, origins=origins)]
    if origins:
        stack.append(Middleware(CORSMiddleware, allow_origins=sorted(origins), allow_methods=["GET", "POST"],
                                allow_headers=["*"], max_age=600))
    return stack
