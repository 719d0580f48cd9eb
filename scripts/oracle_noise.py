#!/usr/bin/env python3
"""How well llama.cpp agrees with itself, next to how well our engine agrees with llama.cpp.

    .venv/bin/python scripts/oracle_noise.py [--model M] [--tokens 2048] [--threads 2] [--kl]

Teacher-forced on the tests' natural text (Python's docs, BOS first), no eviction. The reference is
llama.cpp as the backend runs it (flash attention "auto"); it is compared with llama.cpp with flash
attention off, llama.cpp with 64-token batches, and the native engine: top-1 agreement, perplexity and
the largest logit difference (``--kl``: and the mean and p99 over rows of KL(reference || run)). Both
llama.cpp settings are legitimate llama.cpp runs, so their agreement is the best an independent
implementation can be expected to reach (the bound the tolerances of tests/test_model_oracle.py and
tests/test_gemma3.py rest on).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import agreement, kl_rows  # noqa: E402
from streaming_ppl import natural_ids  # noqa: E402

DECISIVE_MARGIN = 1.0      # as tests/test_model_oracle.py: rows where the reference's top-1 leads by more


def llama_cpp_logits(path: str, ids: list[int], threads: int, flash_attn: int | None = None,
                     batch: int | None = None) -> np.ndarray:
    import edgechat.runtime.backends.llama_cpp as lc
    from edgechat.runtime.llama_lib import lib
    L = lib()
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
    from edgechat.models.resolve import resolve
    from edgechat.runtime.backends.native import NativeBackend
    from edgechat.runtime.ggufload import read_model
    from edgechat.runtime.tokenizer import Tokenizer
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kl", action="store_true", help="also the KL divergence from the reference, mean and p99")
    args = ap.parse_args(argv)
    path = str(resolve(args.model))
    tok = Tokenizer(path)
    ids = natural_ids(tok, args.tokens)
    ref = llama_cpp_logits(path, ids, args.threads)
    native = NativeBackend(read_model(path), ctx=len(ids) + 64, sinks=4, threads=args.threads)
    runs = {"llama.cpp, flash attention off": llama_cpp_logits(path, ids, args.threads, flash_attn=0),
            "llama.cpp, 64-token batches": llama_cpp_logits(path, ids, args.threads, batch=64),
            "native engine": native.eval(ids, all_logits=True)}
    native.close()
    print(f"{Path(path).name}, {len(ids)} tokens; reference: llama.cpp as the backend runs it")
    print(f"{'':34}{'top-1 agree':>12}{'decisive':>10}{'ppl':>10}{'ref ppl':>10}{'ppl rel':>9}{'max |dlogit|':>14}"
          + (f"{'KL mean':>10}{'KL p99':>10}" if args.kl else ""))
    for name, lg in runs.items():
        a = agreement(lg, ref, ids, DECISIVE_MARGIN)
        kl = kl_rows(ref, lg) if args.kl else None
        print(f"{name:34}{a['top1']:12.4f}{a['top1_decisive']:10.4f}{a['ppl']:10.4f}{a['ppl_ref']:10.4f}"
              f"{a['ppl_rel']:9.4%}{a['max_dlogit']:14.3f}"
              + (f"{kl.mean():10.5f}{np.percentile(kl, 99):10.4f}" if kl is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
