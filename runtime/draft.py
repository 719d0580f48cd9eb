"""A draft model for speculative decoding: a smaller model with the same tokenizer.

Its own cache follows the target's ring: the same capacity and sinks, fed the same token stream
(after a rebuild of the target, the same sinks and tail), so it sees what the target sees. Before each
draft it catches up with the target (rolling back its own rejected drafts: ``checkpoint`` makes that
exact across an eviction), then proposes k tokens one decode at a time.
"""
from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np

from .drafting import Draft, DraftInput, Prefix
from .errors import EdgechatError

TOKENIZER_KEYS = ("bos_id", "eos_id", "eot_ids", "add_bos")


def tokenizer_mismatch(a, b) -> str | None:
    """Why two tokenizers are not the same (vocab size, special tokens, any token's bytes), or None."""
    if a.n_vocab != b.n_vocab:
        return f"vocab sizes differ ({b.n_vocab} vs {a.n_vocab})"
    for key in TOKENIZER_KEYS:
        if getattr(a, key) != getattr(b, key):
            return f"special tokens differ ({key})"
    for i in range(a.n_vocab):
        if a.token_bytes(i, special=True) != b.token_bytes(i, special=True):
            return f"token {i} differs ({b.token_bytes(i, special=True)!r} vs {a.token_bytes(i, special=True)!r})"
    return None


class DraftModel:
    """Drafts with a small native model; see the module docstring.

    Args:
        path: the draft GGUF.
        target_tokenizer: the target's tokenizer; the draft's must be the same.
        ctx, sinks: the target's cache geometry.
        threads: compute threads.
    """

    name = "draft"

    def __init__(self, path: str | Path, target_tokenizer, *, ctx: int, sinks: int, threads: int):
        from .backends.native import NativeBackend
        from .ggufload import read_model
        from .tokenizer import Tokenizer
        path = Path(path)
        mf = read_model(path)
        tok = Tokenizer(path)
        try:
            why = tokenizer_mismatch(target_tokenizer, tok)
        finally:
            tok.close()
        if why:
            raise EdgechatError(f"--draft {path.name}: its tokenizer is not the model's: {why}")
        problem = mf.native_problem()
        if problem:
            raise EdgechatError(f"--draft {path.name}: the draft model runs on the native engine, which "
                                f"cannot run it: {problem}")
        self._b = NativeBackend(mf, ctx=ctx, sinks=sinks, threads=threads)
        self.path = path
        self._ids = array("i")       # the target's logical stream this cache holds (its skip, sinks)
        self._skip, self._sinks = 0, sinks

    def prepare(self, inp: DraftInput) -> None:
        """Feed what the target was just fed (its prompt), so the first draft does not wait for it."""
        self._catch_up(inp)

    def propose(self, inp: DraftInput, k: int) -> Draft:
        """k tokens from the draft model after the target's stream and ``inp.tok``."""
        logits = self._catch_up(inp)
        self._b.checkpoint(max(0, min(k - 1, self._b.spec_room())))
        s = inp.sampler
        tokens, qs = [], []
        for i in range(k):
            hist = Prefix(self._ids, len(self._ids))
            if s.greedy:
                d = s.sample(logits, hist)
            else:
                ids, q = s.distribution(logits, hist)
                d = int(ids[min(int(np.searchsorted(np.cumsum(q), s.rng.random(), side="right")), len(ids) - 1)])
                qs.append((ids, q))
            tokens.append(d)
            if i + 1 < k:
                logits = self._feed([d])
        return Draft(tokens, None if s.greedy else qs)

    def _catch_up(self, inp: DraftInput) -> np.ndarray:
        """Make the cache hold the target's stream and ``inp.tok``; returns the last logits."""
        fed = inp.fed
        if inp.skip != self._skip or inp.sinks != self._sinks:
            return self._rebuild(inp)
        n = min(len(self._ids), len(fed))
        a = np.frombuffer(self._ids, np.int32)[:n]
        b = np.frombuffer(fed, np.int32)[:n]
        diff = np.flatnonzero(a != b)
        common = int(diff[0]) if diff.size else n
        del a, b                       # release the buffers before the arrays change size
        if common < len(self._ids):
            if common < self._sinks + self._skip or not self._b.truncate(common - self._skip):
                return self._rebuild(inp)
            del self._ids[common:]
        new = list(fed[common:]) + ([] if inp.tok is None else [inp.tok])
        return self._feed(new) if new else None

    def _rebuild(self, inp: DraftInput) -> np.ndarray:
        """Start over with what the target's cache holds: its sinks, then the tail after its skip."""
        fed, S = inp.fed, inp.sinks
        self._b.reset(S)
        self._ids, self._skip, self._sinks = array("i", fed), inp.skip, S
        held = list(fed[:S]) + list(fed[S + inp.skip:])
        if inp.tok is not None:
            held.append(inp.tok)
            self._ids.append(inp.tok)
        return self._b.eval(held) if held else None

    def _feed(self, ids: list[int]) -> np.ndarray:
        out = self._b.eval(ids)
        self._ids.extend(ids)
        return out

    def close(self) -> None:
        self._b.close()
