"""From command-line options to a loaded engine: the app resolves model names, the runtime takes paths."""
from __future__ import annotations


def load_engine(args, model: str | None = None, pin_system: bool | None = None, kv_type: str | None = None,
                base_url: str | None = None, seqs: int = 1):
    """Resolve ``args.model`` (or ``model``; "" is the packaged default) and load it with the options;
    with a server's URL (``base_url``: the chat's and the one-shot's, never serve's or bench's), connect
    to it instead: ``model`` is then the server's model id ("" its first), and the chat source a
    ``runtime.remote.RemoteChat``.

    Args:
        args: the CLI's Namespace (backend, threads, ctx, sinks, gpu_layers, pin_system, ...).
        model: a model other than ``args.model``.
        pin_system: overrides ``args.pin_system``.
        kv_type: overrides ``args.kv_type``.
        base_url: a server to chat on (None or "": this machine).
        seqs: caches a llama.cpp engine holds (serve: its cache slots).
    """
    if base_url:
        from . import remote
        return remote.connect(args, base_url, model)
    from ..models.resolve import resolve
    from ..runtime import load
    name = args.model if model is None else model
    mode, draft = speculation_args(args)
    return load(resolve(name or None), backend=args.backend, threads=args.threads, ctx=args.ctx,
                sinks=args.sinks, gpu_layers=args.gpu_layers,
                pin_system=args.pin_system if pin_system is None else pin_system,
                evict_chunk=getattr(args, "evict_chunk", None), force=getattr(args, "force", False),
                speculative=mode, draft=resolve(draft) if draft else None,
                kv_type=kv_type or getattr(args, "kv_type", None) or "auto",
                chat_template="raw" if getattr(args, "raw", False) else getattr(args, "chat_template", None),
                seqs=seqs)


def speculation_args(args) -> tuple[str, str | None]:
    """(mode, draft model name) from --speculative and --draft: lookup by default, draft with --draft,
    off turns both off (the draft model is then not loaded)."""
    mode, draft = getattr(args, "speculative", None), getattr(args, "draft", None)
    mode = mode or ("draft" if draft else "lookup")
    return mode, (draft if mode == "draft" else None)


def sampling_kwargs(args) -> dict:
    """The ``SamplingParams`` fields the command line sets."""
    from ..runtime.sampler import SamplingParams
    return {k: getattr(args, k) for k in SamplingParams.names() if getattr(args, k, None) is not None}
