"""Token sampling: repetition penalty, top-k, top-p, min-p, temperature (llama.cpp's semantics).

Built by ``make_sampler``; ``Sampler.sample(logits, history)`` picks one token. No full sort of the
vocab in the usual settings: top-k uses argpartition, and min-p prunes before top-p sorts.

A constraint (``runtime.constraint``: JSON schema, regex, grammar) is the chain's first step: its mask
sets the tokens the grammar does not allow to -inf before the penalty and the filters, and the sampled
token is consumed by it (``sample``); ``forced`` hands the loop the tokens the grammar forces next.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Sequence

import numpy as np

from .constraint import FF_MAX

_TOP_P_PROBE = 256    # top-p tries the best 256, 2048, ... candidates before sorting them all


@dataclass(frozen=True)
class SamplingParams:
    """The sampling defaults, in one place: the CLI, the TUI settings and ``make_sampler`` read them."""

    temp: float = 0.8             # <= 0: greedy
    top_k: int = 40               # <= 0 keeps all
    top_p: float = 0.95           # 1 keeps all
    min_p: float = 0.05           # 0 keeps all
    repeat_penalty: float = 1.1   # 1: none
    repeat_last_n: int = 64       # 0: none, -1: all
    seed: int | None = None       # None (or RANDOM_SEED): a fresh one
    max_tokens: int = 512         # reply length limit

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, **values) -> "SamplingParams":
        """Defaults, overridden by the values given that are not None."""
        unknown = set(values) - set(cls.names())
        if unknown:
            raise TypeError(f"unknown sampling parameter(s): {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    def sampler_kwargs(self) -> dict:
        """Everything but ``max_tokens``: the arguments of ``make_sampler``."""
        d = asdict(self)
        del d["max_tokens"]
        return d


DEFAULTS = SamplingParams()
RANDOM_SEED = -1    # as llama.cpp's: a fresh seed each time, the same as None


def seeded_rng(seed: int | None) -> np.random.Generator:
    """numpy's random stream for ``seed``: a fresh one for None or RANDOM_SEED; any other int, negative or
    wider than 64 bits (an API client may send either), taken modulo 2**64 (numpy takes only those)."""
    return np.random.default_rng(None if seed is None or seed == RANDOM_SEED else seed % 2**64)


@dataclass
class Sampler:
    """One sampling configuration with its own random stream; see ``make_sampler``."""

    temp: float = DEFAULTS.temp
    top_k: int = DEFAULTS.top_k
    top_p: float = DEFAULTS.top_p
    min_p: float = DEFAULTS.min_p
    repeat_penalty: float = DEFAULTS.repeat_penalty
    repeat_last_n: int = DEFAULTS.repeat_last_n
    seed: int | None = DEFAULTS.seed
    constraint: object = field(default=None, repr=False, compare=False)   # a constraint.Constraint or None
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        self.rng = seeded_rng(self.seed)

    @property
    def greedy(self) -> bool:
        return self.temp <= 0

    def sample(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        """Pick the next token.

        Args:
            logits: float32 ``[vocab]`` scores of the next token; not modified.
            history: token ids so far (prompt and reply), oldest first; the last
                ``repeat_last_n`` are penalized.

        Returns:
            the token id (consumed by the constraint, when there is one).
        """
        c = self.constraint
        if c is not None:
            logits = c.apply(logits)
        if self.greedy:
            tok = int(np.argmax(self._penalize(np.asarray(logits, dtype=np.float32), history)))
        else:
            ids, z = self.candidates(logits, history)
            tok = self._draw(ids, z)
        if c is not None:
            c.consume(tok)
        return tok

    def forced(self, limit: int) -> list[int]:
        """Tokens the constraint forces after the last sampled one (at most ``limit``; [] without one):
        consumed, for the loop to feed with that token as one batch."""
        return self.constraint.forced(limit) if self.constraint is not None else []

    def commit(self, tok: int) -> None:
        """Tell the constraint of a token chosen without ``sample`` (an accepted speculative draft)."""
        if self.constraint is not None:
            self.constraint.consume(tok)

    def distribution(self, logits: np.ndarray, history: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """The distribution ``sample`` draws from (speculative sampling verifies drafts against it).

        Returns:
            ``(ids [n] int, probs [n] float64)``, probs summing to 1; greedy: the argmax with probability 1.
            The constraint's mask applies; nothing is consumed.
        """
        if self.constraint is not None:
            logits = self.constraint.apply(logits)
        if self.greedy:
            x = self._penalize(np.asarray(logits, dtype=np.float32), history)
            return np.array([int(np.argmax(x))]), np.ones(1)
        ids, z = self.candidates(logits, history)
        p = np.exp((z.astype(np.float64) - float(z.max())) / self.temp)
        return ids, p / p.sum()

    def candidates(self, logits: np.ndarray, history: Sequence[int] = ()):
        """The tokens left after penalty, top-k, top-p and min-p, and their penalized logits.

        Returns:
            ``(ids [n] int, z [n] float32)``, in no particular order; temperature not applied.
        """
        x = self._penalize(np.asarray(logits, dtype=np.float32), history)   # [vocab]
        ids, z = self._top_k(x)                  # ids: [k] candidates; z: their logits
        top = float(z.max())
        w = np.exp((z - top).astype(np.float64))  # unnormalized probabilities at temp 1
        total = float(w.sum())
        # min-p and top-p each keep a best-first prefix of the candidates, so applying min-p first
        # gives the same set as llama.cpp's top-p then min-p, and leaves top-p less to sort.
        if self.min_p > 0:
            keep = z >= top + math.log(self.min_p)
            ids, z, w = ids[keep], z[keep], w[keep]
        if self.top_p < 1:
            ids, z = self._top_p(ids, z, w, total)
        return ids, z

    def _penalize(self, x: np.ndarray, history: Sequence[int]) -> np.ndarray:
        """llama.cpp's repetition penalty on the distinct tokens of the last n: a positive logit
        is divided by the penalty, a negative one multiplied."""
        n = len(history) if self.repeat_last_n < 0 else min(self.repeat_last_n, len(history))
        if self.repeat_penalty == 1 or n == 0:
            return x
        recent = np.unique(np.asarray(history[len(history) - n:], dtype=np.int64))
        x = x.copy()
        v = x[recent]
        x[recent] = np.where(v > 0, v / self.repeat_penalty, v * self.repeat_penalty)
        return x

    def _top_k(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vocab = x.shape[0]
        if 0 < self.top_k < vocab:
            ids = np.argpartition(x, vocab - self.top_k)[vocab - self.top_k:]
            return ids, x[ids]
        return np.arange(vocab), x

    def _top_p(self, ids, z, w, total) -> tuple[np.ndarray, np.ndarray]:
        """Keep the fewest best candidates whose probability (over the top-k set) reaches top_p."""
        n = ids.shape[0]
        k = _TOP_P_PROBE
        while k < n:             # the best k often reach top_p already: sort only those
            best = np.argpartition(z, n - k)[n - k:]
            if w[best].sum() >= self.top_p * total:
                ids, z, w = ids[best], z[best], w[best]
                break
            k *= 8
        order = np.argsort(-z, kind="stable")
        cum = np.cumsum(w[order]) / total
        cut = min(int(np.searchsorted(cum, self.top_p)) + 1, order.shape[0])
        keep = order[:cut]
        return ids[keep], z[keep]

    def _draw(self, ids: np.ndarray, z: np.ndarray) -> int:
        p = np.exp((z.astype(np.float64) - float(z.max())) / self.temp)
        cum = np.cumsum(p)
        i = int(np.searchsorted(cum, self.rng.random() * cum[-1], side="right"))
        return int(ids[min(i, ids.shape[0] - 1)])


def make_sampler(temp: float = DEFAULTS.temp, top_k: int = DEFAULTS.top_k, top_p: float = DEFAULTS.top_p,
                 min_p: float = DEFAULTS.min_p, repeat_penalty: float = DEFAULTS.repeat_penalty,
                 repeat_last_n: int = DEFAULTS.repeat_last_n, seed: int | None = DEFAULTS.seed,
                 constraint=None) -> Sampler:
    """Build a sampler.

    Order, as llama.cpp: repetition penalty, top-k, top-p, min-p, temperature, then a draw from a
    numpy ``Generator(seed)``. ``temp <= 0`` is greedy: the penalty still applies (as in
    llama.cpp's chain), then argmax, with no random draw; pass ``repeat_penalty=1`` for a plain
    argmax.

    Args:
        temp: temperature; <= 0 for greedy.
        top_k: keep the k best tokens; <= 0 keeps all.
        top_p: keep the fewest best tokens whose probability reaches p; 1 keeps all.
        min_p: drop tokens less likely than min_p times the best one; 0 keeps all.
        repeat_penalty: penalty on recent tokens; 1 for none.
        repeat_last_n: how many recent tokens are penalized; 0 for none, -1 for all.
        seed: random seed; None for a fresh one. The same seed gives the same sequence.
        constraint: a ``constraint.Constraint`` (``compile_constraint``): its mask comes first in the
            chain, and it consumes each sampled token.

    Returns:
        a ``Sampler``.
    """
    return Sampler(temp=temp, top_k=top_k, top_p=top_p, min_p=min_p,
                   repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n, seed=seed, constraint=constraint)


def forced_tokens(sampler, left: int | None) -> list[int]:
    """The tokens ``sampler``'s constraint forces after the token it just drew (``forced``; [] for a
    sampler without one), at most ``FF_MAX`` and at most ``left`` (None: no limit): the generate loop,
    speculation and a batched step feed them with that token as one chunk."""
    forced = getattr(sampler, "forced", None)
    return forced(FF_MAX if left is None else min(left, FF_MAX)) if forced is not None else []
