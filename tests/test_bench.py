"""``edgechat bench`` end to end (tiny settings) and the --shape GGUF maker. The figures are measurements,
never asserted on: what is checked is the structure of the report, the medians and ratios worked out by
hand on given runs, and that the synthetic files are the shapes they claim, as llama.cpp reads them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgechat.app import bench, bench_shapes

ENGINES = ("native", "llama.cpp")

CACHE = Path(__file__).parent / ".cache" / "bench-ggufs"
THREADS = 2


def test_bench_cli_json_on_the_default_model(tmp_path):
    cmd = [sys.executable, "-m", "edgechat.app.cli", "bench", "--threads", str(THREADS), "--runs", "1",
           "--prefill", "64", "--decode-depths", "0,128", "--decode-tokens", "8", "--kv-type", "f16,q8_0", "--json"]
    env = {**os.environ, "EDGECHAT_BENCH_CACHE": str(tmp_path)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert r["threads"] == THREADS and r["runs"] == 1 and r["prefill"] == [64] and r["decode_depths"] == [0, 128]
    assert r["cpu"] and r["native_isa"] and r["dram_read_gbps"] > 0 and r["kv_type"] == "f16,q8_0"
    assert isinstance(r["llama_cpp"]["weight_repacking"], bool)
    assert [row["kv_type"] for row in r["rows"]] == ["f16", "q8_0"]      # one row per KV type
    for row in r["rows"]:
        _check_row(r, row)
    from edgechat.app.bench import table
    text = table(r)
    assert "q8_0 / f16" in text and text.count("smollm2-135m") >= 3


def _tensor_bytes(path) -> int:
    """The bytes of every tensor in ``path``, by gguf's reader (the default model ties its output to the
    embedding table, so a decoded token reads them all)."""
    import gguf
    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)


def _check_row(r, row):
    from edgechat.models.resolve import default_model_path
    assert (row["model"], row["type"], row["arch"]) == ("smollm2-135m", "Q4_1", "llama")
    assert not row["errors"] and row["weight_bytes_per_token"] == _tensor_bytes(default_model_path())
    keys = {"load_s", "prefill64_tps", "decode0_tps", "decode128_tps", "decode_gbps", "peak_rss_mib"}
    for b in ENGINES:
        med = row["median"][b]
        assert set(med) == keys and all(v > 0 for v in med.values()), (b, med)
    assert set(row["ratio"]) == keys                      # the arithmetic: test_median_rows_and_ratios
    assert set(row["greedy_identical"]) == {"0", "128"}
    assert all(0 <= v <= 8 for v in row["greedy_identical"].values())
    assert row["info"]["native"]["isa"] in r["native_isa"]


def _sample(load_s, prefill, decode0, decode8, rss, greedy0, greedy8) -> dict:
    return {"load_s": load_s, "prefill16_tps": prefill, "decode0_tps": decode0, "decode8_tps": decode8,
            "peak_rss_mib": rss, "greedy0": greedy0, "greedy8": greedy8, "info": {"isa": "x"}}


def test_median_rows_and_ratios():
    """Three runs an engine, figures chosen so each median and ratio is worked out by hand: the middle
    value of three, native / llama.cpp, GB/s = decode@0 tok/s x 2.5e9 bytes a token / 1e9. A run that
    failed is left out of the medians and reported."""
    plan = {"prefill": [16], "depths": [0, 8]}
    samples = {"native": [_sample(0.3, 900, 30, 20, 150, [1, 2, 3, 4], [5, 6]),
                          _sample(0.1, 1100, 50, 24, 140, [1, 2, 3, 4], [5, 6]),
                          _sample(0.2, 1000, 40, 22, 160, [1, 2, 3, 4], [5, 6])],
               "llama.cpp": [_sample(0.4, 500, 20, 10, 300, [1, 2, 9, 4], [5, 6]),
                             {"error": "RuntimeError: boom"},
                             _sample(0.6, 300, 10, 12, 200, [1, 2, 9, 4], [5, 6]),
                             _sample(0.5, 400, 30, 11, 250, [1, 2, 9, 4], [5, 6])]}
    row = bench._row_result({"weight_bytes_per_token": 2_500_000_000}, samples, plan)
    assert row["median"]["native"] == pytest.approx({"load_s": 0.2, "prefill16_tps": 1000, "decode0_tps": 40,
                                                     "decode8_tps": 22, "peak_rss_mib": 150, "decode_gbps": 100})
    assert row["median"]["llama.cpp"] == pytest.approx({"load_s": 0.5, "prefill16_tps": 400, "decode0_tps": 20,
                                                        "decode8_tps": 11, "peak_rss_mib": 250, "decode_gbps": 50})
    assert row["ratio"] == pytest.approx({"load_s": 0.4, "prefill16_tps": 2.5, "decode0_tps": 2.0,
                                          "decode8_tps": 2.0, "peak_rss_mib": 0.6, "decode_gbps": 2.0})
    assert row["greedy_identical"] == {"0": 2, "8": 2}        # the first runs' tokens agree up to index 2
    assert row["errors"] == {"llama.cpp": "RuntimeError: boom"}


def test_a_median_of_an_even_count_is_the_mean_of_the_middle_two():
    plan = {"prefill": [16], "depths": [0, 8]}
    two = [_sample(1.0, 100, 10, 5, 100, [], []), _sample(3.0, 300, 30, 7, 200, [], [])]
    assert bench._median_row(two, plan, 1_000_000_000) == pytest.approx(
        {"load_s": 2.0, "prefill16_tps": 200, "decode0_tps": 20, "decode8_tps": 6, "peak_rss_mib": 150,
         "decode_gbps": 20})
    assert bench._median_row([{"error": "x"}], plan, 1) is None


def test_bench_options_parse_after_the_subcommand():
    from edgechat.app.cli import build_parser
    args = build_parser().parse_args(["bench", "--threads", "2", "--runs", "3", "--shape", "llama-1b,qwen3-0.6b",
                                      "--type", "Q4_0,Q4_K_M", "--layers", "2"])
    assert (args.command, args.threads, args.runs, args.layers) == ("bench", 2, 3, 2)
    assert args.shape == ("llama-1b", "qwen3-0.6b") and args.type == ("Q4_0", "Q4_K_M")
    assert build_parser().parse_args(["--threads", "3", "bench"]).threads == 3
    assert build_parser().parse_args(["bench", "--kv-type", "q8_0"]).kv_type == ("q8_0",)
    assert build_parser().parse_args(["bench", "--kv-type", "f16,q8_0"]).kv_type == ("f16", "q8_0")
    assert build_parser().parse_args(["bench"]).kv_type == "auto"    # the top-level option's default
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--kv-type", "q4_0"])
    assert build_parser().parse_args(["bench", "--kv-type", "auto,f16"]).kv_type == ("auto", "f16")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--type", "Q5_1"])


def _llama_cpp_facts(path: Path, keys: list[str]) -> tuple[dict, np.ndarray]:
    """llama.cpp's view of ``path``: the metadata ``keys`` as it read them, and the logits of 5 tokens."""
    import llama_cpp.llama_cpp as L

    from edgechat.runtime.backends.llama_cpp import LlamaCppBackend
    b = LlamaCppBackend(path, ctx=64, sinks=4, threads=THREADS)
    try:
        facts = {"n_layer": L.llama_model_n_layer(b._model), "n_embd": L.llama_model_n_embd(b._model),
                 "n_head": L.llama_model_n_head(b._model), "n_head_kv": L.llama_model_n_head_kv(b._model),
                 "n_vocab": b.n_vocab}
        facts |= {k: b._meta(L, k) for k in keys}
        return facts, b.eval([1, 504, 3458, 28, 314])
    finally:
        b.close()


