"""Shared fixtures: the default model, a natural-language test text, and oracle helpers."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# a runner may start the suite with SIGINT ignored (a background job of a non-interactive shell does);
# children inherit an ignored signal, so the Ctrl-C tests' edgechat could not be interrupted. A handled
# SIGINT is reset to the default in every child instead
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
CACHE = Path(__file__).parent / ".cache"


@pytest.fixture(scope="session")
def default_model() -> Path:
    from edgechat.models.resolve import default_model_path
    return default_model_path()


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    """A fresh edgechat home (EDGECHAT_HOME and the working directory: tmp_path); its chat database's
    path. test_store.py has its own (no home)."""
    from edgechat.app.store import DB_NAME
    monkeypatch.setenv("EDGECHAT_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path / DB_NAME


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


def agreement(ours: np.ndarray, ref: np.ndarray, ids: list[int], decisive_margin: float) -> dict:
    """How teacher-forced logits ``ours`` agree with the oracle's ``ref`` (both (n, vocab), row i after
    ids[:i + 1]): top-1 agreement overall and where the oracle's top-1 leads its top-2 by more than
    ``decisive_margin``, both perplexities and their relative difference, the largest logit difference.
    """
    ppl_o, top_o = ppl_and_top1(ours, ids)
    ppl_r, top_r = ppl_and_top1(ref, ids)
    top2 = np.sort(ref, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > decisive_margin
    same = top_o == top_r
    return {"top1": float(same.mean()), "top1_decisive": float(same[decisive].mean()),
            "decisive_rows": int(decisive.sum()), "ppl": ppl_o, "ppl_ref": ppl_r,
            "ppl_rel": abs(ppl_o - ppl_r) / ppl_r, "max_dlogit": float(np.abs(ours - ref).max())}


def kl_rows(ref: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """KL(softmax(ref) || softmax(ours)) of each row, in float64."""
    def log_softmax(x):
        x = x.astype(np.float64)
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    p, q = log_softmax(ref), log_softmax(ours)
    return (np.exp(p) * (p - q)).sum(axis=1)


def agreement_line(a: dict) -> str:
    return (f"top-1 {a['top1']:.4f} (decisive {a['top1_decisive']:.4f} on {a['decisive_rows']} rows), ppl "
            f"native {a['ppl']:.4f} llama.cpp {a['ppl_ref']:.4f} (rel {a['ppl_rel']:.3%}), "
            f"max |dlogit| {a['max_dlogit']:.3f}")


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
