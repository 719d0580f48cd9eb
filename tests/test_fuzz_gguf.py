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


NATIVE_EXECUTIONS = 3000   # ~5 s


def test_fuzz_native_load_path_never_crashes():
    """Mutated complete models through check_gguf, read_model, the C++ engine and an eval: a result or
    an EdgechatError, never another exception; run in a child process, so a C++ crash fails this test
    (with the seed to reproduce it) instead of ending the test run."""
    import re
    import subprocess
    script = Path(__file__).resolve().parent.parent / "scripts" / "fuzz_gguf.py"
    r = subprocess.run([sys.executable, str(script), "--target", "native", "--seed", "20240602",
                        "--executions", str(NATIVE_EXECUTIONS), "--seconds", "600"],
                       capture_output=True, text=True, timeout=900)
    print(r.stdout[-2000:])
    assert r.returncode == 0, (r.returncode, r.stdout[-4000:], r.stderr[-4000:])
    m = re.search(r"executions (\d+) .*passed check_gguf (\d+), ran in the engine (\d+), rejected (\d+), "
                  r"crashes (\d+)", r.stdout)
    assert m, r.stdout
    executions, passed, ran, rejected, crashes = map(int, m.groups())
    assert crashes == 0 and executions >= NATIVE_EXECUTIONS
    assert rejected and passed > ran > 0       # both outcomes, and the engine refused some that passed
    assert "read_model:" in r.stdout or "the native engine:" in r.stdout
