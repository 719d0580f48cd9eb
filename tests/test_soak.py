"""scripts/soak.py end to end, short: both backends through Engine.chat past several wrap-arounds. Its
figures are measurements (never asserted on); what is checked is the bookkeeping it reports."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CTX = 128
TOKENS = 700              # more than 5x CTX of dialogue
THREADS = 2


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "scripts" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("backend", ["native", "llama.cpp"])
def test_soak_reports_a_wrapping_dialogue(soak, backend):
    r = soak.soak_one(None, CTX, TOKENS, max_tokens=48, user_tokens=64, backend=backend, threads=THREADS,
                      pin_system=False, quiet=True)
    assert r["backend"] == backend and not r["invariant_violations"]
    turns = r["per_turn"]
    assert r["tokens"] >= TOKENS and r["turns"] == len(turns) >= 5
    assert r["capacity"] == CTX and r["rebuilds"] == 0
    # each turn starts where the last one ended: the cache keeps the conversation, nothing re-fed
    assert all(b["stream_start"] == a["stream_end"] for a, b in zip(turns, turns[1:]))
    assert all(t["prompt_tokens"] <= t["stream_end"] - t["stream_start"] for t in turns)
    last = turns[-1]
    assert r["evicted"] == last["evicted"] > 0
    # every token of the conversation is in the cache or was evicted (llama.cpp evicts by chunks, and its
    # `used` is what remains)
    assert last["used"] + last["evicted"] == last["stream_end"]
    assert r["ring_full_at"] is not None
    if r["decode_first_full_from"] is not None:
        assert r["decode_first_full_from"] >= r["ring_full_at"]
    assert sum(b["n"] for b in r["decode_per_1k"]) == r["decode_tokens"] == sum(t["completion_tokens"] for t in turns)
    rss = [t["rss"] for t in turns]            # the RSS figures are the per-turn samples, first and max
    assert r["rss_first_mib"] == rss[0] / 2**20 and r["rss_max_mib"] == max(rss) / 2**20


def test_table_shows_the_ratios(soak):
    results = [soak.soak_one(None, CTX, 300, max_tokens=16, user_tokens=64, backend=b, threads=THREADS,
                             pin_system=False, quiet=True) for b in ("native", "llama.cpp")]

    class Args:
        tokens, user_tokens, max_tokens, threads, pin_system = 300, 64, 16, THREADS, False
    text = soak.table(results, Args)
    assert "native ctx 128" in text and "llama.cpp ctx 128" in text
    assert "native / llama.cpp" in text and "ctx 128: decode last 1k" in text
