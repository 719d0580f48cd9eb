"""One request run on the engine (in the engine thread): text deltas, then one ``Final``.

Chat requests go to the cache slot that shares the longest prefix with them (``runtime.slots``), so a
client that resends the whole history pays only for the new tokens; completions start from an empty
cache. Stop strings are cut from the text (``StopMatcher``) and end the generation at once.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

from ...runtime.events import DoneEvent
from ...runtime.sampler import SamplingParams, make_sampler
from ...runtime.tokenizer import IncrementalDecoder
from .errors import bad_request
from .sampling import RequestSampler, TokenLogprob
from .stops import StopMatcher


@dataclass
class Delta:
    """New text of the reply, with the log-probabilities of the tokens sampled since the last one."""

    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass
class Final:
    finish_reason: str            # "stop" | "length" | "cancelled"
    usage: dict                   # OpenAI's usage object
    ext: dict                     # the x-edgechat extension: cache, backend, slot, timings


@dataclass
class Limits:
    """The server's defaults and bounds (from the command line)."""

    sampling: SamplingParams
    max_prompt_tokens: int
    system: str | None = None     # the system prompt of requests that have none (--system)


def request_sampler(engine, req, limits: Limits, top_logprobs: int | None) -> tuple[RequestSampler, int]:
    """The request's sampler (server defaults overridden by the request) and its token limit."""
    over = {"temp": req.temperature, "top_p": req.top_p, "seed": req.seed, "top_k": req.top_k,
            "min_p": req.min_p, "repeat_penalty": req.repeat_penalty}
    params = SamplingParams.of(**{**asdict(limits.sampling), **{k: v for k, v in over.items() if v is not None}})
    bias = {int(k): v for k, v in (req.logit_bias or {}).items()}
    inner = make_sampler(**params.sampler_kwargs())
    return RequestSampler(inner, top_logprobs=top_logprobs, frequency=req.frequency_penalty or 0.0,
                          presence=req.presence_penalty or 0.0, bias=bias,
                          skip=engine.tokenizer.eot_ids, piece=engine.tokenizer.token_bytes), \
        req.limit() or params.max_tokens


def run_chat(engine, pool, req, limits: Limits, cancel) -> Iterator[Delta | Final]:
    messages = req.chat_messages()
    if limits.system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": limits.system})
    _check_size(engine, [m["content"] for m in messages], limits)
    slot, _ = pool.take(messages)
    before = engine.cache_info()
    top = (req.top_logprobs or 0) if req.logprobs else None
    sampler, max_tokens = request_sampler(engine, req, limits, top)
    stops, done, seen = StopMatcher(req.stops()), None, 0
    for ev in engine.chat(messages, cancel=cancel, sampler=sampler, max_tokens=max_tokens):
        if isinstance(ev, DoneEvent):
            done = ev
            continue
        text, lps = stops.feed(ev.text), sampler.logprobs[seen:]
        seen = len(sampler.logprobs)
        lps = [] if stops.stopped else lps        # tokens of a stop string are not part of the reply
        if text or lps:
            yield Delta(text, lps)
        if stops.stopped:
            cancel.set()                   # the engine stops before the next token
    tail = stops.flush()
    if tail:
        yield Delta(tail)
    s = done.stats
    yield _final(engine, pool, slot, before, done.cache, _finish(done.finish_reason, stops),
                 sampler.prompt_tokens or s.prompt_tokens, s.prompt_tokens, s.completion_tokens,
                 {"system_pinned": engine.info.pin_system and messages[0]["role"] == "system",
                  "rebuild_tokens": s.rebuild_tokens, "ttft_s": round(s.ttft_s, 4),
                  "decode_tps": round(s.decode_tps, 2)})


def run_completion(engine, pool, req, limits: Limits, cancel) -> Iterator[Delta | Final]:
    ids = _prompt_ids(engine, req.prompt, limits)
    slot, _ = pool.take(None)
    engine.reset()
    before = engine.cache_info()
    sampler, max_tokens = request_sampler(engine, req, limits, req.logprobs)
    stops, decoder, eot = StopMatcher(req.stops()), IncrementalDecoder(engine.tokenizer), engine.tokenizer.eot_ids
    t0, t_first, n, finish, seen = time.perf_counter(), None, 0, "length", 0
    for tok in engine.generate(ids, sampler, cancel, max_tokens=max_tokens):
        t_first = t_first or time.perf_counter()
        if tok in eot:
            finish = "stop"
            break
        n += 1
        text, lps = stops.feed(decoder.feed(tok)), sampler.logprobs[seen:]
        seen = len(sampler.logprobs)
        lps = [] if stops.stopped else lps        # tokens of a stop string are not part of the reply
        if text or lps:
            yield Delta(text, lps)
        if stops.stopped:
            break
    tail = stops.feed(decoder.flush()) + stops.flush()
    if tail:
        yield Delta(tail)
    if not stops.stopped and finish != "stop" and cancel.is_set() and n < max_tokens:
        finish = "cancelled"
    yield _final(engine, pool, slot, before, engine.cache_info(), "stop" if stops.stopped else finish,
                 len(ids), len(ids), n,
                 {"system_pinned": False, "ttft_s": round((t_first or time.perf_counter()) - t0, 4)})


def _finish(engine_reason: str, stops: StopMatcher) -> str:
    return "stop" if stops.stopped else engine_reason


def _final(engine, pool, slot, before, cache, finish, prompt, evaluated, completion, extra) -> Final:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": prompt - evaluated}}
    i = engine.info
    ext = {"backend": i.backend, "model": i.name, "slot": slot, "slots": pool.slots,
           "prompt_tokens_evaluated": evaluated, "prompt_tokens_reused": prompt - evaluated,
           "evicted_tokens": cache.evicted,
           "evicted_this_request": cache.evicted - (before.evicted if cache.evicted >= before.evicted else 0),
           "sinks": cache.sinks, "cache_used": cache.used,
           "cache_capacity": cache.capacity, **extra}
    return Final(finish, usage, ext)


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
