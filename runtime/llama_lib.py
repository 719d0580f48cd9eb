"""llama.cpp's process-wide state, owned here: the library, its log callback, the last error, backend init.

llama.cpp has one log callback per process. It is installed once, here: log lines go to the
``edgechat.llama`` logger at DEBUG, and the first error line since ``clear_error()`` is kept so a
failed load can say why (``first_error()``). Nothing else may call ``llama_log_set``.
"""
from __future__ import annotations

import logging

GGML_LOG_LEVEL_ERROR = 4

_log = logging.getLogger("edgechat.llama")
_L = None              # llama_cpp.llama_cpp, imported and initialised once
_callback = None       # the ctypes callback must outlive every llama.cpp call: keep a reference
_first_error = ""      # first error line llama.cpp logged since the last clear_error()


def lib():
    """The low-level ``llama_cpp.llama_cpp`` module, with the log callback set and the backend initialised."""
    global _L, _callback
    if _L is None:
        import llama_cpp.llama_cpp as L

        @L.llama_log_callback
        def on_log(level, text, _user):
            global _first_error
            line = text.decode("utf-8", "replace").rstrip("\n") if text else ""
            if level == GGML_LOG_LEVEL_ERROR and line.strip() and not _first_error:
                _first_error = line.strip()
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug(line)

        _callback = on_log
        L.llama_log_set(_callback, None)
        L.llama_backend_init()
        _L = L
    return _L


def clear_error() -> None:
    """Forget the last error line (call before a llama.cpp call whose failure should be explained)."""
    global _first_error
    _first_error = ""


def first_error() -> str:
    """The first error line llama.cpp logged since ``clear_error()``; "" if none."""
    return _first_error
