"""Resolve what the user asked for (nothing, a name, a path) to a GGUF file on disk, offline."""
from __future__ import annotations

import os
from pathlib import Path

from ..runtime.errors import ModelNotFound
from .local import find_local
from .path_kind import path_problem
from .paths import DEFAULT_NAME, default_model_path

def resolve(model: str | os.PathLike | None) -> Path:
    """Turn ``None`` (the default), a path, or a model name into the path of a GGUF file.

    Args:
        model: None for the packaged default, a path to a .gguf file, or a name from ``edgechat models``.

    Returns:
        The file's path.

    Raises:
        ModelNotFound: for a path that is not a readable GGUF file (it names what the path is: a
            directory, a device, a FIFO, a symlink loop, an empty file), a missing path or an
            unknown name.
    """
    if model is None or str(model) in ("", "default", DEFAULT_NAME):
        return default_model_path()
    text = str(model)
    path = Path(text).expanduser()
    problem = path_problem(text, path)
    if problem:
        raise ModelNotFound(problem)
    if path.is_file():
        return path
    if looks_like_path(text):
        raise ModelNotFound(f"no such file: {text}")
    found = find_local(text)
    if found is None:
        raise ModelNotFound(f"unknown model '{text}': not a file and not a local model "
                            f"(see `edgechat models`, or `edgechat pull {text}`)")
    return found


def looks_like_path(text: str) -> bool:
    """True for strings a user meant as a path (a separator or a .gguf suffix)."""
    return os.sep in text or text.endswith(".gguf") or text.startswith((".", "~"))
