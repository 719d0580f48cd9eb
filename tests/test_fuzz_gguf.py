"""A short run of scripts/fuzz_gguf.py: mutated GGUFs either pass check_gguf (and then load in
gguf.GGUFReader and agree with it) or raise GGUFError; never another exception, never over 1 s."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import fuzz_gguf  # noqa: E402

EXECUTIONS = 6000   # ~15-30 s; a fixed seed, so a failure reproduces


def test_fuzz_check_gguf_never_crashes():
    s = fuzz_gguf.fuzz(master_seed=20240601, executions=EXECUTIONS)
    print(f"executions {s.executions}, passed {s.passed}, rejected {s.rejected}, "
          f"slowest check {s.max_ms:.2f} ms, rejections by field {s.fields}")
    assert not s.crashes, s.crashes[0][1]
    assert s.executions >= EXECUTIONS
    assert s.passed and s.rejected   # the mutations reach both outcomes
    assert len(s.fields) >= 15       # and many different checks
