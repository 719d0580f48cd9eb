"""One request run on the engine (in the engine thread): text deltas, then one ``Final``.

Chat requests go to the cache slot that shares the longest prefix with them (``runtime.slots``), so a
client that resends the whole history pays only for the new tokens; completions start from an empty
cache. Each request's ``runtime.reply.Reply`` turns its tokens into text: stop strings are cut from the
text and end the generation at once, a reasoning block comes as ``reasoning`` deltas.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterator

from ...runtime.events import DoneEvent, TextEvent
from ...runtime.reply import Reply
from ...runtime.sampler import SamplingParams, make_sampler
from . import structured
from .errors import bad_request
from .sampling import RequestSampler, TokenLogprob


@dataclass
class Delta:
    """New text of the reply, with the log-probabilities of the tokens sampled since the last one."""

    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)
    reasoning: str = ""           # new text of the reply's reasoning block (chat: reasoning_content)
    tool_calls: list[dict] = field(default_factory=list)   # a streamed tool-call delta (OpenAI's shape)


@dataclass
class Final:
    finish_reason: str            # "stop" | "length" | "cancelled"
    usage: dict                   # OpenAI's usage object
    ext: dict                     # the x-edgechat extension: cache, backend, slot, timings
    tool_calls: list = field(default_factory=list)   # runtime.tools.ToolCall: finish_reason "tool_calls"


@dataclass
class Limits:
    """The server's defaults and bounds (from the command line)."""

    sampling: SamplingParams
    max_prompt_tokens: int
    system: str | None = None     # the system prompt of requests that have none (--system)


def request_sampler(engine, req, limits: Limits, top_logprobs: int | None,
                    constraint=None) -> tuple[RequestSampler, int]:
    """The request's sampler (server defaults overridden by the request, its constraint first in the
    chain) and its token limit."""
    over = {"temp": req.temperature, "top_p": req.top_p, "seed": req.seed, "top_k": req.top_k,
            "min_p": req.min_p, "repeat_penalty": req.repeat_penalty}
    params = SamplingParams.of(**{**asdict(limits.sampling), **{k: v for k, v in over.items() if v is not None}})
    bias = {int(k): v for k, v in (req.logit_bias or {}).items()}
    inner = make_sampler(**params.sampler_kwargs(), constraint=constraint)
    outer = RequestSampler(inner, top_logprobs=top_logprobs, frequency=req.frequency_penalty or 0.0,
                           presence=req.presence_penalty or 0.0, bias=bias,
                           skip=engine.tokenizer.eot_ids, piece=engine.tokenizer.token_bytes)
    if constraint is not None:
        outer.forced = inner.forced       # the grammar's forced tokens, fed as one batch by the engine
    return outer, req.limit() or params.max_tokens


def run_chat(engine, pool, req, limits: Limits, cancel) -> Iterator[Delta | Final]:
    messages, shape = chat_setup(engine, req, limits)
    slot, _ = pool.take(messages)
    before = engine.cache_info()
    sampler, reply = chat_reply(engine, req, limits, shape)
    stream, done = _Deltas(reply, sampler), None
    for ev in engine.chat(messages, cancel=cancel, sampler=sampler, reply=reply,
                          template_vars=req.chat_template_kwargs):
        if isinstance(ev, DoneEvent):
            done = ev
        elif (delta := stream.delta(ev)) is not None:
            yield delta
    yield from chat_end(engine, pool, slot, before, done, messages, sampler, reply)


def chat_setup(engine, req, limits: Limits) -> tuple[list[dict], structured.Structured]:
    """A chat request's messages (the server's system prompt when it has none, its tools rendered),
    checked for size, and its structure (constraint, tools)."""
    messages = req.chat_messages()
    if limits.system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": limits.system})
    _check_size(engine, [m["content"] for m in messages], limits)
    shape = structured.prepare(engine, req)
    if shape.tools is not None:
        messages = shape.tools.messages(messages)
    return messages, shape


def chat_reply(engine, req, limits: Limits, shape) -> tuple[RequestSampler, Reply]:
    """A chat request's sampler and reply (stop strings, token limit, tools)."""
    top = (req.top_logprobs or 0) if req.logprobs else None
    sampler, max_tokens = request_sampler(engine, req, limits, top, shape.constraint)
    return sampler, Reply(engine.tokenizer, max_tokens=max_tokens, stops=req.stops(), tools=shape.tools)


