"""What the app needs to know of the native engine without loading a model: whether it is built, the
kernel table it runs on this CPU, and a DRAM read-bandwidth probe (bench). The one place outside
``backends.native`` that imports ``edgechat._native``."""
from __future__ import annotations

import importlib.util


def native_built() -> bool:
    """Whether the C++ extension is installed."""
    try:
        return importlib.util.find_spec("edgechat._native") is not None
    except (ImportError, ValueError):
        return False


def native_isa() -> str | None:
    """The kernel table the native engine chose on this CPU (``EDGECHAT_ISA`` may force a lower one);
    None when the extension is not built."""
    try:
        from .. import _native
    except ImportError:
        return None
    return _native.isa()


def read_bandwidth(threads: int, mib: int) -> float:
    """GB/s of a ``threads``-threaded read of a ``mib`` MiB buffer (the DRAM read limit decode meets)."""
    from .. import _native
    return _native.read_bandwidth(threads, mib)
