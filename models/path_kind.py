"""What a path the user gave as a model actually is, when it is not a GGUF file one can read."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"))


def path_problem(text: str, path: Path) -> str | None:
    """Why ``path`` (given as ``text``) cannot be a model file, naming what it is; None when it is a
    regular file (an empty one is named by the GGUF check) or does not exist at all."""
    try:
        st = os.stat(path)
    except OSError as e:
        return _stat_problem(text, path, e)
    for test, kind in _KINDS:
        if test(st.st_mode):
            return f"{text} is {kind}, not a GGUF file"
    return None


def _stat_problem(text: str, path: Path, e: OSError) -> str | None:
    if e.errno == errno.ELOOP:
        return f"{text} is a symlink loop (following its links never reaches a file)"
    if e.errno == errno.ENOENT:
        if os.path.islink(path):
            return f"{text} is a broken symlink (it points to {os.readlink(path)}, which does not exist)"
        return None
    if e.errno == errno.EACCES:
        return f"{text}: permission denied"
    return f"{text}: {e.strerror or e}"
