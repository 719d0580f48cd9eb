"""ASan + UBSan over the native code (scripts/asan_test.sh): the kernel tests, the engine on the default
model with a wrapping ring, the malformed GGUF corpus and deliberately inconsistent inputs to
_native.Model. Any sanitizer report aborts the run; every bad input must be a clean Python exception."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "asan_test.sh"
EXIT_SKIP = 77                 # the script's "no sanitizer runtime" code
SCRIPT_TIMEOUT_S = 900         # a first run builds the sanitized extension (about a minute on 2 cores)
SANITIZER_MARKERS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "Segmentation fault")


def test_native_code_is_clean_under_asan_and_ubsan():
    r = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True,
                       timeout=SCRIPT_TIMEOUT_S)
    out = r.stdout + r.stderr
    print(out[-6000:])
    if r.returncode == EXIT_SKIP:
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, out[-6000:]
    for marker in SANITIZER_MARKERS:
        assert marker not in out, marker
    assert " passed, 0 failed" in out                                  # the kernel test program
    assert "all refused by check_gguf" in out
    assert "asan driver: ok" in out and out.rstrip().endswith("asan_test: ok")
