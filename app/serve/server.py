"""Start and stop the server: load the engine, size the cache slots, run uvicorn, shut down cleanly.

Ctrl-C (exit 130) or SIGTERM (exit 0) cancels the running and queued jobs first, so an open stream ends at once with
its last chunk (``finish_reason: "stop"``, ``x-edgechat.reason: "shutdown"``) and ``data: [DONE]``; uvicorn
then closes the connections and the engine is freed. Each request's headers must arrive within
--header-timeout (``protocol.TimedH11Protocol``).
"""
from __future__ import annotations

import signal
import sys
from functools import partial
from pathlib import Path

import uvicorn

from ...runtime.errors import EdgechatError
from .app import ServeState, build_app
from .defaults import MAX_TOKENS_PER_CTX, PARALLEL
from .guard import allowed_hosts, origin_name
from .jobs import Limits
from .protocol import TimedH11Protocol
from .worker import EngineWorker

GRACEFUL_S = 5          # uvicorn's wait for open connections after the jobs were cancelled


class _Server(uvicorn.Server):
    """uvicorn's server, cancelling the engine's jobs as soon as a shutdown signal comes."""

    def __init__(self, config: uvicorn.Config, worker: EngineWorker, on_started):
        super().__init__(config)
        self._worker, self._on_started = worker, on_started

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()

    def handle_exit(self, sig, frame) -> None:
        self._worker.cancel_all()
        super().handle_exit(sig, frame)


def check_address(host: str, port: int) -> None:
    """Fail early, before the model loads, when the address cannot be listened on."""
    import socket
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as uvicorn binds
            s.bind((host, port))
    except OSError as e:
        raise EdgechatError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(args, api_key: str | None, started: float) -> int:
    from ..loader import load_engine
    # a request's sampler (penalties, logit bias, log-probabilities) sees every sampled token; drafts
    # accepted in a verify batch would skip it, so the server decodes without speculation
    if getattr(args, "draft", None) or getattr(args, "speculative", None) not in (None, "off"):
        raise EdgechatError("serve: speculative decoding is not available in the server (drop --speculative/--draft)")
    args.speculative = "off"
    engine = load_engine(args, seqs=args.cache_slots)   # llama.cpp: a sequence per slot (native: on demand)
    from .structured import warm
    warm(engine)                       # llguidance's tokenizer of this vocab: built now, not in a request
    worker = None
    try:
        state = _state(args, engine, api_key, started)
        worker = state.worker
        config = uvicorn.Config(build_app(state), host=args.host, port=args.port, lifespan="off",
                                http=partial(TimedH11Protocol, header_timeout=args.header_timeout),
                                log_level="info" if args.verbose else "warning", access_log=args.verbose,
                                timeout_graceful_shutdown=GRACEFUL_S)
        # uvicorn re-raises the signal that stopped it once it has shut down: SIGTERM then ends here
        # with exit 0 (cleanup below included), Ctrl-C as KeyboardInterrupt (the CLI's exit 130)
        previous = signal.signal(signal.SIGTERM, _exit_ok)
        try:
            _Server(config, worker, lambda: _announce(args, state)).run()
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        if worker is not None:
            worker.stop()
        engine.close()
    return 0


def _exit_ok(sig, frame) -> None:
    raise SystemExit(0)


def _state(args, engine, api_key: str | None, started: float) -> ServeState:
    import psutil

    from ...runtime.sampler import SamplingParams
    from ...runtime.slots import SlotPool, slots_that_fit
    from ..loader import sampling_kwargs
    fit = slots_that_fit(args.cache_slots, engine.cache_info().bytes, psutil.virtual_memory().available)
    if fit < args.cache_slots:
        print(f"edgechat: {fit} cache slots fit in the RAM available, not {args.cache_slots}", file=sys.stderr)
    pool = SlotPool(engine, fit)
    limits = Limits(SamplingParams.of(**sampling_kwargs(args)), args.max_prompt_tokens, args.system)
    worker = _worker(args, engine, pool, limits)
    aliases = {Path(engine.info.path).name, engine.info.path}
    if args.model:
        aliases.add(args.model)
    return ServeState(engine=engine, pool=pool, worker=worker, limits=limits, model_id=engine.info.name,
                      aliases=frozenset(aliases), api_key=api_key, max_body=args.max_body_mb << 20,
                      max_tokens_limit=args.max_tokens_limit or MAX_TOKENS_PER_CTX * engine.info.ctx,
                      body_timeout=args.body_timeout, report_cache_hits=args.report_cache_hits,
                      hosts=allowed_hosts(args.host, args.allowed_hosts),
                      origins=frozenset(origin_name(o) for o in args.allowed_origins), created=int(started),
                      default_max_tokens=getattr(args, "max_tokens", None))


def parallel_streams(asked: int | None, slots: int, holds_several: bool) -> int:
    """How many requests decode together: ``asked`` (None: ``PARALLEL``), at most the ``slots`` that fit;
    1 on a backend with one cache (llama.cpp loaded with one sequence)."""
    if not holds_several:
        return 1
    return max(1, min(PARALLEL if asked is None else asked, slots))


def _worker(args, engine, pool, limits: Limits):
    """The batch worker when several streams may decode together, else the one-at-a-time worker."""
    n = parallel_streams(args.parallel, pool.slots, engine.holds_several)
    if args.parallel is not None and n < args.parallel:
        why = f"the {engine.info.backend} backend runs one at a time" if not engine.holds_several else \
            f"{pool.slots} cache slots fit in the RAM available"
        print(f"edgechat: {n} parallel stream{'s' if n > 1 else ''}, not {args.parallel}: {why}", file=sys.stderr)
    if n > 1:
        from .batching import BatchWorker
        return BatchWorker(engine, pool, limits, n, args.queue_size, args.request_timeout)
    return EngineWorker(args.queue_size, args.request_timeout)


def _announce(args, s: ServeState) -> None:
    i = s.engine.info
    host = f"[{args.host}]" if ":" in args.host else args.host
    slots = f"{s.pool.slots} cache slot{'s' if s.pool.slots > 1 else ''}"
    if s.pool.slots < args.cache_slots and not s.engine.holds_several:
        slots += f" (the {i.backend} backend keeps one)"
    n = s.worker.parallel
    slots += f", {n} requests decode together" if n > 1 else ", one request at a time"
    print(f"edgechat serve: {s.model_id} on {i.backend} (ctx {i.ctx}, {slots}"
          f"{', system prompt pinned' if i.pin_system else ''}) at http://{host}:{args.port}/v1"
          f"{'' if s.api_key is None else ' (API key required)'}", file=sys.stderr, flush=True)
