"""Speculative decoding: draft a few tokens cheaply, verify them in one batched forward pass.

Decode on a CPU reads every weight once per token; a batch of k + 1 tokens costs much less than k + 1
decodes. A drafter (``lookup.PromptLookup``: n-grams of the stream itself; ``draft.DraftModel``: a small
model with the same tokenizer) proposes k tokens; the target evaluates the sampled token and the k
drafts in one call (all logits), keeps the drafts its own sampler agrees with, and rolls the cache back
over the rest (``Backend.checkpoint`` makes that exact across an eviction).

Never a different answer: the native engine's verify batches give each token the logits its one-token
decode gives, bit for bit, so at temp 0 the text equals ``off``. At temp > 0 the accept/reject rule is
the standard one (Leviathan et al. 2023, Chen et al. 2023): a draft d drawn from q is kept with
probability min(1, p(d) / q(d)), and on rejection the token is drawn from normalize(max(0, p - q)),
so every token is distributed as the target's p. p is the sampler's own distribution (repetition
penalty with the history up to that token, top-k, top-p, min-p, temperature), so the filters apply
exactly as without speculation. A lookup draft is a point mass (q(d) = 1).

The draft length adapts to the acceptance rate and to what a verify batch costs here (both measured as
the reply goes, see ``Controller``), and a reply whose drafts do not pay stops drafting for a while,
then tries again, each time waiting twice as long.
"""
from __future__ import annotations

import copy
import time
from array import array
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from .drafting import Draft, Drafter, DraftInput, Prefix
from .sampler import forced_tokens

__all__ = ["Draft", "Drafter", "DraftInput", "Prefix", "SpecCounts", "Speculation", "Controller", "verify",
           "generate", "make_speculation", "best_k"]

MODES = ("lookup", "draft", "off")
K_MIN = 1
BETA_PRIOR = 0.5         # a verify step with k drafts costs t1 * (1 + beta * k): measured 0.45-0.55 for the
                         # default model on 2 AVX-512 cores (batches of 2-16 vs one-token decode)
HITS_PRIOR, MISSES_PRIOR = 2.0, 1.0   # acceptance prior (2/3) at the start of a reply and after a pause
DECAY = 0.7              # weight of past drafts in the acceptance estimate
MIN_PAYOFF = 1.02        # draft only when the expected tokens per unit of time beat plain decode by this
BETA_MAX = 2.0           # cap on one step's measured beta
T1_STEPS = 2             # plain steps timed before the first draft (one can be an outlier)
PAUSE_START = 16         # tokens without drafting once drafts stop paying; doubles each time
PAUSE_MAX = 512
EMA = 0.2                # weight of the newest measurement in the moving averages

@dataclass
class SpecCounts:
    """One reply's speculation: draft tokens verified and accepted."""

    draft_tokens: int = 0
    accepted_tokens: int = 0


@dataclass
class Controller:
    """Draft length and whether drafting pays, for one reply.

    Expected tokens per verify step with k drafts and per-token acceptance a are
    ``E(k) = (1 - a**(k + 1)) / (1 - a)``; the step costs ``cost(k)`` plain decode steps. Both are
    learned as the reply goes: ``a`` from decayed hit/miss counts, ``cost(k)`` from the timed steps of
    that length (a draft model's steps have a fixed part, a batch's cost is not linear in its length);
    a length not timed yet is priced ``1 + beta * k``, beta fitted to all timed steps. k maximizes
    ``E(k) / cost(k)``. When no k beats plain decode, drafting pauses for ``pause`` tokens (doubling each
    time, so a reply whose drafts do not pay soon stops drafting), then probes again from the prior.
    """

    k_max: int
    fixed: int | None = None         # always draft this many (measurements, tests): no adaptation
    t1: float | None = None          # plain decode step, seconds (moving average)
    beta: float = BETA_PRIOR
    hits: float = HITS_PRIOR
    misses: float = MISSES_PRIOR
    pause: int = PAUSE_START
    wait: int = 0                    # tokens left before drafting again
    costs: dict = field(default_factory=dict)   # k -> step cost in plain steps (moving average)
    timed: int = 0                   # plain steps timed

    def want(self) -> int:
        """Draft tokens to ask for now (0: decode plainly; always, until T1_STEPS plain steps were timed)."""
        if self.fixed:
            return min(self.fixed, self.k_max)
        if self.timed < T1_STEPS:
            return 0
        if self.wait > 0:
            self.wait -= 1
            if self.wait == 0:     # probe afresh: the text and the machine's load may have changed
                self.hits, self.misses, self.costs = HITS_PRIOR, MISSES_PRIOR, {}
            return 0
        k = best_k(self.hits / (self.hits + self.misses), self.cost, self.k_max)
        if k == 0:             # this step is the pause's first
            self.wait, self.pause = self.pause - 1, min(2 * self.pause, PAUSE_MAX)
        return k

    def cost(self, k: int) -> float:
        return self.costs.get(k, 1 + self.beta * k)

    def plain(self, seconds: float) -> None:
        self.timed += 1
        self.t1 = seconds if self.t1 is None else (1 - EMA) * self.t1 + EMA * seconds

    def verified(self, drafted: int, accepted: int, seconds: float) -> None:
        self.hits = DECAY * self.hits + accepted
        self.misses = DECAY * self.misses + (accepted < drafted)
        if self.t1:
            rel = min(seconds / self.t1, 1 + BETA_MAX * drafted)     # one outlier moves it little
            old = self.costs.get(drafted)
            self.costs[drafted] = rel if old is None else (1 - EMA) * old + EMA * rel
            self.beta = (1 - EMA) * self.beta + EMA * (rel - 1) / drafted


