"""Is the hub reachable at all? One bounded look before huggingface_hub's own retries (which take
tens of seconds with no network), so ``pull`` can fail in seconds with one line, or use the cache."""
from __future__ import annotations

import socket
import threading
import urllib.request
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0      # name lookup and TCP connect together; a hub that answers does in far less


def unreachable(url: str) -> str | None:
    """Why ``url``'s host (or the proxy the environment sets for it) cannot be reached within
    ``PROBE_TIMEOUT_S``, or None when a TCP connection opens."""
    host, port = _target(url)
    outcome: dict = {}

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            outcome["ok"] = True
        except OSError as e:
            outcome["error"] = e
    probe = threading.Thread(target=connect, daemon=True)   # a name lookup has no timeout of its own
    probe.start()
    probe.join(PROBE_TIMEOUT_S)
    if outcome.get("ok"):
        return None
    e = outcome.get("error")
    if e is None:
        return f"no answer from {host} within {PROBE_TIMEOUT_S:g} s"
    if isinstance(e, socket.gaierror):
        return f"cannot look up {host}: {e.strerror or e}"
    return f"cannot connect to {host}:{port}: {e.strerror or e}"


def _target(url: str) -> tuple[str, int]:
    """The host and port a request for ``url`` connects to first."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "", parts.port or default
