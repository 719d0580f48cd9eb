"""edgechat command line: the chat TUI by default, ``-p`` one-shot prompts, and management commands.

Exit codes: 0 ok, 1 runtime error, 2 usage, 130 interrupted, 143 SIGTERM, 129 SIGHUP.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys

from ..runtime.errors import EdgechatError
from ..runtime.info import DEFAULT_CTX, DEFAULT_SINKS, GPU_LAYERS_IGNORED
from .argtypes import int_at_least, sampling_value
from .loader import load_engine, sampling_kwargs

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _gpu_layers(text: str) -> int:
    return -1 if text == "all" else int_at_least(0)(text)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options that choose and load a model (shared by chat, one-shot and bench)."""
    g = p.add_argument_group("model")
    g.add_argument("-m", "--model", help="model name (see `edgechat models`) or path to a .gguf file "
                                         "(default: the packaged SmolLM2-135M-Instruct)")
    g.add_argument("--backend", choices=["auto", "native", "llama.cpp"], default="auto")
    g.add_argument("--threads", type=int_at_least(1), help="compute threads (default: physical cores)")
    g.add_argument("--ctx", type=int_at_least(2), default=DEFAULT_CTX, help="KV cache capacity in tokens")
    g.add_argument("--sinks", type=int_at_least(0), default=DEFAULT_SINKS, help="pinned attention-sink tokens")
    g.add_argument("--kv-type", choices=["auto", "f16", "q8_0"], default="auto",
                   help="KV cache rows: f16, q8_0 (int8 + a scale per 32 values: about half the memory), or "
                        "auto (default): q8_0 on the native engine, f16 on llama.cpp, each one's faster")
    g.add_argument("--kv-snapshots-mib", type=int_at_least(0), default=512, metavar="N",
                   help="chat TUI: keep saved chats' KV caches, at most N MiB on disk (0: off)")
    g.add_argument("--pin-system", action="store_true", help="pin BOS + the whole system prompt as sinks")
    g.add_argument("--gpu-layers", type=_gpu_layers, default=0, metavar="N|all",
                   help="layers to offload to a GPU (llama.cpp built with Metal/CUDA; ignored, with a "
                   "warning, by a CPU-only build)")
    g.add_argument("--evict-chunk", type=int_at_least(1), help="llama.cpp backend: tokens evicted at once")
    g.add_argument("--force", action="store_true", help="load even if the memory preflight says no")
    g.add_argument("--speculative", choices=["lookup", "draft", "off"],
                   help="speculative decoding (native backend; never changes the answer): lookup drafts "
                        "from the conversation's own text (default), draft uses --draft, off disables it")
    g.add_argument("--draft", metavar="MODEL", help="a small draft model with the same tokenizer "
                   "(name or .gguf path); implies --speculative draft")


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """Sampling options; defaults from ``SamplingParams`` (the sampler and the TUI read the same)."""
    from ..runtime.sampler import DEFAULTS as D
    g = p.add_argument_group("sampling")
    g.add_argument("--max-tokens", type=sampling_value("max_tokens"), default=D.max_tokens)
    g.add_argument("--temp", type=sampling_value("temp"), default=D.temp)
    g.add_argument("--top-k", type=sampling_value("top_k"), default=D.top_k)
    g.add_argument("--top-p", type=sampling_value("top_p"), default=D.top_p)
    g.add_argument("--min-p", type=sampling_value("min_p"), default=D.min_p)
    g.add_argument("--repeat-penalty", type=sampling_value("repeat_penalty"), default=D.repeat_penalty)
    g.add_argument("--seed", type=sampling_value("seed"), default=D.seed,
                   help="the same seed, the same text; -1 (as llama.cpp) or none: a fresh one each time")
    g.add_argument("--system", help="system prompt")


