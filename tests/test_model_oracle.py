"""The native engine against llama.cpp on the same GGUF: teacher-forced logits, perplexity, greedy text.

Oracle: llama.cpp (llama-cpp-python) with the same file and the same context; both see ≥2000 tokens of
natural text with no eviction (ctx larger than the text).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import agreement, agreement_line

# llama.cpp and our engine both quantize activations to q8 and keep the cache in f16, but sum in a
# different order (tiled gemm vs ggml's), convert q to f16 in attention (ggml) or not (us), use exact
# vs approximated exp, and compute rope angles in float64 (us) vs float32 (ggml). On this 135M model the
# q8 re-quantization of every matmul input amplifies any rounding difference to ~0.5 logit: measured,
# two runs of OUR engine that differ only in float summation order (EDGECHAT_ISA=generic vs avx2, same
# algorithm) agree on top-1 for 96.8% of 1024 tokens of this text (max |dlogit| 1.75). llama.cpp does
# no better against itself: with flash attention off instead of its default, on these 2048 tokens, it
# agrees with itself on top-1 for 97.0% (max |dlogit| 1.67, ppl 0.16% apart), where our engine agrees
# with it on 96.7% (max 1.75, ppl 0.11% apart) (scripts/oracle_noise.py). So the 98% top-1 bar
# is above what the oracle reaches against itself, and bit-level agreement is not on offer; what holds:
TOP1_MIN = 0.95            # overall top-1 agreement: the measured noise floors (96.8%, 97.0%) less a margin
DECISIVE_MARGIN = 1.0      # logits: 2x the ~0.5 noise amplitude measured above
DECISIVE_TOP1_MIN = 0.995  # where llama.cpp's top-1 leads its top-2 by > DECISIVE_MARGIN, we must agree
PPL_REL_TOL = 0.01         # the bar: perplexity within 1% of llama.cpp
N_TOKENS = 2048          # teacher-forced tokens (>= 2000 asked)
CTX = N_TOKENS + 64      # no eviction: this test is about the forward pass
GOLDEN_TOKENS = 32
GOLDEN_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
]


def teacher_forced(backend_cls, path, ids, **kw):
    from edgechat.runtime.ggufload import read_model
    b = backend_cls(read_model(path), ctx=CTX, sinks=4, threads=2) if backend_cls.__name__ == "NativeBackend" \
        else backend_cls(str(path), ctx=CTX, sinks=4, threads=2)
    try:
        return b.eval(ids, all_logits=True)
    finally:
        b.close()


def compare(path, text, tokenizer):
    from edgechat.runtime.backends.llama_cpp import LlamaCppBackend
    from edgechat.runtime.backends.native import NativeBackend
    ids = [tokenizer.bos_id] + tokenizer.tokenize(text)[:N_TOKENS - 1]
    assert len(ids) == N_TOKENS
    ours = teacher_forced(NativeBackend, path, ids)
    ref = teacher_forced(LlamaCppBackend, path, ids)
    assert ours.shape == ref.shape == (N_TOKENS, tokenizer.n_vocab)
    a = agreement(ours, ref, ids, DECISIVE_MARGIN)
    print(f"{path.name}: {agreement_line(a)}")
    assert np.isfinite(ours).all()
    assert a["top1"] >= TOP1_MIN
    assert a["top1_decisive"] >= DECISIVE_TOP1_MIN
    assert a["ppl_rel"] <= PPL_REL_TOL


def test_default_q4_1_matches_llama_cpp(default_model, natural_text, tokenizer):
    compare(default_model, natural_text, tokenizer)


@pytest.mark.parametrize("ftype", ["Q4_0", "Q8_0", "Q4_K_M"])
def test_requantized_default_matches_llama_cpp(ftype, quantized_default, natural_text, tokenizer):
    compare(quantized_default(ftype), natural_text, tokenizer)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "llama"])
def test_tiny_synthetic_arch_matches_llama_cpp(arch, tiny_gguf, natural_text, tokenizer):
    compare(tiny_gguf(arch), natural_text, tokenizer)


def chat_greedy(engine, prompt: str, n: int):
    """Engine.chat at temperature 0 (no penalty), up to n tokens: (sampled ids, the top-1 minus top-2
    logit margin at each step, the prompt's ids)."""
    from edgechat.runtime.events import DoneEvent
    from edgechat.runtime.sampler import make_sampler
    sampler, toks, margins = make_sampler(temp=0.0, repeat_penalty=1.0), [], []
    pick = sampler.sample

    def sample(logits, history=()):
        top2 = np.sort(logits)[-2:]
        margins.append(float(top2[1] - top2[0]))
        toks.append(pick(logits, history))
        return toks[-1]
    sampler.sample = sample
    engine.reset()
    events = list(engine.chat([{"role": "user", "content": prompt}], sampler=sampler, max_tokens=n))
    done = events[-1]
    assert isinstance(done, DoneEvent)
    return toks, margins, list(engine.conversation.ids[:done.stats.prompt_tokens])


@pytest.mark.parametrize("prompt", GOLDEN_PROMPTS)
def test_golden_greedy_text(prompt, default_model):
    """Temperature 0, 32 tokens through Engine.chat on both backends: the same tokens as llama.cpp before
    its first near tie, and at every later step where llama.cpp's choice is decisive (teacher-forced on
    llama.cpp's continuation)."""
    from edgechat.runtime import load
    # f16 on both: the oracle's own cache (auto would give the native engine q8_0)
    engines = {b: load(default_model, backend=b, ctx=512, threads=2, kv_type="f16") for b in ("native", "llama.cpp")}
    try:
        ref, margins, ids = chat_greedy(engines["llama.cpp"], prompt, GOLDEN_TOKENS)
        ours, _, ids_native = chat_greedy(engines["native"], prompt, GOLDEN_TOKENS)
        assert ids_native == ids                              # the same prompt on both
        n = len(ref)
        first_tie = next((i for i, m in enumerate(margins) if m <= DECISIVE_MARGIN), n)
        print(f"{prompt!r}: llama.cpp {engines['native'].detokenize(ref)!r}\n  native {engines['native'].detokenize(ours)!r}"
              f"\n  first near tie at step {first_tie}")
        # at a near tie (llama.cpp's own lead <= DECISIVE_MARGIN) either choice is within its noise
        assert ours[:first_tie] == ref[:first_tie]
        engines["native"].reset()
        forced = engines["native"].eval(ids + ref[:-1], all_logits=True)[len(ids) - 1:]
        decisive = np.asarray(margins) > DECISIVE_MARGIN
        assert decisive.sum() >= n // 4          # the check below is not vacuous
        assert (forced.argmax(axis=1)[decisive] == np.asarray(ref)[decisive]).all()
    finally:
        for e in engines.values():
            e.close()
