"""Ending on SIGTERM or SIGHUP as a user's quit (a closed terminal window, ``kill``, a logout, a
shutdown): the one-shot CLI turns them into an exception, as Ctrl-C is one; the TUI stops the reply,
commits it and restores the terminal (``tui/app.py``). Exit codes are the shell's: 128 + the signal."""
from __future__ import annotations

import signal
from contextlib import contextmanager

TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived; a BaseException, as KeyboardInterrupt, so no ``except Exception``
    swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


@contextmanager
def raising_on_terminate():
    """Inside: SIGTERM and SIGHUP raise ``Terminated`` in the main thread (between two tokens, as
    Ctrl-C raises KeyboardInterrupt); the previous handlers come back after."""
    def raise_terminated(signum, frame):
        raise Terminated(signum)
    old = {s: signal.signal(s, raise_terminated) for s in TERMINATING}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