def _version() -> str:
    """edgechat's version, the native engine's kernels and llama-cpp-python's version."""
    from importlib import metadata

    def version_of(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"
    try:
        from .. import _native
        isa = _native.isa()
    except ImportError:
        isa = "not built"
    return f"edgechat {version_of('edgechat')} (native kernels: {isa}; llama-cpp-python {version_of('llama_cpp_python')})"


def build_parser() -> argparse.ArgumentParser:
    from . import manage
    p = argparse.ArgumentParser(prog="edgechat", description="Offline chat with small LLMs. With no "
                                "arguments: the chat TUI. With -p (or a prompt on stdin): one answer.")
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("-p", "--prompt", help="one-shot prompt ('-' reads stdin)")
    p.add_argument("--json", action="store_true", help="one-shot: print one JSON object")
    p.add_argument("--truncate-prompt", action="store_true",
                   help="a prompt beyond the window (--ctx): read only the sinks and the last window's "
                        "worth of it, skip the rest (default: read it all; the earliest tokens leave)")
    p.add_argument("--session", metavar="FILE", help="one-shot: restore the KV cache and conversation from FILE "
                   "when it matches, feed only the new prompt, save them back")
    p.add_argument("-v", "--verbose", action="store_true", help="say which backend runs and why, and timings")
    add_model_options(p)
    add_sampling_options(p)
    sub = p.add_subparsers(dest="command", metavar="{models,pull,doctor,bench,serve}")
    manage.add_parsers(sub)
    from . import bench
    b = sub.add_parser("bench", help="native vs llama.cpp speed, side by side, on models x weight types "
                       "(--speculative: with vs without speculative decoding)",
                       description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(b)
    from .serve.command import add_parser as add_serve
    add_serve(sub, (add_model_options, add_sampling_options))
    return p


def _read_prompt(args) -> str | None:
    if args.prompt is not None and args.prompt != "-":
        return args.prompt
    if args.prompt == "-" or not sys.stdin.isatty():
        return sys.stdin.buffer.read().decode("utf-8", errors="replace")   # invalid utf-8 replaced
    return None


def one_shot(args, prompt: str) -> int:
    """Answer one prompt, streaming text to stdout (or one JSON object with --json)."""
    if not prompt.strip():
        print("edgechat: the prompt is empty", file=sys.stderr)
        return EXIT_USAGE
    engine = load_engine(args)
    if args.verbose:
        i = engine.info
        print(f"edgechat: backend {i.backend} ({i.reason}); {i.name} [{i.arch}, {', '.join(i.types)}], "
              f"{i.threads} threads, isa {i.isa}, KV cache {engine.cache_info().kv_type}", file=sys.stderr)
        if engine.speculation.note:
            print(f"edgechat: {engine.speculation.note}", file=sys.stderr)
    elif GPU_LAYERS_IGNORED in engine.info.reason:                   # said above with -v
        print(f"edgechat: warning: {GPU_LAYERS_IGNORED}", file=sys.stderr)
    from . import session
    from .prompt_notice import PrefillReporter
    sess = session.start(engine, args.session, args.verbose)
    messages = session.messages(engine, sess, prompt, args.system)
    reporter = PrefillReporter(sys.stderr)
    text, done, code = _stream(engine, messages, args, reporter)
    if done and code == EXIT_OK:
        session.save(engine, args.session)
    if args.json:
        _print_json(engine, text, done, sess, reporter)
    elif text and not text.endswith("\n"):
        sys.stdout.write("\n")
    if args.verbose and done:
        s, c = done.stats, done.cache
        print(f"edgechat: {s.prompt_tokens} prompt tokens at {s.prefill_tps:.1f} tok/s, {s.completion_tokens} "
              f"tokens at {s.decode_tps:.1f} tok/s, ttft {s.ttft_s:.3f} s, finish {done.finish_reason}, "
              f"cache {c.used}/{c.capacity} evicted {c.evicted}", file=sys.stderr)
        print(f"edgechat: {speculation_line(engine, s)}", file=sys.stderr)
    engine.close()
    return code


def _print_json(engine, text: str, done, sess, reporter) -> None:
    result = _json_result(engine, text, done, sess)
    result["prompt"] = reporter.fit.to_dict() if reporter.fit else None
    if done is None:                      # stopped: count the tokens it streamed
        result["tokens"]["completion"] = reporter.streamed
    print(json.dumps(result, ensure_ascii=False))


def _stream(engine, messages: list[dict], args, reporter):
    """Run the chat, writing text as it comes unless --json: (text, DoneEvent or None, exit code).
    Ctrl-C, SIGTERM and SIGHUP stop it (within one token or one prefill chunk): the partial reply is
    kept and the code says which."""
    from ..runtime.events import DoneEvent
    from .signals import Terminated, raising_on_terminate
    parts, done, code = [], None, EXIT_OK
    try:
        with raising_on_terminate():
            for ev in engine.chat(messages, on_prefill=reporter, truncate_prompt=args.truncate_prompt,
                                  **sampling_kwargs(args)):
                reporter.close()
                if isinstance(ev, DoneEvent):
                    done = ev
                else:
                    parts.append(ev.text)
                    reporter.streamed += ev.token >= 0
                    if not args.json:
                        sys.stdout.write(ev.text)
                        sys.stdout.flush()
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Terminated as e:
        code = e.exit_code
    reporter.close()
    return (done.text if done else "".join(parts)), done, code


def _json_result(engine, text: str, done, sess=None) -> dict:
    info = engine.info
    s = done.stats if done else None
    cache = done.cache if done else engine.cache_info()
    return {
        "text": text,
        "model": info.name,
        "path": info.path,
        "backend": info.backend,
        "backend_reason": info.reason,
        "finish_reason": done.finish_reason if done else "cancelled",
        "tokens": {"prompt": s.prompt_tokens if s else 0, "completion": s.completion_tokens if s else 0},
        "timings": {"load_s": round(info.load_s, 4),
                    "ttft_s": round(s.ttft_s + (sess.restore_s if sess else 0.0), 4) if s else None,
                    "restore_s": round(sess.restore_s, 4) if sess else 0.0,
                    "prefill_tps": round(s.prefill_tps, 2) if s else None,
                    "decode_tps": round(s.decode_tps, 2) if s else None,
                    "draft_tokens": s.draft_tokens if s else 0, "accepted_tokens": s.accepted_tokens if s else 0},
        "speculative": engine.speculation.mode,
        "cache": {**{k: getattr(cache, k) for k in ("capacity", "used", "sinks", "evicted", "kv_type", "bytes")},
                  "restored": bool(sess and sess.restored)},
    }


def speculation_line(engine, s) -> str:
    """One line on a reply's speculation: mode, drafted and accepted tokens."""
    sp = engine.speculation
    if sp.mode == "off":
        return f"speculative off{f' ({sp.note})' if sp.note else ''}"
    rate = f" ({s.acceptance:.0%})" if s.acceptance is not None else ""
    return f"speculative {sp.mode}: {s.accepted_tokens}/{s.draft_tokens} drafted tokens accepted{rate}"


def _run_bench(args) -> int:
    from . import bench
    return bench.run(args)


def main(argv=None) -> int:
    """Console entry point."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL) if hasattr(signal, "SIGPIPE") else None
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ctx <= args.sinks:
        parser.error(f"--ctx ({args.ctx}) must be larger than --sinks ({args.sinks})")
    if args.draft and args.speculative == "lookup":
        parser.error("--draft needs --speculative draft (the default when --draft is given)")
    if args.speculative == "draft" and not args.draft:
        parser.error("--speculative draft needs --draft MODEL")
    try:
        if args.command == "bench":
            return _run_bench(args)
        if args.command == "serve":
            from .serve.command import run as serve
            return serve(args)
        if args.command:
            from . import manage
            return manage.run(args)
        prompt = _read_prompt(args)
        if prompt is None:
            if args.json:
                parser.error("--json needs a prompt (-p TEXT or stdin)")
            from .tui.app import run_tui
            return run_tui(args)
        return one_shot(args, prompt)
    except EdgechatError as e:
        print(f"edgechat: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
