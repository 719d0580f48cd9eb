"""One request's sampler: OpenAI's additive penalties and logit bias on top of edgechat's sampler,
and the log-probabilities of the chosen tokens.

``frequency_penalty`` / ``presence_penalty`` are applied as OpenAI defines them: a token's logit is
lowered by ``count * frequency_penalty + (count > 0) * presence_penalty``, counting the tokens of this
reply. Log-probabilities are those of the model's distribution (temperature 1, before penalties,
bias and truncation), as OpenAI reports them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TokenLogprob:
    token: bytes                  # the token's bytes (a piece of a UTF-8 character, maybe)
    logprob: float
    top: list[tuple[bytes, float]] = field(default_factory=list)   # best first


class RequestSampler:
    """Wraps a ``Sampler`` (``sample(logits, history)``) for one request.

    Args:
        inner: the sampler that draws.
        top_logprobs: None records no log-probabilities; n records the chosen token's and the n best.
        frequency, presence: OpenAI's penalties (0: none).
        bias: token id -> value added to its logit.
        skip: tokens whose log-probability is not recorded (end of turn: not part of the text).
        piece: token id -> its bytes (the tokenizer's ``token_bytes``), read in the engine thread.
    """

    def __init__(self, inner, *, top_logprobs: int | None = None, frequency: float = 0.0,
                 presence: float = 0.0, bias: dict[int, float] | None = None, skip=frozenset(), piece=bytes):
        self._inner, self._top = inner, top_logprobs
        self._frequency, self._presence = frequency, presence
        self._bias = None                                  # (ids [k] int64, values [k] float32)
        if bias:
            self._bias = (np.fromiter(bias, dtype=np.int64), np.fromiter(bias.values(), dtype=np.float32))
        self._skip, self._piece = skip, piece
        self._counts: Counter[int] = Counter()
        self.prompt_tokens: int | None = None    # tokens before the first sampled one (the whole prompt)
        self.logprobs: list[TokenLogprob] = []

    def sample(self, logits: np.ndarray, history) -> int:
        if self.prompt_tokens is None:
            self.prompt_tokens = len(history)
        tok = self._inner.sample(self._adjust(logits), history)
        self._counts[tok] += 1
        if self._top is not None and tok not in self._skip:
            self.logprobs.append(self._record(logits, tok))
        return tok

    def _adjust(self, logits: np.ndarray) -> np.ndarray:
        if self._bias is None and not (self._counts and (self._frequency or self._presence)):
            return logits
        x = np.array(logits, dtype=np.float32)           # [vocab]
        if self._bias is not None:
            ids, values = self._bias
            ok = ids < x.shape[0]
            x[ids[ok]] += values[ok]
        if self._counts and (self._frequency or self._presence):
            ids = np.fromiter(self._counts, dtype=np.int64)
            counts = np.fromiter(self._counts.values(), dtype=np.float32)
            x[ids] -= counts * self._frequency + self._presence
        return x

    def _record(self, logits: np.ndarray, tok: int) -> TokenLogprob:
        x = np.asarray(logits, dtype=np.float64)          # [vocab]
        top = float(x.max())
        lse = top + float(np.log(np.exp(x - top).sum()))
        best = []
        if self._top:
            ids = np.argpartition(x, x.shape[0] - self._top)[x.shape[0] - self._top:]
            ids = ids[np.argsort(-x[ids], kind="stable")]
            best = [(self._piece(int(i)), float(x[i] - lse)) for i in ids]
        return TokenLogprob(self._piece(tok), float(x[tok] - lse), best)