def chat_end(engine, pool, slot, before, done: DoneEvent, messages, sampler, reply) -> Iterator[Delta | Final]:
    """A chat reply's tool-call deltas, then its ``Final``."""
    for calls in structured.stream_calls(reply.tool_calls):
        yield Delta("", tool_calls=calls)
    s = done.stats
    yield _final(engine, pool, slot, before, done.cache, done.finish_reason,
                 sampler.prompt_tokens or s.prompt_tokens, s.prompt_tokens, s.completion_tokens,
                 {"system_pinned": engine.info.pin_system and messages[0]["role"] == "system",
                  "rebuild_tokens": s.rebuild_tokens, "ttft_s": round(s.ttft_s, 4),
                  "decode_tps": round(s.decode_tps, 2)}, reply.tool_calls)


def run_completion(engine, pool, req, limits: Limits, cancel) -> Iterator[Delta | Final]:
    ids, sampler, reply = completion_setup(engine, req, limits)
    slot, _ = pool.take(None)
    engine.reset()
    before = engine.cache_info()
    stream = _Deltas(reply, sampler)
    for tok in engine.generate(ids, sampler, cancel, max_tokens=reply.max_tokens):
        for ev in reply.feed(tok):
            if (delta := stream.delta(ev)) is not None:
                yield delta
        if reply.done:
            break
    for ev in reply.close("cancelled" if cancel.is_set() else "length"):
        if (delta := stream.delta(ev)) is not None:
            yield delta
    yield completion_final(engine, pool, slot, before, engine.cache_info(), reply, ids)


def completion_setup(engine, req, limits: Limits) -> tuple[list[int], RequestSampler, Reply]:
    """A completion request's prompt ids, sampler and reply."""
    ids = _prompt_ids(engine, req.prompt, limits)
    shape = structured.prepare(engine, req)
    sampler, max_tokens = request_sampler(engine, req, limits, req.logprobs, shape.constraint)
    return ids, sampler, Reply(engine.tokenizer, max_tokens=max_tokens, stops=req.stops())


def completion_final(engine, pool, slot, before, cache, reply: Reply, ids: list[int]) -> Final:
    ttft, _ = reply.timings()
    return _final(engine, pool, slot, before, cache, reply.finish_reason, len(ids), len(ids), len(reply.tokens),
                  {"system_pinned": False, "ttft_s": round(ttft, 4)})


class _Deltas:
    """A request's text events as deltas, each with the log-probabilities of the tokens sampled since
    the last one; the tokens of a stop string are not part of the reply (no log-probabilities)."""

    def __init__(self, reply: Reply, sampler: RequestSampler):
        self._reply, self._sampler, self._seen = reply, sampler, 0

    def delta(self, ev: TextEvent) -> Delta | None:
        lps = self._sampler.logprobs[self._seen:]
        self._seen = len(self._sampler.logprobs)
        lps = [] if self._reply.stopped else lps
        if ev.kind == "reasoning":
            return Delta("", lps, reasoning=ev.text)
        return Delta(ev.text, lps) if ev.text or lps else None


def _final(engine, pool, slot, before, cache, finish, prompt, evaluated, completion, extra,
           tool_calls=()) -> Final:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": prompt - evaluated}}
    i = engine.info
    ext = {"backend": i.backend, "model": i.name, "slot": slot, "slots": pool.slots,
           "prompt_tokens_evaluated": evaluated, "prompt_tokens_reused": prompt - evaluated,
           "evicted_tokens": cache.evicted,
           "evicted_this_request": cache.evicted - (before.evicted if cache.evicted >= before.evicted else 0),
           "sinks": cache.sinks, "cache_used": cache.used,
           "cache_capacity": cache.capacity, **extra}
    return Final(finish, usage, ext, list(tool_calls))


def _check_size(engine, texts: list[str], limits: Limits) -> None:
    n = sum(len(engine.tokenize(t)) for t in texts)
    if n > limits.max_prompt_tokens:
        raise bad_request(f"the prompt has about {n} tokens; this server takes at most {limits.max_prompt_tokens} "
                          "(--max-prompt-tokens)", param="messages", code="context_length_exceeded")


def _prompt_ids(engine, prompt, limits: Limits) -> list[int]:
    tok = engine.tokenizer
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        bad = [t for t in prompt if t >= tok.n_vocab]
        if bad:
            raise bad_request(f"prompt: token id {bad[0]} is outside the vocabulary (0..{tok.n_vocab - 1})",
                              param="prompt")
        ids = list(prompt)
    else:
        text = prompt if isinstance(prompt, str) else prompt[0]
        ids = ([tok.bos_id] if tok.add_bos and tok.bos_id >= 0 else []) + engine.tokenize(text)
    if not ids:
        raise bad_request("prompt: empty", param="prompt")
    if len(ids) > limits.max_prompt_tokens:
        raise bad_request(f"the prompt has {len(ids)} tokens; this server takes at most "
                          f"{limits.max_prompt_tokens} (--max-prompt-tokens)", param="prompt",
                          code="context_length_exceeded")
    return ids
