"""CPU facts, read once: physical cores, and the model name and flags of /proc/cpuinfo (Linux)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def physical_cores() -> int:
    """Physical cores (hyper-threads share the vector units the kernels saturate); at least 1."""
    try:
        import psutil
        n = psutil.cpu_count(logical=False) or psutil.cpu_count()
    except ImportError:
        n = None
    return max(1, n or os.cpu_count() or 1)


@functools.lru_cache(maxsize=None)
def proc_cpuinfo(path: Path = CPUINFO) -> tuple[str, frozenset[str]]:
    """CPU model name and flags from /proc/cpuinfo (Linux); ("", frozenset()) elsewhere."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "", frozenset()
    name, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not name:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return name, flags


def has_amx() -> bool:
    """x86 AMX tiles (Linux)."""
    return "amx_tile" in proc_cpuinfo()[1]
