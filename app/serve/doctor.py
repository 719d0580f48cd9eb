"""What ``edgechat doctor`` says about ``edgechat serve``: its packages and the cache slots that fit."""
from __future__ import annotations

from importlib import metadata

PACKAGES = ("uvicorn", "starlette", "pydantic")
DEFAULT_SLOTS = 4      # edgechat serve's --cache-slots default (command.DEFAULTS)


def serve_report(kv_bytes: int | None, available: int | None) -> dict:
    """Versions of the server's packages (None: missing), whether it can run, and how many of the
    default cache slots fit in RAM at the doctor's --ctx (None when memory is unknown)."""
    from ...runtime.slots import slots_that_fit
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    slots = slots_that_fit(DEFAULT_SLOTS, kv_bytes, available) if kv_bytes and available else None
    return {"ready": all(versions.values()), "packages": versions, "cache_slots": slots}


def describe(r: dict) -> str:
    missing = [n for n, v in r["packages"].items() if v is None]
    if missing:
        return f"not ready: missing {', '.join(missing)} (bash scripts/setup.sh)"
    slots = "" if r["cache_slots"] is None else f"; {r['cache_slots']} cache slots fit"
    return f"ready: edgechat serve (uvicorn {r['packages']['uvicorn']}{slots})"
