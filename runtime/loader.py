"""``load(path)``: from a GGUF file to an ``Engine``: the backend chosen (and why), the memory
preflight, the tokenizer and chat template, speculation. The app resolves model names to paths."""
from __future__ import annotations

import time
from pathlib import Path

from .backends import make_backend
from .chat_templates import looks_like_base_model, resolve_choice
from .conversation import MemoTokenizer
from .cpu import physical_cores
from .engine import Engine
from .errors import EdgechatError, UnsupportedModel
from .info import BACKENDS, DEFAULT_CTX, DEFAULT_SINKS, GPU_LAYERS_IGNORED, EngineInfo


def default_threads() -> int:
    """Physical cores (hyper-threads share the vector units the kernels saturate)."""
    return physical_cores()


def choose_backend(requested: str, model_problem: str | None, gpu_layers: int,
                   native_slower: str | None = None) -> tuple[str, str]:
    """Pick the backend for ``auto`` and say why.

    Args:
        requested: "auto", "native" or "llama.cpp".
        model_problem: why the native backend cannot run the file, or None.
        gpu_layers: layers asked to be offloaded to a GPU (0 = none, -1 = all).
        native_slower: why llama.cpp is the faster engine for this file here (``speed.native_slower``).

    Returns:
        (backend name, reason)
    """
    if requested not in BACKENDS:
        raise EdgechatError(f"unknown backend '{requested}' (choose from {', '.join(BACKENDS)})")
    if requested == "native":
        if model_problem:
            raise UnsupportedModel(model_problem)
        if gpu_layers:
            raise EdgechatError("--gpu-layers needs --backend llama.cpp (the native backend runs on the CPU)")
        return "native", "asked for with --backend native"
    if requested == "llama.cpp":
        return "llama.cpp", "asked for with --backend llama.cpp"
    if gpu_layers:
        return "llama.cpp", "GPU offload asked (--gpu-layers)"
    if model_problem:
        return "llama.cpp", model_problem
    if native_slower:
        return "llama.cpp", native_slower
    return "native", "the native engine runs this arch and these tensor types"


def load(path: str | Path, *, backend: str = "auto", threads: int | None = None, ctx: int = DEFAULT_CTX,
         sinks: int = DEFAULT_SINKS, gpu_layers: int | str = 0, pin_system: bool = False,
         evict_chunk: int | None = None, force: bool = False, speculative: str = "lookup",
         draft: str | Path | None = None, kv_type: str = "auto", chat_template: str | None = None,
         seqs: int = 1) -> Engine:
    """Load a GGUF file (the app resolves model names to paths: ``edgechat.models.resolve``).

    Args:
        path: the GGUF file.
        backend: "auto" (native when it runs the file and no GPU offload is asked), "native", "llama.cpp".
        threads: compute threads (default: physical cores).
        ctx: KV cache capacity in tokens (sinks included); allocated once, never grown.
        sinks: pinned attention-sink entries (StreamingLLM).
        gpu_layers: layers to offload (llama.cpp backend); -1 = all; "auto": all when the loaded
            llama.cpp has a GPU and the model and cache fit its free memory, else 0 (``gpu.auto_layers``).
        pin_system: make the sink region BOS + the whole system prompt.
        evict_chunk: llama.cpp backend: tokens evicted at once when the ring is full.
        force: skip the memory preflight.
        speculative: "lookup" (prompt-lookup drafts), "draft" (``draft``: a GGUF with the same tokenizer)
            or "off". Native only; the text (temp 0) or its distribution (temp > 0) never changes.
        kv_type: KV cache rows, "f16", "q8_0" (int8 with a scale per 32 values: about half the bytes) or
            "auto": each backend's faster one (``memory.AUTO_KV_TYPE``: q8_0 native, f16 llama.cpp).
        seqs: caches the llama.cpp backend holds (its context's sequences, ``ctx`` cells each, allocated
            at load), for ``Engine.new_state`` and batched steps; the native engine makes them on demand.
        chat_template: a built-in template's name (``chat_templates.BUILTIN``: "raw" feeds the text as
            is) or a jinja2 file; default: the file's own, else its family's built-in.

    Returns:
        An Engine.
    """
    from .ggufload import read_model
    from .gpu import resolve_layers
    from .memory import resolve_kv_type
    from .tokenizer import Tokenizer
    t0 = time.perf_counter()
    threads = _check_load_args(ctx, sinks, threads)
    path = Path(path)
    mf = read_model(path)
    _check_kv_type(kv_type)
    gpu_layers, gpu_why = resolve_layers(gpu_layers, backend, path.stat().st_size, mf.config, ctx, kv_type, seqs)
    name, reason, gpu_layers = _pick_backend(mf, backend, gpu_layers)
    if gpu_why:                            # --gpu-layers auto: offloaded, or why not
        reason = gpu_why if gpu_layers and backend == "auto" else f"{reason}; {gpu_why}"
    kv_type = resolve_kv_type(kv_type, name)
    _preflight(path, mf.config, ctx, force, kv_type, seqs if name == "llama.cpp" else 1)   # native: caches on demand
    tok = MemoTokenizer(Tokenizer(path))
    template = _template(mf, tok, chat_template)
    be = make_backend(name, mf, path, ctx=ctx, sinks=sinks, threads=threads, gpu_layers=gpu_layers,
                       evict_chunk=evict_chunk, kv_type=kv_type, seqs=seqs)
    info = EngineInfo(backend=name, reason=reason, arch=mf.arch, path=str(path), name=path.stem,
                      types=mf.types, threads=threads, isa=be.info.isa, ctx=ctx, sinks=sinks,
                      gpu_layers=gpu_layers, pin_system=pin_system, extra=dict(be.info.extra),
                      load_s=time.perf_counter() - t0, template=template.source,
                      base_model=looks_like_base_model(path.stem, bool(mf.metadata.get("tokenizer.chat_template"))))
    engine = Engine(be, tok, template, info, pin_system=pin_system, sinks=sinks)
    return _attach(engine, be, tok, path, mf, speculative, draft, ctx=ctx, sinks=sinks, threads=threads)


