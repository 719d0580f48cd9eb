"""Whether the native engine is the faster engine for a file on this CPU (``--backend auto``).

The rule follows side-by-side measurements (``edgechat bench``: native and llama.cpp on the same file,
same threads, llama.cpp's weight repacking on). Native wins where the selected kernel table reads the
weight types that hold the matmul bytes in a packed (row-interleaved) layout; on the scalar table, and
when a file's matmul weights are mostly in a type without one (F32, F16), llama.cpp is faster, so
``auto`` picks it and says why. Tables without any packed layout (NEON today) have not been
measured against llama.cpp on their hardware; they keep the native engine.
"""
from __future__ import annotations

import re

# matmul weights: the bytes a decoded token reads (the tied output reuses token_embd)
_MATMUL = re.compile(r"blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$|output\.weight$")
# share of matmul bytes in types without a packed layout above which native loses
SLOW_SHARE = 0.10


def _matmul_bytes(tensors) -> dict[str, int]:
    names = {t.name for t in tensors}
    out: dict[str, int] = {}
    for t in tensors:
        if _MATMUL.search(t.name) or (t.name == "token_embd.weight" and "output.weight" not in names):
            out[t.type_name] = out.get(t.type_name, 0) + t.data.nbytes
    return out


def native_slower(tensors, isa: str, packed: set[str]) -> str | None:
    """Why llama.cpp is the faster engine for these tensors on this kernel table, or None.

    Args:
        tensors: the file's tensor views (name, type_name, data).
        isa: the native kernel table in use ("generic", "avx2", "avx512", "neon", ...).
        packed: type names the table reads in a packed layout.

    Returns:
        a one-line reason, or None when native is (as measured) the faster engine.
    """
    if isa == "generic":
        return "the native engine has only scalar kernels on this CPU; llama.cpp is faster"
    if not packed:
        return None
    sizes = _matmul_bytes(tensors)
    total = sum(sizes.values()) or 1
    slow = {k: v for k, v in sizes.items() if k not in packed}
    if sum(slow.values()) / total > SLOW_SHARE:
        kinds = ", ".join(sorted(slow, key=slow.get, reverse=True))
        return f"native is slower than llama.cpp for {kinds} matmul weights on {isa}; llama.cpp runs this file"
    return None


def native_kernel_facts() -> tuple[str, set[str]]:
    """(selected kernel table, type names it reads packed) from the native extension."""
    from .. import _native
    from .ggufload import NATIVE_TYPES
    return _native.isa(), {NATIVE_TYPES[t] for t in _native.packed_types() if t in NATIVE_TYPES}


def native_slower_here(tensors) -> str | None:
    """``native_slower`` for these tensors on the kernel table this process selected."""
    return native_slower(tensors, *native_kernel_facts())
