"""Shared fixtures: the default model, a natural-language test text, and oracle helpers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CACHE = Path(__file__).parent / ".cache"


@pytest.fixture(scope="session")
def default_model() -> Path:
    from edgechat.models.resolve import default_model_path
    return default_model_path()


@pytest.fixture(scope="session")
def natural_text() -> str:
    """Natural English prose from the standard library (Python's own docs), long enough for 20k tokens."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


@pytest.fixture(scope="session")
def tokenizer(default_model):
    from edgechat.runtime.tokenizer import Tokenizer
    return Tokenizer(default_model)


def ppl_and_top1(logits: np.ndarray, ids: list[int]) -> tuple[float, np.ndarray]:
    """Perplexity of ids[1:] under logits[:-1], and the argmax of every row.

    Args:
        logits: (n, vocab) float32, row i predicts token i + 1.
        ids: the n tokens fed.
    """
    lg = logits[:-1].astype(np.float64)                      # (n-1, vocab)
    lg -= lg.max(axis=1, keepdims=True)
    logp = lg - np.log(np.exp(lg).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), np.asarray(ids[1:])]
    return float(np.exp(nll.mean())), logits.argmax(axis=1)


def _ggufs():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_test_ggufs",
                                                  Path(__file__).parent.parent / "scripts" / "make_test_ggufs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_test_ggufs"] = mod        # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def make_ggufs():
    """scripts/make_test_ggufs.py as a module (tiny synthetic models, llama.cpp requantizations)."""
    return _ggufs()


@pytest.fixture(scope="session")
def tiny_gguf(make_ggufs):
    """tiny_gguf(arch, ftype=None) -> path of a tiny random-weight GGUF (made once, cached)."""
    def get(arch: str, ftype: str | None = None) -> Path:
        if ftype:
            return make_ggufs.make_quantized(arch, ftype, CACHE / "ggufs")
        return make_ggufs.make_tiny(arch, CACHE / "ggufs")
    return get


@pytest.fixture(scope="session")
def quantized_default(make_ggufs):
    """quantized_default(ftype) -> the default model requantized by llama_model_quantize."""
    return lambda ftype: make_ggufs.make_default_requantized(ftype, CACHE / "ggufs")