@pytest.mark.parametrize("name", list(bench_shapes.SHAPES))
def test_shape_gguf_loads_in_llama_cpp_with_its_shape(name):
    path = bench_shapes.shape_gguf(name, "Q4_0", layers=1, out_dir=CACHE)
    cfg = bench_shapes.SHAPES[name].cfg
    a = cfg.arch
    keys = [f"{a}.attention.head_count_kv", f"{a}.feed_forward_length", f"{a}.rope.freq_base",
            f"{a}.attention.layer_norm_rms_epsilon", f"{a}.attention.key_length"]
    facts, logits = _llama_cpp_facts(path, keys)
    vocab = 262144 if bench_shapes.SHAPES[name].tokenizer == "gemma3" else 49152   # whose tokenizer it copies
    assert (facts["n_layer"], facts["n_embd"], facts["n_head"], facts["n_vocab"]) == (1, cfg.n_embd, cfg.n_head, vocab)
    assert int(facts[keys[0]]) == facts["n_head_kv"] == cfg.n_head_kv and int(facts[keys[1]]) == cfg.n_ff
    assert float(facts[keys[2]]) == cfg.rope_base and float(facts[keys[3]]) == pytest.approx(cfg.eps)
    assert facts[keys[4]] is None or int(facts[keys[4]]) == cfg.head_dim
    assert np.isfinite(logits).all() and logits.std() > 0
    import gguf
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    assert "output.weight" not in tensors                                       # tied, as the real model
    assert tuple(tensors["blk.0.attn_q.weight"].shape) == (cfg.n_embd, cfg.n_head * cfg.head_dim)
    assert tuple(tensors["blk.0.attn_k.weight"].shape) == (cfg.n_embd, cfg.n_head_kv * cfg.head_dim)
    assert tuple(tensors["blk.0.ffn_down.weight"].shape) == (cfg.n_ff, cfg.n_embd)
    assert ("blk.0.attn_q.bias" in tensors) == (a == "qwen2")
    assert ("blk.0.attn_q_norm.weight" in tensors) == (a in ("qwen3", "gemma3"))
    assert ("blk.0.post_ffw_norm.weight" in tensors) == (a == "gemma3")
    assert tensors["blk.0.ffn_up.weight"].tensor_type.name == "Q4_0"
