"""OpenAI's response objects: chat completions and their stream chunks, text completions, logprobs.

The ``x-edgechat`` extension field (on the final object or chunk) reports the backend and, with
``--report-cache-hits``, the cache: the slot, prompt tokens reused from the cache and evaluated,
evicted tokens. Every client of one server shares its cache, so those numbers say how much of a
prompt another client's conversation shares: without the flag they are left out, and so is
``usage.prompt_tokens_details.cached_tokens``.
"""
from __future__ import annotations

import json
import time
import uuid

from .jobs import Delta, Final
from .sampling import TokenLogprob

EXT = "x-edgechat"
# the x-edgechat fields that depend on what other clients left in the shared cache
CACHE_FIELDS = ("slot", "prompt_tokens_evaluated", "prompt_tokens_reused", "evicted_tokens",
                "evicted_this_request", "cache_used", "rebuild_tokens")


class Reply:
    """The ids and token texts one response shares across its chunks."""

    def __init__(self, kind: str, model: str, report_cache: bool = False):
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model
        self.kind = kind
        self.report_cache = report_cache

    def usage(self, final: Final) -> dict:
        if self.report_cache:
            return final.usage
        return {k: v for k, v in final.usage.items() if k != "prompt_tokens_details"}

    def ext(self, final: Final) -> dict:
        if self.report_cache:
            return final.ext
        return {k: v for k, v in final.ext.items() if k not in CACHE_FIELDS}

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    # ---- chat ---------------------------------------------------------------------------------

    def chat_chunk(self, delta: Delta | None = None, final: Final | None = None, *, first: bool = False,
                   logprobs: bool = False) -> dict:
        """One ``chat.completion.chunk``: the role first, then text, then the finish reason."""
        d = {"role": "assistant", "content": ""} if first else {}
        if delta is not None and delta.text:
            d["content"] = delta.text
        if delta is not None and delta.reasoning:          # as llama-server and DeepSeek's API send it
            d["reasoning_content"] = delta.reasoning
        if delta is not None and delta.tool_calls:
            d["tool_calls"] = delta.tool_calls
        finish = final.finish_reason if final else None
        choice = {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
        if logprobs and delta is not None and delta.logprobs:
            choice["logprobs"] = {"content": self.chat_logprobs(delta.logprobs)}
        chunk = {**self._head("chat.completion.chunk"), "choices": [choice]}
        if final is not None:
            chunk[EXT] = self.ext(final)
        return chunk

    def usage_chunk(self, final: Final) -> dict:
        return {**self._head("chat.completion.chunk" if self.kind == "chat" else "text_completion"),
                "choices": [], "usage": self.usage(final), EXT: self.ext(final)}

    def chat_completion(self, deltas: list[Delta], final: Final, logprobs: bool) -> dict:
        lps = [lp for d in deltas for lp in d.logprobs]
        message = {"role": "assistant", "content": "".join(d.text for d in deltas), "refusal": None}
        if final.tool_calls:
            message["tool_calls"] = [c.openai() for c in final.tool_calls]
            message["content"] = message["content"] or None
        reasoning = "".join(d.reasoning for d in deltas)
        if reasoning:
            message["reasoning_content"] = reasoning
        choice = {"index": 0, "message": message,
                  "logprobs": {"content": self.chat_logprobs(lps)} if logprobs else None,
                  "finish_reason": final.finish_reason}
        return {**self._head("chat.completion"), "choices": [choice], "usage": self.usage(final), EXT: self.ext(final)}

    def chat_logprobs(self, lps: list[TokenLogprob]) -> list[dict]:
        return [{**self._entry(lp.token, lp.logprob),
                 "top_logprobs": [self._entry(t, v) for t, v in lp.top]} for lp in lps]

    @staticmethod
    def _entry(raw: bytes, logprob: float) -> dict:
        return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)}

    # ---- completions --------------------------------------------------------------------------

    def text_chunk(self, delta: Delta | None, final: Final | None, logprobs: bool, offset: int = 0) -> dict:
        finish = final.finish_reason if final else None
        choice = {"index": 0, "text": delta.text if delta else "", "finish_reason": finish,
                  "logprobs": self.legacy_logprobs(delta.logprobs, offset) if logprobs and delta else None}
        chunk = {**self._head("text_completion"), "choices": [choice]}
        if final is not None:
            chunk[EXT] = self.ext(final)
        return chunk

    def completion(self, deltas: list[Delta], final: Final, logprobs: bool) -> dict:
        lps = [lp for d in deltas for lp in d.logprobs]
        choice = {"index": 0, "text": "".join(d.text for d in deltas), "finish_reason": final.finish_reason,
                  "logprobs": self.legacy_logprobs(lps, 0) if logprobs else None}
        return {**self._head("text_completion"), "choices": [choice], "usage": self.usage(final), EXT: self.ext(final)}

    def legacy_logprobs(self, lps: list[TokenLogprob], offset: int) -> dict:
        """The completions API's logprobs: parallel lists and a dict of the best per token."""
        texts = [lp.token.decode("utf-8", errors="replace") for lp in lps]
        offsets = []
        for t in texts:
            offsets.append(offset)
            offset += len(t)
        return {"tokens": texts, "token_logprobs": [lp.logprob for lp in lps], "text_offset": offsets,
                "top_logprobs": [{t.decode("utf-8", errors="replace"): v for t, v in lp.top} for lp in lps]}


def sse(obj) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