def best_k(alpha: float, cost, k_max: int) -> int:
    """The draft length with the most expected tokens per unit of time, or 0 if none beats plain decode.

    Args:
        alpha: per-token acceptance probability.
        cost: k -> a step's cost in plain decode steps (a number: beta, for ``1 + beta * k``).
        k_max: the longest draft.
    """
    price = cost if callable(cost) else (lambda k: 1 + cost * k)
    best, best_rate = 0, MIN_PAYOFF
    for k in range(K_MIN, k_max + 1):
        expected = k + 1 if alpha >= 1 else (1 - alpha ** (k + 1)) / (1 - alpha)
        rate = expected / price(k)
        if rate > best_rate:
            best, best_rate = k, rate
    return best


def verify(rows: np.ndarray, draft: Draft, sampler, fed: array, base: int) -> tuple[int, int]:
    """Accept a prefix of the drafts against the target's rows; draw the token after it.

    Args:
        rows: float32 ``[1 + k, vocab]`` target logits after fed[:base + 1 + i], i = 0..k.
        draft: the k drafted tokens (fed[base + 1:base + 1 + k]).
        sampler: the target's sampler (its filters and random stream).
        fed: the target's logical stream; fed[:base + 1] precedes the drafts.
        base: index of the token fed before the drafts.

    Returns:
        (accepted drafts a, the next token: sampled from row a's residual or full distribution)
    """
    for i, d in enumerate(draft.tokens):
        hist = Prefix(fed, base + 1 + i)
        if sampler.greedy:
            t = sampler.sample(rows[i], hist)
            if t != d:
                return i, t
            continue
        ids, p = sampler.distribution(rows[i], hist)
        q_ids, q = draft.q[i] if draft.q else (np.array([d]), np.ones(1))
        q_of = dict(zip(q_ids.tolist(), q.tolist()))
        pd = float(p[ids == d].sum())
        if sampler.rng.random() * q_of.get(d, 0.0) < pd:   # accept with probability min(1, p(d) / q(d))
            sampler.commit(d)
            continue
        t = _residual_draw(sampler, ids, p, q_of)
        sampler.commit(t)
        return i, t
    k = len(draft.tokens)
    return k, sampler.sample(rows[k], Prefix(fed, base + 1 + k))


def _residual_draw(sampler, ids: np.ndarray, p: np.ndarray, q_of: dict) -> int:
    """A draw from normalize(max(0, p - q)) over p's support (the rejection's correction)."""
    q = np.array([q_of.get(i, 0.0) for i in ids.tolist()])
    r = np.maximum(p - q, 0.0)
    total = r.sum()
    if total <= 0:            # p == q (to rounding): then acceptance was certain; draw from p
        r, total = p, p.sum()
    cum = np.cumsum(r)
    j = int(np.searchsorted(cum, sampler.rng.random() * total, side="right"))
    return int(ids[min(j, ids.shape[0] - 1)])


class Speculation:
    """The engine's speculation setting: a mode and its drafter (None when off)."""

    def __init__(self, mode: str = "lookup", drafter: Drafter | None = None, note: str = "",
                 fixed_k: int | None = None):
        if mode not in MODES:
            from .errors import EdgechatError
            raise EdgechatError(f"unknown --speculative mode '{mode}' (choose from {', '.join(MODES)})")
        self.mode = mode if drafter is not None else "off"
        self.drafter = drafter
        self.note = note             # why it is off, when it was asked for and is not available
        self.fixed_k = fixed_k       # draft exactly this many tokens each step (None: adapt)

    def close(self) -> None:
        close = getattr(self.drafter, "close", None)
        if close:
            close()