def _pick_backend(mf, backend: str, gpu_layers: int) -> tuple[str, str, int]:
    """(backend name, why, layers to offload) for ``load``: auto weighs support, GPU offload and measured
    speed. --gpu-layers with a llama.cpp built for CPU only (which ignores it without a word) is said to
    be ignored, and does not steer auto away from the native engine."""
    from .speed import native_slower_here
    problem = mf.native_problem()
    slower = None if problem or backend != "auto" else native_slower_here(mf.tensors)
    ignored = bool(gpu_layers) and backend != "native" and not _can_offload()
    if ignored and backend == "auto":
        gpu_layers = 0
    name, reason = choose_backend(backend, problem, gpu_layers, slower)
    return name, f"{reason}; {GPU_LAYERS_IGNORED}" if ignored else reason, gpu_layers


def _can_offload() -> bool:
    """Whether the installed llama.cpp can offload layers to a GPU."""
    from .device import gpu_offload
    return gpu_offload()[0]


def _attach(engine: Engine, be, tok, path: Path, mf, speculative: str, draft, *, ctx: int, sinks: int,
            threads: int) -> Engine:
    """The loaded engine's model identity (snapshots) and speculation; closed if the draft fails."""
    from .snapshot import model_identity
    from .speculative import make_speculation
    engine.model_identity = model_identity(path, mf.data_offset)
    try:
        engine.speculation = make_speculation(speculative, draft, be, tok, ctx=ctx,
                                              sinks=sinks, threads=threads)
    except BaseException:
        engine.close()
        raise
    return engine


def _check_load_args(ctx: int, sinks: int, threads: int | None) -> int:
    if ctx <= sinks or sinks < 0:
        raise EdgechatError(f"--ctx ({ctx}) must be larger than --sinks ({sinks}), and --sinks >= 0")
    threads = threads or default_threads()
    if threads < 1:
        raise EdgechatError("--threads must be at least 1")
    return threads


def _check_kv_type(kv_type: str) -> str:
    from .memory import KV_CHOICES
    if kv_type not in KV_CHOICES:
        raise EdgechatError(f"unknown --kv-type '{kv_type}' (choose from {', '.join(KV_CHOICES)})")
    return kv_type


def _preflight(path: Path, cfg: dict, ctx: int, force: bool, kv_type: str = "f16", caches: int = 1) -> None:
    """RAM for the weights and ``caches`` caches of ``ctx`` allocated at load (llama.cpp's sequences)."""
    from . import memory
    est = memory.estimate(path.stat().st_size, cfg["n_layer"], ctx, cfg["n_head_kv"], cfg["head_dim"],
                          memory.kv_bytes_per_elem(kv_type, cfg["head_dim"]), caches * memory.layer_slots(cfg, ctx))
    memory.preflight(est, force=force)


def _template(mf, tok, choice: str | None = None):
    from .template import ChatTemplate
    text, source = mf.metadata.get("tokenizer.chat_template"), "gguf"
    if choice:
        try:
            source, text = resolve_choice(choice)
        except ValueError as e:
            raise EdgechatError(str(e)) from None
    return ChatTemplate(text, tok, bos_token=tok.token_text(tok.bos_id), eos_token=tok.token_text(tok.eos_id),
                        source=source)
