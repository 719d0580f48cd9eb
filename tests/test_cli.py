"""The one-shot CLI, run as the real console script: -p, stdin, --json schema, exit codes, errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EDGECHAT = str(Path(sys.executable).parent / "edgechat")
BASE = ["--threads", "2", "--ctx", "512", "--max-tokens", "12", "--temp", "0"]


def run(args, stdin=None, timeout=120):
    return subprocess.run([EDGECHAT, *args], input=stdin, capture_output=True, timeout=timeout)


def test_prompt_flag_streams_text():
    r = run(["-p", "Say hello.", *BASE])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip()
    assert b"Traceback" not in r.stderr


def test_seed_minus_one_is_a_fresh_seed_not_an_error():
    # llama.cpp users write --seed -1 for "random"; numpy refuses negative seeds (it was a traceback)
    r = run(["-p", "Say hello.", *BASE[:-2], "--temp", "0.8", "--seed", "-1"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip()


def test_version_names_the_kernels_and_llama_cpp():
    from importlib import metadata

    from edgechat import _native
    r = run(["--version"])
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode().strip()
    assert out.startswith(f"edgechat {metadata.version('edgechat')} ")
    assert f"native kernels: {_native.isa()}" in out and metadata.version("llama_cpp_python") in out


def test_prompt_on_stdin_and_invalid_utf8_is_replaced():
    r = run(BASE, stdin=b"Say hello \xff\xfe please.")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip()


def test_json_schema():
    r = run(["-p", "Name a fruit.", "--json", *BASE])
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert set(obj) >= {"text", "model", "backend", "finish_reason", "tokens", "timings"}
    assert obj["backend"] == "native"
    assert obj["finish_reason"] in ("stop", "length")
    assert obj["tokens"]["prompt"] > 0 and 0 < obj["tokens"]["completion"] <= 12
    assert set(obj["timings"]) == {"load_s", "ttft_s", "restore_s", "prefill_tps", "decode_tps", "draft_tokens",
                                   "accepted_tokens"}
    assert obj["cache"]["restored"] is False and obj["cache"]["kv_type"] == "q8_0"   # --kv-type auto, native
    assert obj["cache"]["evicted"] == 0


def test_verbose_names_the_backend_and_its_kv_cache():
    r = run(["-p", "Name a fruit.", "-v", *BASE])
    err = r.stderr.decode()
    assert r.returncode == 0 and "backend native" in err and "KV cache q8_0" in err, err   # auto on native


def test_json_same_text_on_llama_cpp_backend():
    same = ["--kv-type", "f16"]                  # the same cache on both (auto gives the native engine q8_0)
    a = json.loads(run(["-p", "Name a fruit.", "--json", *same, *BASE]).stdout)
    b = json.loads(run(["-p", "Name a fruit.", "--json", "--backend", "llama.cpp", *same, *BASE]).stdout)
    assert b["backend"] == "llama.cpp"
    assert a["text"] == b["text"]


@pytest.mark.parametrize("args, code, fragment", [
    (["-m", "/no/such/model.gguf", "-p", "hi"], 1, "no such file"),
    (["-m", "/tmp", "-p", "hi"], 1, "is a directory"),
    (["-m", "not-a-known-model", "-p", "hi"], 1, "unknown model"),
    (["--ctx", "4", "--sinks", "4", "-p", "hi"], 2, "--ctx"),
    (["--threads", "-1", "-p", "hi"], 2, "--threads"),
    (["--temp", "-0.5", "-p", "hi"], 2, "--temp"),
    (["-p", "   "], 2, "empty"),
])
def test_bad_input_is_one_line_error(args, code, fragment):
    r = run(args)
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert fragment in err
    assert "Traceback" not in err


def test_non_gguf_file_is_one_line_error(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_text("this is not a model")
    r = run(["-m", str(bad), "-p", "hi"])
    assert r.returncode == 1
    assert "Traceback" not in r.stderr.decode()
    assert len(r.stderr.decode().strip().splitlines()) == 1


def test_ctrl_c_prints_partial_text_and_exits_130():
    p = subprocess.Popen([EDGECHAT, "-p", "Write a long story about a dragon.", "--threads", "2",
                          "--max-tokens", "2000", "--temp", "0.7", "--seed", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.read(1)                 # generation has started
    assert first
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert b"Traceback" not in err