def generate(eng, ids: Sequence[int], sampler, cancel, max_tokens: int | None,
             spec: Speculation, counts: SpecCounts) -> Iterator[int]:
    """``Engine._generate`` with drafts: the same tokens (temp 0) or the same distribution (temp > 0).
    As the plain loop, a token is yielded before it is fed, and fed when the next one is asked for (as
    far as the caller can tell): drafts fed ahead of that are rolled back when the generator ends."""
    drafter = spec.drafter
    logits = eng.feed_prompt(list(ids), cancel)
    if logits is None:                 # cancelled while the prompt was read
        return
    drafter.prepare(DraftInput(eng.cache.fed, None, _free(sampler), eng.cache.info.sinks, eng.cache.skip))
    ctl = Controller(k_max=max(K_MIN, eng.cache.spec_room() - 1), fixed=spec.fixed_k)
    n, nxt, committed = 0, None, len(eng.cache.fed)
    held = _Held(sampler)
    try:
        while max_tokens is None or n < max_tokens:
            if cancel is not None and cancel.is_set():
                return
            if nxt is None:
                nxt = sampler.sample(logits, eng.cache.fed)
            committed = len(eng.cache.fed)
            held.taken += 1
            yield nxt                      # resumed: nxt is to be fed, as in the plain loop
            n += 1
            if max_tokens is not None and n >= max_tokens:
                eng.cache.feed([nxt])
                committed = len(eng.cache.fed)
                return
            left = None if max_tokens is None else max_tokens - n
            logits, nxt, accepted = _step(eng, nxt, sampler, drafter, ctl, counts, left)
            committed = len(eng.cache.fed) - len(accepted)
            for d in accepted:             # already fed: each counts once the caller asks for more
                if cancel is not None and cancel.is_set():
                    return
                held.taken += 1
                yield d
                committed += 1
                n += 1
                if max_tokens is not None and n >= max_tokens:
                    return
    finally:
        if len(eng.cache.fed) > committed:
            eng.cache.rollback(committed)
        held.release()


class _Held:
    """The tokens a constraint holds beyond those the caller took (accepted drafts not yet asked for,
    the token drawn after them) are rolled back with the cache when the generator ends."""

    def __init__(self, sampler):
        self.c = getattr(sampler, "constraint", None)
        self.base = self.c.consumed if self.c is not None else 0
        self.taken = 0

    def release(self) -> None:
        if self.c is not None:
            self.c.rollback(self.c.consumed - self.base - self.taken)


def _free(sampler):
    """The sampler without its constraint (a drafter draws from it without moving the matcher; its
    drafts are then validated by the matcher before the verify batch)."""
    if getattr(sampler, "constraint", None) is None:
        return sampler
    free = copy.copy(sampler)          # shares the random stream
    free.constraint = None
    return free


def _step(eng, tok: int, sampler, drafter: Drafter, ctl: Controller, counts: SpecCounts, left):
    """Feed ``tok``, with drafts when they are wanted and found. Returns (logits of the next token or
    None, the next token if already drawn or None, accepted drafts now in the cache)."""
    t0 = time.perf_counter()
    forced = forced_tokens(sampler, left)
    if forced:                         # the grammar's forced tokens: one batch with tok, no drafts
        return eng.cache.feed([tok] + forced), None, forced
    k = ctl.want()
    if left is not None:
        k = min(k, left)
    draft = Draft([])
    if k > 0:
        inp = DraftInput(eng.cache.fed, tok, _free(sampler), eng.cache.info.sinks, eng.cache.skip)
        draft = _valid(drafter.propose(inp, k), sampler)
    if not draft.tokens:
        logits = eng.cache.feed([tok])
        ctl.plain(time.perf_counter() - t0)
        return logits, None, []
    base = len(eng.cache.fed)
    eng.cache.checkpoint(1 + len(draft.tokens))
    rows = eng.cache.feed([tok] + draft.tokens, all_logits=True)       # rows: [1 + k, vocab]
    a, nxt = verify(rows, draft, sampler, eng.cache.fed, base)
    eng.cache.rollback(base + 1 + a)
    counts.draft_tokens += len(draft.tokens)
    counts.accepted_tokens += a
    ctl.verified(len(draft.tokens), a, time.perf_counter() - t0)
    return None, nxt, draft.tokens[:a]


def _valid(draft: Draft, sampler) -> Draft:
    """The draft cut where the constraint's grammar stops accepting it."""
    c = getattr(sampler, "constraint", None)
    if c is None or not draft.tokens:
        return draft
    n = c.valid_prefix(draft.tokens)
    return Draft(draft.tokens[:n], draft.q[:n] if draft.q else draft.q)


def make_speculation(mode: str, draft, backend, tokenizer, *, ctx: int, sinks: int, threads: int) -> Speculation:
    """The speculation ``load`` sets up: ``mode`` "lookup", "draft" (loads ``draft``) or "off"."""
    from .errors import EdgechatError
    if mode not in MODES:
        raise EdgechatError(f"unknown --speculative mode '{mode}' (choose from {', '.join(MODES)})")
    if mode == "off":
        return Speculation("off")
    if mode == "draft" and draft is None:
        raise EdgechatError("--speculative draft needs a draft model (--draft MODEL)")
    if mode == "lookup" and draft is not None:
        raise EdgechatError("--draft is for --speculative draft (the default when --draft is given)")
    if backend.spec_room() < 2:
        note = f"speculation is native-only; the {backend.name} backend decodes without it"
        if mode == "draft":
            raise EdgechatError(f"--draft: {note}")
        return Speculation("off", note=note)
    if mode == "draft":
        from .draft import DraftModel
        return Speculation("draft", DraftModel(draft, tokenizer, ctx=ctx, sinks=sinks, threads=threads))
    from .lookup import PromptLookup
    return Speculation("lookup", PromptLookup())
