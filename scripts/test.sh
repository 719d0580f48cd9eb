#!/usr/bin/env bash
# Set up everything (see setup.sh --test) and run the whole test suite, NEON kernels under qemu included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest -q "$@"
