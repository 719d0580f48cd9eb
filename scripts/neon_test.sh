#!/usr/bin/env bash
# Kernel tests (cpp_ext/tests/test_kernels.cpp): a native build + run, then the NEON tables
# cross-compiled for aarch64 (armv8-a, static; the dotprod / i8mm files with their own -march) and run
# under qemu-aarch64 on cpu models without dotprod, with dotprod, and with i8mm: each run must detect
# exactly its tables at run time.
#   bash scripts/neon_test.sh [all|native|aarch64] [BUILD_DIR] [ARGS...]
#     default: all, tests/.cache/kernels; ARGS go to the native test program (e.g. --dump DIR)
# needs g++; the aarch64 part needs g++-aarch64-linux-gnu and qemu-user (Debian packages) and exits
# 77 (skip) without them.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
out=${2:-tests/.cache/kernels}
shift $(( $# > 2 ? 2 : $# ))
mkdir -p "$out"
src=cpp_ext/kernels
test_src=cpp_ext/tests/test_kernels.cpp
flags=(-std=c++17 -O2 -Wall -Wextra -Werror)

source scripts/kernel_files.sh   # KERNEL_FILES, kernel_flags

native() {
  echo "== native ($(uname -m))"
  local objs=() f extra
  for f in "${KERNEL_FILES[@]}"; do
    read -r -a extra <<< "$(kernel_flags "$f")"
    g++ "${flags[@]}" "${extra[@]}" -c "$src/$f.cpp" -o "$out/native_$f.o"
    objs+=("$out/native_$f.o")
  done
  g++ "${flags[@]}" "$test_src" "${objs[@]}" -o "$out/test_kernels_native"
  "$out/test_kernels_native" "$@"
}

aarch64() {
  local cross=aarch64-linux-gnu-g++ bin="$out/test_kernels_aarch64" objs=() pids=() f p spec cpu isa want sel got
  if ! command -v "$cross" >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    echo "neon_test: SKIP aarch64: $cross or qemu-aarch64 missing (apt-get install g++-aarch64-linux-gnu qemu-user)" >&2
    exit 77
  fi
  for f in generic dispatch arm_neon arm_neon_dotprod arm_neon_i8mm; do
    "$cross" "${flags[@]}" $(kernel_flags "$f" aarch64) -c "$src/$f.cpp" -o "$out/aarch64_$f.o" &
    objs+=("$out/aarch64_$f.o") pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done  # each compile's status (set -e)
  "$cross" "${flags[@]}" -march=armv8-a -static "$test_src" "${objs[@]}" -o "$bin"
  # qemu cpu model [EDGECHAT_ISA] : the tables it must detect (best last) and select
  for spec in "cortex-a53:generic neon:neon" \
              "neoverse-n1:generic neon neon_dotprod:neon_dotprod" \
              "max:generic neon neon_dotprod neon_i8mm:neon_i8mm" \
              "max neon_dotprod:generic neon neon_dotprod neon_i8mm:neon_dotprod"; do
    IFS=: read -r cpu want sel <<<"$spec"
    read -r cpu isa <<<"$cpu"
    echo "== aarch64 under qemu-aarch64 -cpu $cpu${isa:+ EDGECHAT_ISA=$isa}"
    EDGECHAT_ISA=${isa:-} qemu-aarch64 -cpu "$cpu" "$bin" | tee "$out/aarch64_$cpu${isa:+_$isa}.log"
    got=$(head -n 1 "$out/aarch64_$cpu${isa:+_$isa}.log")
    if [ "$got" != "tables: $want (selected: $sel)" ]; then
      echo "neon_test: -cpu $cpu${isa:+ EDGECHAT_ISA=$isa}: got '$got', want 'tables: $want (selected: $sel)'" >&2
      exit 1
    fi
  done
}

case "$mode" in
  native) native "$@" ;;
  aarch64) aarch64 ;;
  all) native "$@"; aarch64 ;;
  *) echo "usage: $0 [all|native|aarch64] [BUILD_DIR] [ARGS...]" >&2; exit 2 ;;
esac
