"""edgechat command line: the chat TUI by default, ``-p`` one-shot prompts, and management commands.

Exit codes: 0 ok, 1 runtime error, 2 usage, 130 interrupted, 143 SIGTERM, 129 SIGHUP.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys

from ..runtime.errors import EdgechatError
from ..runtime.info import GPU_LAYERS_IGNORED
from .loader import load_engine, sampling_kwargs
from .options import add_model_options, add_output_options, add_remote_options, add_sampling_options, inherit
from .reply_format import add_format_options

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _version() -> str:
    """edgechat's version, the native engine's kernels and llama-cpp-python's version."""
    from importlib import metadata

    def version_of(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"
    from ..runtime.kernels import native_isa
    isa = native_isa() or "not built"
    return f"edgechat {version_of('edgechat')} (native kernels: {isa}; llama-cpp-python {version_of('llama_cpp_python')})"


def build_parser() -> argparse.ArgumentParser:
    from . import manage
    p = argparse.ArgumentParser(prog="edgechat", usage="%(prog)s [options] [-p PROMPT] [COMMAND ...]  (see -h)",
                                description="Offline chat with small LLMs. With no "
                                "arguments: the chat TUI. With -p (or a prompt on stdin): one answer.")
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("-p", "--prompt", help="one-shot prompt ('-' reads stdin)")
    p.add_argument("--truncate-prompt", action="store_true",
                   help="a prompt beyond the window (--ctx): read only the sinks and the last window's "
                        "worth of it, skip the rest (default: read it all; the earliest tokens leave)")
    p.add_argument("--session", metavar="FILE", help="one-shot: restore the KV cache and conversation from FILE "
                   "when it matches, feed only the new prompt, save them back")
    p.add_argument("--raw", action="store_true", help="one-shot: feed the prompt as is, no chat template "
                   "(for a base model: 'Q: ...\\nA:'); --chat-template raw")
    add_output_options(p)
    add_model_options(p)
    add_sampling_options(p)
    add_remote_options(p)
    add_format_options(p)
    p.add_argument("--think", action=argparse.BooleanOptionalAction, default=None,
                   help="thinking models: split the <think> block off the answer (stderr, or 'reasoning' in --json)")
    sub = p.add_subparsers(dest="command", metavar="{models,pull,doctor,bench,serve}")
    manage.add_parsers(sub)
    from . import bench
    b = sub.add_parser("bench", help="native vs llama.cpp speed, side by side, on models x weight types "
                       "(--speculative: with vs without speculative decoding)",
                       description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(b)
    from .serve.command import add_parser as add_serve
    add_serve(sub, (add_model_options, add_sampling_options))
    for command in sub.choices.values():   # a flag before the subcommand is not lost
        inherit(p, command)
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
    from . import reply_format
    from . import remote as remote_cli
    fmt = reply_format.format_of(args)
    extra = remote_cli.chat_extras(args, fmt)        # a server's response_format; checked before connecting
    if args.think is not None:                   # the split, and the template's own switch
        extra["reasoning"] = args.think
        extra["template_vars"] = {"enable_thinking": args.think}
    url = remote_cli.base_url(args)
    engine = remote_cli.connect(args, url) if url else load_engine(args)
    remote = engine.info.backend == "remote"
    if args.verbose and remote:
        print(remote_cli.verbose_start(engine), file=sys.stderr)
    elif args.verbose:
        i = engine.info
        print(f"edgechat: backend {i.backend} ({i.reason}); {i.name} [{i.arch}, {', '.join(i.types)}], "
              f"{i.threads} threads, isa {i.isa}, KV cache {engine.cache_info().kv_type}, template {i.template}",
              file=sys.stderr)
        if engine.speculation.note:
            print(f"edgechat: {engine.speculation.note}", file=sys.stderr)
    elif GPU_LAYERS_IGNORED in engine.info.reason:                   # said above with -v
        print(f"edgechat: warning: {GPU_LAYERS_IGNORED}", file=sys.stderr)
    if not remote and engine.info.base_model and not args.raw and not args.chat_template:
        print(f"edgechat: {engine.info.name} looks like a base model (no chat template, no instruct/it/chat in "
              "its name): it continues text rather than answering; --raw feeds the prompt as is", file=sys.stderr)
    from . import session
    from .prompt_notice import PrefillReporter
    sess = session.start(engine, args.session, args.verbose)
    messages = session.messages(engine, sess, prompt, args.system)
    reporter = PrefillReporter(sys.stderr)
    sampler = None if remote else reply_format.sampler(engine, fmt, sampling_kwargs(args))
    text, done, code = _stream(engine, messages, args, reporter, sampler, **extra)
    if done and code == EXIT_OK:
        session.save(engine, args.session)
    if args.json:
        _print_json(engine, text, done, sess, reporter, reply_format.parsed(fmt, text, done and done.finish_reason))
    elif text and not text.endswith("\n"):
        sys.stdout.write("\n")
    if done and done.finish_reason == "error":           # a server's stream cut mid-reply
        print(f"edgechat: {done.error}; the partial reply is kept", file=sys.stderr)
        code = EXIT_ERROR
    if args.verbose and done and remote:
        print(remote_cli.verbose_done(done), file=sys.stderr)
    elif args.verbose and done:
        s, c = done.stats, done.cache
        print(f"edgechat: {s.prompt_tokens} prompt tokens at {s.prefill_tps:.1f} tok/s, {s.completion_tokens} "
              f"tokens at {s.decode_tps:.1f} tok/s, ttft {s.ttft_s:.3f} s, finish {done.finish_reason}, "
              f"cache {c.used}/{c.capacity} evicted {c.evicted}", file=sys.stderr)
        print(f"edgechat: {speculation_line(engine, s)}", file=sys.stderr)
    engine.close()
    return code


def _print_json(engine, text: str, done, sess, reporter, parsed=None) -> None:
    result = _json_result(engine, text, done, sess)
    result["parsed"] = parsed             # the reply as JSON (--json-schema, --format json)
    result["prompt"] = reporter.fit.to_dict() if reporter.fit else None
    if done is None:                      # stopped: count the tokens it streamed
        result["tokens"]["completion"] = reporter.streamed
    print(json.dumps(result, ensure_ascii=False))


def _stream(engine, messages: list[dict], args, reporter, sampler=None, **extra):
    """Run the chat, writing text as it comes unless --json: (text, DoneEvent or None, exit code).
    Ctrl-C, SIGTERM and SIGHUP stop it (within one token or one prefill chunk): the partial reply is
    kept and the code says which."""
    from ..runtime.events import DoneEvent
    from .signals import Terminated, raising_on_terminate
    parts, done, code = [], None, EXIT_OK
    try:
        with raising_on_terminate():
            for ev in engine.chat(messages, on_prefill=reporter, truncate_prompt=args.truncate_prompt,
                                  sampler=sampler, **extra, **sampling_kwargs(args)):
                reporter.close()
                if isinstance(ev, DoneEvent):
                    done = ev
                    continue
                reporter.streamed += ev.token >= 0
                out = sys.stdout if ev.kind == "text" else sys.stderr     # reasoning goes to stderr
                if ev.kind == "text":
                    parts.append(ev.text)
                if not args.json:
                    out.write(ev.text)
                    out.flush()
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
        "template": getattr(info, "template", None),
        "finish_reason": done.finish_reason if done else "cancelled",
        "reasoning": done.reasoning if done else None,
        "error": done.error if done and done.error else None,
        "tokens": {"prompt": s.prompt_tokens if s else 0, "completion": s.completion_tokens if s else 0},
        "timings": {"load_s": round(info.load_s, 4),
                    "ttft_s": round(s.ttft_s + (sess.restore_s if sess else 0.0), 4) if s else None,
                    "restore_s": round(sess.restore_s, 4) if sess else 0.0,
                    "prefill_tps": round(s.prefill_tps, 2) if s else None,
                    "decode_tps": round(s.decode_tps, 2) if s else None,
                    "draft_tokens": s.draft_tokens if s else 0, "accepted_tokens": s.accepted_tokens if s else 0},
        "speculative": engine.speculation.mode,
        "cache": {**{k: getattr(cache, k) for k in ("capacity", "used", "sinks", "evicted", "kv_type", "bytes")},
                  "restored": bool(sess and sess.restored)} if cache else "remote",   # a server's cache
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
