"""The command line's side of a remote server (``--base-url``): the key from the environment, connecting,
``models --base-url``, ``doctor --base-url`` and the one-shot's lines about a remote reply.

The key is read here when connecting and handed to the client: it is never printed, logged, written
to the chat database or put in ``--json``.
"""
from __future__ import annotations

import json
import math
import os
import time

KEY_ENV = ("EDGECHAT_REMOTE_KEY", "OPENAI_API_KEY")   # in this order, when --remote-key is not given


def base_url(args) -> str | None:
    """The server of ``--base-url`` (or EDGECHAT_BASE_URL, the option's default); None: run locally."""
    return getattr(args, "base_url", None) or None


def remote_key(args) -> str | None:
    """``--remote-key``, else EDGECHAT_REMOTE_KEY, else OPENAI_API_KEY (the OpenAI clients' convention)."""
    given = getattr(args, "remote_key", None)
    return given or next((os.environ[k] for k in KEY_ENV if os.environ.get(k)), None)


def client(args, url: str | None = None, model: str | None = None):
    """A ``RemoteChat`` for ``url`` (default ``--base-url``) and ``model`` (default ``-m``), not yet
    connected."""
    from ..runtime.remote import RemoteChat
    timeout = getattr(args, "remote_timeout", None)
    kwargs = {"read_timeout": None if timeout == math.inf else timeout} if timeout else {}
    return RemoteChat(url or base_url(args), (args.model if model is None else model) or "",
                      api_key=remote_key(args), **kwargs)


def connect(args, url: str | None = None, model: str | None = None):
    """A connected ``RemoteChat`` (its models listed, the model id checked); ``RemoteError`` if not."""
    remote = client(args, url, model)
    try:
        return remote.connect()
    except Exception:
        remote.close()
        raise


# ---- models and doctor ---------------------------------------------------------------------------

def cmd_models(args) -> int:
    """``edgechat models --base-url URL``: the server's models."""
    remote = client(args, model="")
    try:
        models = remote.models()
    finally:
        remote.close()
    if args.json:
        print(json.dumps([{**m, "base_url": remote.base_url} for m in models], indent=2))
        return 0
    rows = [("MODEL", "OWNED BY", "CONTEXT")]
    rows += [(m["id"], m["owned_by"] or "-", f"{m['context']:,}" if m["context"] else "?") for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{remote.base_url}: {len(models)} model{'s' * (len(models) != 1)}")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\nchat with: edgechat --base-url {remote.base_url} -m MODEL")
    return 0


def doctor_report(args) -> dict:
    """``doctor --base-url URL``: whether the endpoint answers, takes the key, and which models it has."""
    from ..runtime.errors import EdgechatError
    remote = client(args, model="")
    report = {"base_url": remote.base_url, "key": "given" if remote_key(args) else "none",
              "reachable": False, "latency_s": None, "models": [], "problems": []}
    t0 = time.perf_counter()
    try:
        report["models"] = remote.models()
        report["reachable"], report["latency_s"] = True, round(time.perf_counter() - t0, 4)
    except EdgechatError as e:
        report["problems"].append(str(e))
    finally:
        remote.close()
    model = getattr(args, "model", None)
    ids = [m["id"] for m in report["models"]]
    if report["reachable"] and model and ids and model not in ids:
        report["problems"].append(f"the server has no model '{model}'")
    elif report["reachable"] and not ids and not model:
        report["problems"].append("the server lists no models: name one with -m")
    return report


def cmd_doctor(args) -> int:
    report = doctor_report(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 1 if report["problems"] else 0
    ms = report["models"]
    rows = [("endpoint", report["base_url"]),
            ("answers", f"yes, in {report['latency_s']:.3f} s" if report["reachable"] else "no"),
            ("key", report["key"] + " (EDGECHAT_REMOTE_KEY, OPENAI_API_KEY or --remote-key)"),
            ("models", ", ".join(m["id"] + (f" (ctx {m['context']:,})" if m["context"] else "") for m in ms)
             or "none listed")]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"problem: {p}" for p in report["problems"]] or ["no problems found"]
    print("\n".join(lines))
    return 1 if report["problems"] else 0


# ---- the one-shot ---------------------------------------------------------------------------------

def chat_extras(args, fmt) -> dict:
    """``RemoteChat.chat``'s extra arguments for the one-shot on a server: its ``response_format`` from
    ``--json-schema`` / ``--format json`` (OpenAI's shapes); ``{}`` for a local model. What only a local
    engine does (``--session``, ``--regex``, ``--grammar-file``) is refused in one line."""
    from ..runtime.errors import EdgechatError
    if not base_url(args):
        return {}
    if getattr(args, "session", None):
        raise EdgechatError("--session keeps a local KV cache: it does not work with --base-url")
    if fmt is None:
        return {}
    if fmt.kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if fmt.kind == "json_schema":
        schema = json.loads(fmt.source) if isinstance(fmt.source, str) else fmt.source
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}}
    raise EdgechatError(f"{fmt.param} needs a local model: OpenAI's API has only JSON reply formats "
                        "(--json-schema, --format json)")


# ---- the one-shot's lines ------------------------------------------------------------------------

def verbose_start(engine) -> str:
    i = engine.info
    return f"edgechat: backend remote ({i.reason}); model {i.name}" + (f", context {i.ctx:,}" if i.ctx else "")


def verbose_done(done) -> str:
    s = done.stats
    return (f"edgechat: {s.prompt_tokens} prompt tokens, {s.completion_tokens} tokens at {s.decode_tps:.1f} "
            f"tok/s as received, ttft {s.ttft_s:.3f} s, finish {done.finish_reason} (server's usage; KV cache, "
            "sinks and speculation: remote)")
