"""``edgechat serve``: an OpenAI-compatible API on the same engine (uvicorn + Starlette).

Endpoints: POST /v1/chat/completions and /v1/completions (stream or not), GET /v1/models, GET /health.
The conversation lives in the sink-ring cache as in the chat: one longer than --ctx never fails, and
the system prompt stays pinned (--pin-system is on by default here). Up to --cache-slots conversations
keep their cache warm, so a client that resends the history pays only for the new tokens. Up to
--parallel requests decode together (one pass over the weights per token, each in a cache slot of its
own; the llama.cpp backend runs one at a time); when --queue-size more are waiting, more get 503 with
Retry-After.

Security: only Host names of this machine are answered (--allowed-hosts adds more), a web page's
request (an Origin header) only from --allowed-origins (none by default), JSON bodies only; every
request is bounded (--max-tokens-limit, --request-timeout, --max-body-mb, header and body timeouts).
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
import time

from ..argtypes import int_at_least, int_between
from .defaults import DEFAULTS, LOCAL_HOSTS, MAX_TOKENS_PER_CTX



def add_parser(subparsers, option_groups) -> None:
    """The ``serve`` subcommand, with the model and sampling options of the chat (``option_groups``:
    the CLI's functions that add them; their defaults come from the top-level parser, so
    ``edgechat --ctx 512 serve`` works too)."""
    p = subparsers.add_parser("serve", help="an OpenAI-compatible API server on the same engine",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("server")
    g.add_argument("--host", default=DEFAULTS["host"],
                   help="address to bind (default: 127.0.0.1, this machine only)")
    g.add_argument("--port", type=_port, default=DEFAULTS["port"], help="port (default: 8080)")
    g.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 (default: the "
                                     "EDGECHAT_API_KEY environment variable, else none)")
    g.add_argument("--cache-slots", type=int_at_least(1), default=DEFAULTS["cache_slots"],
                   help="conversations whose KV cache is kept warm (default: 4; fewer if RAM is short)")
    g.add_argument("--parallel", type=int_at_least(1), default=DEFAULTS["parallel"], metavar="N",
                   help="requests decoded together, one pass over the weights per token (default: 4, at "
                        "most the cache slots that fit; <= --cache-slots; the llama.cpp backend: 1)")
    g.add_argument("--queue-size", type=int_at_least(0), default=DEFAULTS["queue_size"],
                   help="requests that may wait behind the running ones; more get 503 (default: 16)")
    g.add_argument("--max-prompt-tokens", type=int_at_least(1), default=DEFAULTS["max_prompt_tokens"],
                   help="longest prompt accepted, in tokens (default: 131072; the cache keeps the window)")
    g.add_argument("--max-body-mb", type=int_at_least(1), default=DEFAULTS["max_body_mb"],
                   help="largest request body, in MiB (default: 16)")
    g.add_argument("--no-pin-system", dest="pin_system", action="store_false",
                   help="let the ring evict the system prompt of a long conversation")
    _add_security(p.add_argument_group("security and limits"))
    for add in option_groups:       # their defaults are the top-level parser's (options.inherit)
        add(p)
    p.set_defaults(pin_system=True)


_port = int_between(1, 65535, "a port number")


def _add_security(g) -> None:
    g.add_argument("--allowed-hosts", type=_names, action="extend", default=[], metavar="HOST[,HOST]",
                   help="Host header values answered besides this machine's names (127.0.0.1, localhost, "
                        "[::1], --host; for 0.0.0.0 also its hostname and addresses); '*': any (unsafe)")
    g.add_argument("--allowed-origins", type=_names, action="extend", default=[], metavar="ORIGIN[,ORIGIN]",
                   help="web pages (e.g. http://localhost:3000) allowed to call the API, with CORS; "
                        "default: none ('*': any page, unsafe)")
    g.add_argument("--max-tokens-limit", type=int_at_least(1), metavar="N",
                   help=f"most tokens a request may generate (default: {MAX_TOKENS_PER_CTX} x --ctx); "
                        "a request without max_tokens gets this")
    g.add_argument("--request-timeout", type=_seconds, default=DEFAULTS["request_timeout"], metavar="S",
                   help="seconds a request may run on the engine; then it ends with finish_reason "
                        "'length' (default: 600)")
    g.add_argument("--header-timeout", type=_seconds, default=DEFAULTS["header_timeout"], metavar="S",
                   help="seconds a client has to send a request's headers (default: 10)")
    g.add_argument("--body-timeout", type=_seconds, default=DEFAULTS["body_timeout"], metavar="S",
                   help="seconds a client has to send a request's body (default: 30)")
    g.add_argument("--report-cache-hits", action="store_true",
                   help="report prompt tokens reused from the cache (usage.prompt_tokens_details, x-edgechat): "
                        "the cache is shared, so this tells a client what other clients' prompts share")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def run(args) -> int:
    """Load the model, serve until Ctrl-C or SIGTERM; returns the exit code (0, or 130 on Ctrl-C)."""
    import os

    from ...runtime.errors import EdgechatError
    from .server import check_address, serve
    if hasattr(signal, "SIGPIPE"):      # a client gone mid-write ends its request, not the server
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    key = args.api_key or os.environ.get("EDGECHAT_API_KEY") or None
    if "*" in args.allowed_hosts:
        print("edgechat: warning: --allowed-hosts '*' answers any Host: a web page can reach this server "
              "by DNS rebinding", file=sys.stderr)
    if "*" in args.allowed_origins:
        print("edgechat: warning: --allowed-origins '*' lets any web page you open call this server",
              file=sys.stderr)
    if args.parallel is not None and args.parallel > args.cache_slots:
        raise EdgechatError(f"--parallel {args.parallel} is more than --cache-slots {args.cache_slots}: each "
                            "request decodes in a cache slot of its own")
    check_address(args.host, args.port)
    if args.host not in LOCAL_HOSTS and key is None:
        print(f"edgechat: warning: serving on {args.host} without --api-key: anyone who can reach this "
              "address can use the model", file=sys.stderr)
    t0 = time.time()
    return serve(args, key, t0)
