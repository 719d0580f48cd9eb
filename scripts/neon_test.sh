#!/usr/bin/env bash
# Kernel tests (cpp_ext/tests/test_kernels.cpp): a native build + run, then the NEON table
# cross-compiled for aarch64 (static) and run under qemu-aarch64, without and with dotprod.
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

native() {
  echo "== native ($(uname -m))"
  local objs=() f extra
  for f in generic dispatch x86_avx2 arm_neon; do
    extra=()
    [ "$f" = x86_avx2 ] && [ "$(uname -m)" = x86_64 ] && extra=(-mavx2 -mfma -mf16c)
    g++ "${flags[@]}" "${extra[@]}" -c "$src/$f.cpp" -o "$out/native_$f.o"
    objs+=("$out/native_$f.o")
  done
  g++ "${flags[@]}" "$test_src" "${objs[@]}" -o "$out/test_kernels_native"
  "$out/test_kernels_native" "$@"
}

aarch64() {
  local cross=aarch64-linux-gnu-g++ arch bin
  if ! command -v "$cross" >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    echo "neon_test: SKIP aarch64: $cross or qemu-aarch64 missing (apt-get install g++-aarch64-linux-gnu qemu-user)" >&2
    exit 77
  fi
  for arch in armv8-a armv8.2-a+dotprod; do
    echo "== aarch64 -march=$arch under qemu-aarch64"
    bin="$out/test_kernels_aarch64_${arch//[^a-z0-9]/_}"
    "$cross" "${flags[@]}" -march="$arch" -static "$test_src" "$src/generic.cpp" "$src/arm_neon.cpp" \
      "$src/dispatch.cpp" -o "$bin"
    qemu-aarch64 -cpu max "$bin"
  done
}

case "$mode" in
  native) native "$@" ;;
  aarch64) aarch64 ;;
  all) native "$@"; aarch64 ;;
  *) echo "usage: $0 [all|native|aarch64] [BUILD_DIR] [ARGS...]" >&2; exit 2 ;;
esac
