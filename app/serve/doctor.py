"""What ``edgechat doctor`` says about ``edgechat serve``: its packages, the cache slots that fit, how many
requests decode together, and the server's defaults (what it binds and answers, and its limits)."""
from __future__ import annotations

from importlib import metadata

from .defaults import DEFAULTS, MAX_TOKENS_PER_CTX, PARALLEL

PACKAGES = ("uvicorn", "starlette", "pydantic")


def serve_report(kv_bytes: int | None, available: int | None) -> dict:
    """Versions of the server's packages (None: missing), whether it can run, how many of the default
    cache slots fit in RAM at the doctor's --ctx and how many requests then decode together on the native
    engine (None when memory is unknown; the llama.cpp backend too, its context holding a sequence per
    slot), and the defaults."""
    from ...runtime.slots import slots_that_fit
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    wanted = DEFAULTS["cache_slots"]
    slots = slots_that_fit(wanted, kv_bytes, available) if kv_bytes and available else None
    defaults = {**DEFAULTS, "max_tokens_limit": f"{MAX_TOKENS_PER_CTX} x --ctx",
                "parallel": f"{PARALLEL}, at most the cache slots that fit"}
    return {"ready": all(versions.values()), "packages": versions, "cache_slots": slots,
            "parallel": None if slots is None else min(PARALLEL, slots), "defaults": defaults}


def describe(r: dict) -> str:
    missing = [n for n, v in r["packages"].items() if v is None]
    if missing:
        return f"not ready: missing {', '.join(missing)} (bash scripts/setup.sh)"
    slots = "" if r["cache_slots"] is None else (
        f"; {r['cache_slots']} cache slots fit, {r['parallel']} requests decode together (llama.cpp: a "
        "sequence of its context per slot, allocated at start)")
    d = r["defaults"]
    return (f"ready: edgechat serve (uvicorn {r['packages']['uvicorn']}{slots}); defaults: "
            f"{d['host']}:{d['port']}, Host: this machine's names only, web origins: none, JSON bodies only, "
            f"body <= {d['max_body_mb']} MiB in {d['body_timeout']:g} s, headers in {d['header_timeout']:g} s, "
            f"max_tokens <= {d['max_tokens_limit']}, {d['request_timeout']:g} s per request, "
            f"{d['queue_size']} queued, cache hits {'reported' if d['report_cache_hits'] else 'not reported'}")
