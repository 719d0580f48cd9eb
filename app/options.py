"""The command line's options, each declared once.

The top-level parser (chat and one-shot) takes every shared option with its default. A subcommand
that takes a shared option declares it with the same function, and ``inherit`` turns its defaults
into ``SUPPRESS``: a flag given before the subcommand (``edgechat --ctx 512 serve``) is then not
overwritten by the subcommand's default, and one given after it means the same.
"""
from __future__ import annotations

import argparse
import os

from ..runtime.info import BACKENDS, DEFAULT_CTX, DEFAULT_SINKS
from ..runtime.memory import KV_CHOICES
from .argtypes import float_at_least, int_at_least, sampling_value

MIN_TIMEOUT_S = 0.1       # --remote-timeout: shorter than a round trip makes no sense


def gpu_layers(text: str) -> int | str:
    """``--gpu-layers``: a layer count, ``all`` (-1) or ``auto`` (decided at load: runtime/gpu.py)."""
    if text == "auto":
        return text
    return -1 if text == "all" else int_at_least(0)(text)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options that choose and load a model (chat, one-shot, serve, doctor)."""
    g = p.add_argument_group("model")
    g.add_argument("-m", "--model", help="model name (see `edgechat models`) or path to a .gguf file "
                                         "(default: the packaged SmolLM2-135M-Instruct)")
    g.add_argument("--backend", choices=BACKENDS, default="auto")
    g.add_argument("--threads", type=int_at_least(1), help="compute threads (default: physical cores)")
    g.add_argument("--ctx", type=int_at_least(2), default=DEFAULT_CTX, help="KV cache capacity in tokens")
    g.add_argument("--sinks", type=int_at_least(0), default=DEFAULT_SINKS, help="pinned attention-sink tokens")
    g.add_argument("--kv-type", choices=KV_CHOICES, default="auto",
                   help="KV cache rows: f16, q8_0 (int8 + a scale per 32 values: about half the memory), or "
                        "auto (default): q8_0 on the native engine, f16 on llama.cpp, each one's faster")
    g.add_argument("--kv-snapshots-mib", type=int_at_least(0), default=512, metavar="N",
                   help="chat TUI: keep saved chats' KV caches, at most N MiB on disk (0: off)")
    g.add_argument("--pin-system", action="store_true",
                   help="pin BOS + the whole system prompt as sinks (capped at half the window)")
    g.add_argument("--gpu-layers", type=gpu_layers, default="auto", metavar="N|all|auto",
                   help="layers to offload to a GPU (llama.cpp built with Metal/CUDA; N or all are ignored, "
                   "with a warning, by a CPU-only build). auto (default): all when llama.cpp has a GPU and "
                   "the model and cache fit its free memory, else 0 (the native engine on the CPU)")
    g.add_argument("--evict-chunk", type=int_at_least(1), help="llama.cpp backend: tokens evicted at once")
    g.add_argument("--force", action="store_true", help="load even if the memory preflight says no")
    g.add_argument("--speculative", choices=["lookup", "draft", "off"],
                   help="speculative decoding (native backend; never changes the answer): lookup drafts "
                        "from the conversation's own text (default), draft uses --draft, off disables it")
    g.add_argument("--draft", metavar="MODEL", help="a small draft model with the same tokenizer "
                   "(name or .gguf path); implies --speculative draft")
    g.add_argument("--chat-template", metavar="NAME|FILE", help="chatml, gemma, llama3, raw (the text as is) or a "
                   "jinja2 file (default: the file's own, else its family's built-in)")


def add_remote_options(p: argparse.ArgumentParser) -> None:
    """A chat on an OpenAI-compatible server instead of a local model (chat, one-shot, models, doctor);
    ``-m`` is then the server's model id. Without ``--remote-key`` the key is read from the
    environment when connecting (``app.remote.remote_key``)."""
    from ..runtime.remote import READ_TIMEOUT_S
    g = p.add_argument_group("remote server")
    g.add_argument("--base-url", type=server_url, default=os.environ.get("EDGECHAT_BASE_URL") or None, metavar="URL",
                   help="chat with a model on an OpenAI-compatible server (vLLM, SGLang, llama-server, ollama, "
                        "edgechat serve), e.g. http://gpu-box:8000/v1 (env EDGECHAT_BASE_URL)")
    g.add_argument("--remote-key", metavar="KEY", help="the server's API key (default: env EDGECHAT_REMOTE_KEY, "
                   "then OPENAI_API_KEY); not serve's own --api-key")
    g.add_argument("--remote-timeout", type=float_at_least(MIN_TIMEOUT_S), default=READ_TIMEOUT_S, metavar="S",
                   help="a server that sends nothing for S seconds has stalled: the reply ends (default %(default)g; "
                        "inf: wait for ever)")


def server_url(text: str) -> str:
    """``--base-url``: an http(s) URL, normalized (``/v1`` added to a bare host: runtime.remote)."""
    from ..runtime.remote import RemoteError, normalize_url
    try:
        return normalize_url(text)
    except RemoteError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """Sampling options; defaults from ``SamplingParams`` (the sampler and the TUI read the same)."""
    from ..runtime.sampler import DEFAULTS as D
    g = p.add_argument_group("sampling")
    # None: not given (the chat's limit is SamplingParams' default; serve tells a request without
    # max_tokens this, when given, else its --max-tokens-limit)
    g.add_argument("--max-tokens", type=sampling_value("max_tokens"), default=None,
                   help=f"reply length limit (default: {D.max_tokens}; serve: a request's default, else "
                        "--max-tokens-limit)")
    g.add_argument("--temp", type=sampling_value("temp"), default=D.temp)
    g.add_argument("--top-k", type=sampling_value("top_k"), default=D.top_k)
    g.add_argument("--top-p", type=sampling_value("top_p"), default=D.top_p)
    g.add_argument("--min-p", type=sampling_value("min_p"), default=D.min_p)
    g.add_argument("--repeat-penalty", type=sampling_value("repeat_penalty"), default=D.repeat_penalty)
    g.add_argument("--seed", type=sampling_value("seed"), default=D.seed,
                   help="the same seed, the same text; -1 (as llama.cpp) or none: a fresh one each time")
    g.add_argument("--system", help="system prompt")


def add_output_options(p: argparse.ArgumentParser) -> None:
    """``--json`` and ``-v``: every command that prints a result takes them."""
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-v", "--verbose", action="store_true", help="say which backend runs and why, and timings")


def inherit(top: argparse.ArgumentParser, sub: argparse.ArgumentParser) -> None:
    """Make ``sub``'s options that ``top`` also has default to SUPPRESS, so the value parsed by
    ``top`` (its default, or the flag given before the subcommand) reaches the command."""
    shared = {a.dest for a in top._actions if a.dest != "help"}
    for action in sub._actions:
        if action.dest in shared:
            action.default = argparse.SUPPRESS
