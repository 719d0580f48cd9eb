"""``edgechat bench --shape`` presets: GGUFs with the tensor shapes of real models, for speed only.

Each synthetic preset is written once (seeded random weights, F16, the default model's tokenizer, so
its vocab is 49152, not the real model's) and quantized by llama.cpp into a cache folder:
``$EDGECHAT_BENCH_CACHE`` or the user cache dir's ``edgechat/bench-ggufs``. The F16 source stays there
so other types are made without rewriting it. ``smollm2-135m`` is the packaged default model itself
(Q4_1), requantized by llama.cpp for the other types. ``gemma3-1b`` takes the real Gemma 3 tokenizer
(262,144 tokens: its output matrix is much of what a token reads) from the Gemma-3-270M file
(scripts/fetch_gemma3.sh; ``$EDGECHAT_GEMMA3_GGUF`` names another copy).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..runtime import synth
from ..runtime.synth import SynthConfig

SHAPES_VERSION = 1              # bump when the files change, so stale caches are not reused
DEFAULT_SHAPE = "smollm2-135m"
DEFAULT_TYPE = "Q4_1"           # the packaged file's type
TYPES = ("Q4_0", "Q4_1", "Q4_K_M", "Q8_0")
WEIGHT_STD = 0.02               # every matrix and bias; norms exactly 1: activations stay finite


@dataclass(frozen=True)
class Shape:
    model: str                  # the real model whose tensor shapes these are
    cfg: SynthConfig
    tokenizer: str = "default"  # whose tokenizer (and vocab) the file gets: the default model's, or "gemma3"


def _shape(model: str, arch: str, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, head_dim: int,
           n_ff: int, rope_base: float, eps: float, ctx: int, window: int = 0, tokenizer: str = "default") -> Shape:
    return Shape(model, SynthConfig(arch=arch, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                                    n_head_kv=n_head_kv, head_dim=head_dim, n_ff=n_ff, ctx=ctx,
                                    rope_base=rope_base, eps=eps, tied=True, dtype="f16",
                                    weight_std=WEIGHT_STD, sliding_window=window), tokenizer)


# one table: name -> the real model's shapes (all tie the output to the token embeddings). qwen2-0.5b's
# width (896) is not a multiple of 256: llama.cpp's Q4_K_M makes most of its tensors Q5_0, as in the real file
SHAPES = {
    "qwen2-0.5b": _shape("Qwen2.5-0.5B", "qwen2", 24, 896, 14, 2, 64, 4864, 1e6, 1e-6, 32768),
    "llama-1b": _shape("Llama-3.2-1B", "llama", 16, 2048, 32, 8, 64, 8192, 500000.0, 1e-5, 131072),
    "llama-3b": _shape("Llama-3.2-3B", "llama", 28, 3072, 24, 8, 128, 8192, 500000.0, 1e-5, 131072),
    "qwen2-1.5b": _shape("Qwen2.5-1.5B", "qwen2", 28, 1536, 12, 2, 128, 8960, 1e6, 1e-6, 32768),
    "qwen3-0.6b": _shape("Qwen3-0.6B", "qwen3", 28, 1024, 16, 8, 128, 3072, 1e6, 1e-6, 40960),
    "gemma3-1b": _shape("Gemma-3-1B", "gemma3", 26, 1152, 4, 1, 256, 6912, 1e6, 1e-6, 32768, window=512,
                        tokenizer="gemma3"),
}
PRESETS = (DEFAULT_SHAPE, *SHAPES)


def cache_dir() -> Path:
    """Where preset files live: ``$EDGECHAT_BENCH_CACHE`` or <user cache>/edgechat/bench-ggufs."""
    env = os.environ.get("EDGECHAT_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs
    return Path(platformdirs.user_cache_dir("edgechat")) / "bench-ggufs"


def shape_config(name: str, layers: int | None = None) -> SynthConfig:
    """The synthetic config of preset ``name``, with ``layers`` blocks instead of the real count."""
    cfg = SHAPES[name].cfg
    return dataclasses.replace(cfg, n_layer=layers or cfg.n_layer, name=f"synthetic {name}")


def tokenizer_file(shape: Shape) -> Path:
    """The GGUF whose tokenizer a preset copies."""
    from ..models.resolve import default_model_path
    if shape.tokenizer == "default":
        return default_model_path()
    env = os.environ.get("EDGECHAT_GEMMA3_GGUF")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "tests" / ".cache" / "gemma3" / "gemma-3-270m-q4_k_m.gguf"
    if not path.is_file():
        from ..runtime.errors import EdgechatError
        raise EdgechatError(f"the gemma3 presets take the Gemma 3 tokenizer from {path}: run "
                                "scripts/fetch_gemma3.sh (or set EDGECHAT_GEMMA3_GGUF to a Gemma 3 GGUF)")
    return path


def _say(text: str) -> None:
    print(f"edgechat bench: {text}", file=sys.stderr, flush=True)


def shape_gguf(name: str, ftype: str, layers: int | None = None, out_dir: Path | None = None) -> Path:
    """The GGUF of preset ``name`` quantized to ``ftype``, built (once) into the cache if missing.

    Args:
        name: a preset of ``PRESETS``.
        ftype: one of ``TYPES`` (llama.cpp's names).
        layers: override the block count (synthetic presets only), for quick runs.
        out_dir: the cache folder (default ``cache_dir()``).

    Returns:
        The file's path.
    """
    from ..models.resolve import default_model_path
    out = Path(out_dir or cache_dir())
    if name == DEFAULT_SHAPE:
        if ftype == DEFAULT_TYPE:
            return default_model_path()
        dst = out / f"{name}-{ftype.lower()}-v{SHAPES_VERSION}.gguf"
        return synth.build_once(dst, lambda p: _quantize(default_model_path(), p, ftype, requantize=True))
    cfg = shape_config(name, layers)
    stem = f"{name}-L{cfg.n_layer}-s{cfg.seed}"
    src = out / f"{stem}-f16-v{SHAPES_VERSION}.gguf"
    if not src.exists():
        _say(f"writing {src} (F16, {cfg.n_layer} layers, seeded random weights; once)")
    synth.build_once(src, lambda p: synth.write_gguf(p, cfg, tokenizer_file(SHAPES[name])))
    dst = out / f"{stem}-{ftype.lower()}-v{SHAPES_VERSION}.gguf"
    return synth.build_once(dst, lambda p: _quantize(src, p, ftype))


def _quantize(src: Path, dst: Path, ftype: str, requantize: bool = False) -> None:
    _say(f"quantizing {src.name} to {ftype} with llama.cpp (once)")
    synth.quantize(src, dst, ftype, allow_requantize=requantize)
