"""The native thread pool (cpp_ext/pool.cpp) under stress: cpp_ext/tests/test_pool.cpp runs thousands of
jobs of random sizes on twice as many threads as cores, with pauses that let the workers sleep; every
task must run exactly once. Built plainly and under ThreadSanitizer. A lost task hangs the program, so
each run has a timeout."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "cpp_ext" / "tests" / "test_pool.cpp", ROOT / "cpp_ext" / "pool.cpp"]
# the plain build does 20000 jobs in about a second here, the TSan build 5000 in about two; a hang is
# what a lost task looks like, so the limit is far above either
RUN_TIMEOUT_S = 120


@pytest.mark.parametrize("flavor, flags, jobs", [
    ("plain", ["-O2"], 20000),
    ("tsan", ["-O1", "-g", "-fsanitize=thread"], 5000),
])
def test_every_task_runs_exactly_once(tmp_path, flavor, flags, jobs):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    exe = tmp_path / f"test_pool_{flavor}"
    build = subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-pthread", *flags,
                            *map(str, SOURCES), "-o", str(exe)], capture_output=True, text=True)
    if build.returncode and flavor == "tsan" and "tsan" in build.stderr.lower():
        pytest.skip("no ThreadSanitizer runtime: " + build.stderr.strip().splitlines()[-1])
    assert build.returncode == 0, build.stderr
    try:
        r = subprocess.run([str(exe), str(jobs)], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the pool hung (a task was lost) within {jobs} jobs")
    print(r.stdout, r.stderr)
    assert "ThreadSanitizer" not in r.stderr, r.stderr[-4000:]
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith(" 0 bad task counts")
