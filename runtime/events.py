"""Events yielded by ``Engine.chat``: small dataclasses, text deltas then one final event."""
from __future__ import annotations

from dataclasses import dataclass

from .info import CacheInfo


@dataclass
class TextEvent:
    """A piece of the reply; never splits a UTF-8 character."""

    text: str
    token: int                    # the token that completed it; -1 for text held back until the end
    kind: str = "text"            # "text" (the answer) or "reasoning" (a <think> block)


@dataclass
class Stats:
    """Timings and counts of one reply."""

    prompt_tokens: int = 0        # new tokens appended to the cache for this turn
    completion_tokens: int = 0
    load_s: float = 0.0
    ttft_s: float = 0.0           # request to first token
    prefill_s: float = 0.0         # to the first sampled token (prefill and one sampling)
    decode_s: float = 0.0
    prefill_tps: float = 0.0
    decode_tps: float = 0.0
    rebuild_tokens: int = 0       # tokens re-fed because the ring had evicted past a rollback point
    draft_tokens: int = 0         # speculation: drafted tokens verified by the model
    accepted_tokens: int = 0      # speculation: drafted tokens kept
    reasoning_refeed: int = 0     # tokens read again to drop the reply's <think> block from the cache
                                  # (the history keeps the answer only); -1: kept (the ring had evicted it)

    @property
    def acceptance(self) -> float | None:
        """Accepted / drafted tokens, or None when nothing was drafted."""
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else None


@dataclass
class DoneEvent:
    """Last event of a reply."""

    text: str                     # the whole reply (the answer, without the reasoning)
    finish_reason: str            # "stop" | "length" | "cancelled"; a remote reply: also "error"
                                  # (cut mid-stream, the partial text kept) or the server's own
    stats: Stats
    cache: CacheInfo | None = None  # Engine.cache_info() after the reply
    reasoning: str = ""           # the reply's <think> block, if the model wrote one
    error: str = ""               # finish "error": why the reply broke off (a remote stream cut)
