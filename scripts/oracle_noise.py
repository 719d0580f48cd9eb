#!/usr/bin/env python3
"""How well llama.cpp agrees with itself, next to how well our engine agrees with llama.cpp.

    .venv/bin/python scripts/oracle_noise.py [--model M] [--tokens 2048] [--threads 2]

Teacher-forced on the tests' natural text (Python's docs, BOS first), no eviction. The reference is
llama.cpp as the backend runs it (flash attention "auto"); it is compared with llama.cpp with flash
attention off, llama.cpp with 64-token batches, and the native engine: top-1 agreement, perplexity and
the largest logit difference. Both llama.cpp settings are legitimate llama.cpp runs, so their agreement
is the best an independent implementation can be expected to reach (the bound the tolerances of
tests/test_model_oracle.py rest on).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import ppl_and_top1  # noqa: E402


def llama_cpp_logits(path: str, ids: list[int], threads: int, flash_attn: int | None = None,
                     batch: int | None = None) -> np.ndarray:
    import edgechat.runtime.backends.llama_cpp as lc
    L = lc._lib()
    default_params, max_batch = L.llama_context_default_params, lc.MAX_BATCH

    def params():
        cp = default_params()
        if flash_attn is not None:
            cp.flash_attn_type = flash_attn       # -1 auto, 0 off, 1 on
        return cp
    L.llama_context_default_params = params
    lc.MAX_BATCH = batch or max_batch
    try:
        b = lc.LlamaCppBackend(path, ctx=len(ids) + 64, sinks=4, threads=threads)
    finally:
        L.llama_context_default_params, lc.MAX_BATCH = default_params, max_batch
    try:
        return b.eval(ids, all_logits=True)
    finally:
        b.close()


def main(argv=None) -> int:
    from pydoc_data.topics import topics

    from edgechat.models.resolve import resolve
    from edgechat.runtime.backends.native import NativeBackend
    from edgechat.runtime.ggufload import read_model
    from edgechat.runtime.tokenizer import Tokenizer
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    path = str(resolve(args.model))
    tok = Tokenizer(path)
    text = "\n\n".join(topics[k] for k in sorted(topics))
    ids = [tok.bos_id] + tok.tokenize(text)[:args.tokens - 1]
    ref = llama_cpp_logits(path, ids, args.threads)
    native = NativeBackend(read_model(path), ctx=len(ids) + 64, sinks=4, threads=args.threads)
    runs = {"llama.cpp, flash attention off": llama_cpp_logits(path, ids, args.threads, flash_attn=0),
            "llama.cpp, 64-token batches": llama_cpp_logits(path, ids, args.threads, batch=64),
            "native engine": native.eval(ids, all_logits=True)}
    native.close()
    ppl_ref, top_ref = ppl_and_top1(ref, ids)
    print(f"{Path(path).name}, {len(ids)} tokens; reference: llama.cpp as the backend runs it (ppl {ppl_ref:.4f})")
    print(f"{'':34}{'top-1 agree':>12}{'ppl':>10}{'ppl rel':>9}{'max |dlogit|':>14}")
    for name, lg in runs.items():
        ppl, top = ppl_and_top1(lg, ids)
        print(f"{name:34}{np.mean(top == top_ref):12.4f}{ppl:10.4f}{abs(ppl - ppl_ref) / ppl_ref:9.4%}"
              f"{np.abs(lg - ref).max():14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
