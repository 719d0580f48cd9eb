#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer runs of the native code:
#   1. the kernel test program (cpp_ext/tests/test_kernels.cpp + cpp_ext/kernels/*.cpp) built with
#      -fsanitize=address,undefined;
#   2. an ASan+UBSan build of the extension (cpp_ext/ with -DEDGECHAT_SANITIZE=ON, its own build dir)
#      loaded as edgechat._native under LD_PRELOAD of gcc's libasan, driving:
#      a. the engine on the default model: a chat turn whose prompt is longer than the cache (the ring
#         wraps during a chunked prefill), 16 greedy tokens, a second turn, teacher-forced eval; its
#         logits are compared with the normal build's (same script, no sanitizer);
#      b. every file of the malformed GGUF corpus (scripts/make_bad_ggufs.py): none may pass
#         check_gguf; those gguf-py can still parse are given to _native.Model directly;
#      c. _native.Model on deliberately inconsistent inputs (wrong shapes, byte sizes, type ids,
#         hyperparameters, ctx/sinks/threads; bad token ids to eval, sinks >= ctx to reset...):
#         each must be a clean Python exception, and the model must still work afterwards.
#   Any sanitizer report aborts the process (UBSan halt_on_error=1), so the script fails.
#
#   bash scripts/asan_test.sh [BUILD_DIR]      # default tests/.cache/asan
# exits 77 (skip) when the compiler lacks the sanitizer runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-tests/.cache/asan}
py=${PYTHON:-.venv/bin/python}
CXX=${CXX:-g++}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# ---- is there a sanitizer runtime? --------------------------------------------------------------
libasan=$("$CXX" -print-file-name=libasan.so)
# libstdc++ is preloaded too: python does not link it, and ASan's __cxa_throw interceptor must find the
# real one when ASan starts, or the first C++ exception aborts ("real___cxa_throw != 0")
libstdcxx=$("$CXX" -print-file-name=libstdc++.so)
probe="$out/probe"
if [ "${libasan#/}" = "$libasan" ] || [ ! -e "$libasan" ] ||
   ! echo 'int main() { return 0; }' | "$CXX" -x c++ -fsanitize=address,undefined - -o "$probe" 2>/dev/null ||
   ! "$probe"; then
  echo "asan_test: SKIP: $CXX has no AddressSanitizer/UBSan runtime (libasan: '$libasan'); on Debian: apt-get install g++ (libasan, libubsan)" >&2
  exit 77
fi

san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1)
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# rebuild $1 when it is missing or older than any of the remaining files
stale() {
  local target=$1 f
  shift
  [ -e "$target" ] || return 0
  for f in "$@"; do [ "$f" -nt "$target" ] && return 0; done
  return 1
}

# ---- 1. kernel tests ----------------------------------------------------------------------------
echo "== asan: kernel tests (test_kernels.cpp, -fsanitize=address,undefined)"
kbin="$out/test_kernels_asan"
ksrc=(cpp_ext/kernels/*.cpp cpp_ext/kernels/*.h cpp_ext/kernels/*.inc cpp_ext/blocks.h cpp_ext/tests/test_kernels.cpp)
if stale "$kbin" "${ksrc[@]}"; then
  objs=()
  source scripts/kernel_files.sh   # KERNEL_FILES, kernel_flags
  for f in "${KERNEL_FILES[@]}"; do
    read -r -a extra <<< "$(kernel_flags "$f")"
    "$CXX" -std=c++17 -Wall -Wextra "${san[@]}" "${extra[@]}" -c "cpp_ext/kernels/$f.cpp" -o "$out/k_$f.o"
    objs+=("$out/k_$f.o")
  done
  "$CXX" -std=c++17 -Wall -Wextra "${san[@]}" cpp_ext/tests/test_kernels.cpp "${objs[@]}" -o "$kbin"
fi
"$kbin" | tail -n 1

# ---- 2. the sanitized extension -----------------------------------------------------------------
echo "== asan: building edgechat._native with EDGECHAT_SANITIZE=ON into $out/build"
cmake_bin=cmake
[ -x .venv/bin/cmake ] && cmake_bin=.venv/bin/cmake
gen=()
if [ ! -e "$out/build/CMakeCache.txt" ]; then
  if [ -x .venv/bin/ninja ] || command -v ninja >/dev/null; then gen=(-G Ninja); fi
fi
"$cmake_bin" -S cpp_ext -B "$out/build" "${gen[@]}" -DEDGECHAT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPython_EXECUTABLE="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")" >"$out/cmake-configure.log" 2>&1 ||
  { cat "$out/cmake-configure.log" >&2; exit 1; }
"$cmake_bin" --build "$out/build" -j "$(nproc 2>/dev/null || echo 2)" >"$out/cmake-build.log" 2>&1 ||
  { tail -n 40 "$out/cmake-build.log" >&2; exit 1; }
so=$(ls "$out"/build/_native*.so | head -n 1)
echo "built $so"

driver="$out/asan_driver.py"
cat >"$driver" <<'PY'
"""Driven by scripts/asan_test.sh: MODE is 'record' (normal build) or 'asan' (the .so given)."""
import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

mode, record_path = sys.argv[1], Path(sys.argv[2])
sys.path.insert(0, "scripts")
import edgechat  # noqa: E402

if mode == "asan":
    so = sys.argv[3]
    loader = importlib.machinery.ExtensionFileLoader("edgechat._native", so)
    spec = importlib.util.spec_from_file_location("edgechat._native", so, loader=loader)
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    sys.modules["edgechat._native"] = native
    edgechat._native = native
from edgechat import _native  # noqa: E402

print(f"_native from {_native.__file__} (isa {_native.isa()})")
if mode == "asan":
    assert _native.__file__ == sys.argv[3], _native.__file__

from edgechat.runtime import load  # noqa: E402
from edgechat.runtime.errors import GGUFError  # noqa: E402
from edgechat.runtime.ggufload import read_model  # noqa: E402
from edgechat.runtime.gguf_check import check_gguf  # noqa: E402
from edgechat.models.resolve import default_model_path  # noqa: E402

CTX, SINKS, THREADS = 40, 4, 2      # a small cache, so the ring wraps during the prompt
REPLY_TOKENS = 16
# the -O1 sanitized build and the -O3 normal build may round differently (fp contraction);
# logits of this model are O(10)
LOGIT_ATOL = 1e-2

# ---- a. generation on the default model ---------------------------------------------------------
eng = load(default_model_path(), backend="native", ctx=CTX, sinks=SINKS, threads=THREADS)
assert eng.info.backend == "native", eng.info
prompt = ("Here is a long note about the weather in the mountains, the rivers that run down to the sea, "
          "and the small towns along the coast where people fish and farm. Summarize it in one sentence.")
msgs = [{"role": "user", "content": prompt}]
events = list(eng.chat(msgs, max_tokens=REPLY_TOKENS, temp=0))
done = events[-1]
assert done.stats.completion_tokens > 0 and done.text, done
assert done.cache.evicted > 0, done.cache          # the ring wrapped
msgs += [{"role": "assistant", "content": done.text}, {"role": "user", "content": "And in French?"}]
done2 = list(eng.chat(msgs, max_tokens=REPLY_TOKENS, temp=0))[-1]
assert done2.stats.completion_tokens > 0, done2
print(f"chat: {done.stats.prompt_tokens} prompt tokens into ctx {CTX}, evicted {done.cache.evicted}, "
      f"reply {done.text!r}; turn 2 {done2.text!r}")

eng.reset()
ids = eng.tokenize(prompt * 2)                 # > ctx: chunked prefill across wraps
logits = eng.eval(ids, all_logits=True)        # (n, vocab)
assert logits.shape == (len(ids), eng._b.n_vocab) and np.isfinite(logits).all()
eng.close()
rec = {"reply": done.text, "reply2": done2.text, "last": logits[-1].tolist(),
       "top1": logits.argmax(axis=1).tolist()}
if mode == "record":
    record_path.write_text(json.dumps(rec))
    print("recorded the normal build's outputs")
    sys.exit(0)
ref = json.loads(record_path.read_text())
diff = float(np.abs(np.asarray(ref["last"], np.float32) - logits[-1]).max())
agree = float(np.mean(np.asarray(ref["top1"]) == logits.argmax(axis=1)))
print(f"vs the normal build: max |logit diff| {diff:.2e} (atol {LOGIT_ATOL}), top-1 agreement {agree:.3f}, "
      f"same reply: {rec['reply'] == ref['reply']}")
assert diff <= LOGIT_ATOL, diff

# ---- b. the malformed corpus ----------------------------------------------------------------------
import make_bad_ggufs  # noqa: E402

passed, direct = [], 0
corpus = make_bad_ggufs.write_corpus(record_path.parent / "bad_ggufs")
for path, case in corpus:
    try:
        check_gguf(path)
        passed.append(case.name)
    except GGUFError:
        pass
    # bypass the check: whatever gguf-py can still parse goes straight to the native constructor
    try:
        import gguf
        r = gguf.GGUFReader(path)
        tensors = [(str(t.name), int(t.tensor_type), [int(x) for x in t.shape],
                    np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)) for t in r.tensors]
    except Exception:
        continue
    cfg = {"arch": "llama", "n_layer": 1, "n_embd": 32, "n_head": 4, "n_head_kv": 4, "head_dim": 8,
           "n_ff": 64, "n_vocab": 8, "n_rot": 8, "eps": 1e-5, "rope_base": 10000.0, "rope_neox": False}
    try:
        _native.Model(cfg, tensors, 16, 4, 1)
        raise AssertionError(f"{case.name}: the native constructor accepted an incomplete model")
    except (ValueError, TypeError, IndexError, OverflowError):
        direct += 1
assert not passed, f"malformed files passed check_gguf: {passed}"
print(f"corpus: {len(corpus)} files, all refused by check_gguf; {direct} parsed by gguf-py and "
      f"refused by _native.Model")

# ---- c. inconsistent inputs to _native.Model and the model's methods ------------------------------
mf = read_model(default_model_path())
base_cfg = dict(mf.config)
base = [(t.name, t.type, list(t.shape), t.data) for t in mf.tensors]
names = [t[0] for t in base]
VOCAB = base_cfg["n_vocab"]


def with_tensor(name, **change):
    out = []
    for n, ty, shape, data in base:
        if n == name:
            ty = change.get("type", ty)
            shape = change.get("shape", shape)
            data = change.get("data", data)
            n = change.get("name", n)
        out.append((n, ty, shape, data))
    return out


def without(name):
    return [t for t in base if t[0] != name]


q = "blk.0.attn_k.weight"          # not square: (n_embd, kv_dim)
qt = next(t for t in base if t[0] == q)
assert qt[2][0] != qt[2][1], qt[2]
norm = "blk.0.attn_norm.weight"
normt = next(t for t in base if t[0] == norm)
f32 = np.zeros(8, np.float32)
bad_models = {
    "shape swapped": (base_cfg, with_tensor(q, shape=qt[2][::-1])),
    "shape 3-d": (base_cfg, with_tensor(q, shape=qt[2] + [2])),
    "shape empty": (base_cfg, with_tensor(q, shape=[])),
    "shape 5-d": (base_cfg, with_tensor(q, shape=qt[2] + [1, 1, 1])),
    "shape negative": (base_cfg, with_tensor(q, shape=[-qt[2][0], qt[2][1]])),
    "shape huge": (base_cfg, with_tensor(q, shape=[1 << 62, 1 << 62])),
    "norm shape overflows int64": (base_cfg, with_tensor(norm, shape=[1 << 32, 1 << 32, 1 << 32, 1 << 32])),
    "norm shape huge": (base_cfg, with_tensor(norm, shape=[1 << 62, 4])),
    "norm element count": (base_cfg, with_tensor(norm, shape=[normt[2][0] - 1])),
    "nbytes short by one": (base_cfg, with_tensor(q, data=qt[3][:-1])),
    "nbytes short by one block": (base_cfg, with_tensor(q, data=qt[3][:-20])),
    "nbytes long by one": (base_cfg, with_tensor(q, data=np.concatenate([qt[3], np.zeros(1, np.uint8)]))),
    "norm nbytes short": (base_cfg, with_tensor(norm, data=normt[3][:-4])),
    "empty data": (base_cfg, with_tensor(q, data=np.zeros(0, np.uint8))),
    "type id 999": (base_cfg, with_tensor(q, type=999)),
    "type id -1": (base_cfg, with_tensor(q, type=-1)),
    "type id 2^31": (base_cfg, with_tensor(q, type=1 << 31)),
    "type id 4 (removed)": (base_cfg, with_tensor(q, type=4)),
    "type id 7 (Q5_1, not native)": (base_cfg, with_tensor(q, type=7)),
    "norm type id 999": (base_cfg, with_tensor(norm, type=999)),
    "norm type Q4_1 (wrong size)": (base_cfg, with_tensor(norm, type=3)),
    "missing attn_k": (base_cfg, without(q)),
    "missing token_embd": (base_cfg, without("token_embd.weight")),
    "missing output_norm": (base_cfg, without("output_norm.weight")),
    "missing last layer": (base_cfg, [t for t in base if not t[0].startswith(f"blk.{base_cfg['n_layer'] - 1}.")]),
    "no tensors": (base_cfg, []),
    "float32 data": (base_cfg, with_tensor(norm, data=np.zeros(normt[2][0], np.float32))),
    "strided data": (base_cfg, with_tensor(q, data=np.zeros(2 * qt[3].nbytes, np.uint8)[::2])),
    "2-d data": (base_cfg, with_tensor(q, data=qt[3].reshape(qt[2][1], -1))),
    "data not an array": (base_cfg, with_tensor(q, data=b"\0" * 16)),
    "tuple too short": (base_cfg, [(q, qt[1], qt[2])] + without(q)),
    "name not a str": (base_cfg, [(7, qt[1], qt[2], qt[3])] + without(q)),
    "n_layer 0": (dict(base_cfg, n_layer=0), base),
    "n_layer -3": (dict(base_cfg, n_layer=-3), base),
    "n_layer + 1": (dict(base_cfg, n_layer=base_cfg["n_layer"] + 1), base),
    "n_head % n_head_kv": (dict(base_cfg, n_head_kv=base_cfg["n_head"] - 1), base),
    "n_head_kv 0": (dict(base_cfg, n_head_kv=0), base),
    "n_head_kv negative": (dict(base_cfg, n_head_kv=-3), base),
    "head_dim negative": (dict(base_cfg, head_dim=-64), base),
    "head_dim wrong": (dict(base_cfg, head_dim=base_cfg["head_dim"] * 2), base),
    "n_rot odd": (dict(base_cfg, n_rot=base_cfg["head_dim"] - 1), base),
    "n_rot > head_dim": (dict(base_cfg, n_rot=base_cfg["head_dim"] * 2), base),
    "n_embd wrong": (dict(base_cfg, n_embd=base_cfg["n_embd"] + 32), base),
    "n_ff wrong": (dict(base_cfg, n_ff=base_cfg["n_ff"] * 2), base),
    "n_vocab + 1": (dict(base_cfg, n_vocab=VOCAB + 1), base),
    "n_vocab 0": (dict(base_cfg, n_vocab=0), base),
    "n_vocab huge": (dict(base_cfg, n_vocab=(1 << 31) - 1), base),
    "n_layer 2^31": (dict(base_cfg, n_layer=1 << 31), base),
    "config missing a key": ({k: v for k, v in base_cfg.items() if k != "n_ff"}, base),
    "config value a str": (dict(base_cfg, n_ff="lots"), base),
}
bad_args = {"ctx 1": (1, 0, 1), "ctx 0": (0, 0, 1), "ctx -5": (-5, 0, 1), "sinks == ctx": (16, 16, 1),
            "sinks > ctx": (16, 100, 1), "sinks -1": (16, -1, 1), "ctx 2^31": (1 << 31, 4, 1)}
errors = Exception         # any Python exception is clean; a crash or a sanitizer report is not
seen = {}
for what, (cfg, tensors) in bad_models.items():
    try:
        _native.Model(cfg, tensors, 16, 4, 1)
    except errors as e:
        seen[what] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        continue
    raise AssertionError(f"_native.Model accepted: {what}")
for what, (ctx, sinks, threads) in bad_args.items():
    try:
        _native.Model(base_cfg, base, ctx, sinks, threads)
    except errors as e:
        seen[what] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        continue
    raise AssertionError(f"_native.Model accepted: {what}")
for what, msg in seen.items():
    print(f"  refused {what:34s} {msg}")

# a good model; misuse of its methods
m = _native.Model(base_cfg, base, 16, 4, 0)     # threads 0 means 1
assert m.threads == 1, m.threads
ok_ids = np.asarray(ids[:5], np.int32)
ref_logits = m.eval(ok_ids)
misuse = {
    "eval id -1": lambda: m.eval(np.asarray([1, -1], np.int32)),
    "eval id == n_vocab": lambda: m.eval(np.asarray([VOCAB], np.int32)),
    "eval id 2^31-1": lambda: m.eval(np.asarray([(1 << 31) - 1], np.int32)),
    "eval id -2^31": lambda: m.eval(np.asarray([-(1 << 31)], np.int32)),
    "eval no ids": lambda: m.eval(np.zeros(0, np.int32)),
    "eval 2-d ids": lambda: m.eval(np.ones((2, 2), np.int32)),
    "reset sinks == ctx": lambda: m.reset(16),
    "reset sinks > ctx": lambda: m.reset(1000),
    "reset sinks -1": lambda: m.reset(-1),
    "reset sinks 2^40": lambda: m.reset(1 << 40),
}
for what, call in misuse.items():
    try:
        call()
    except errors as e:
        print(f"  refused {what:34s} {type(e).__name__}: {str(e).splitlines()[0]}")
        continue
    raise AssertionError(f"accepted: {what}")
for n in (-1, 1 << 40, 6):
    assert m.truncate(n) is False, n       # beyond what was fed, or negative
info = m.cache_info()
assert info["n_past"] == len(ok_ids) and info["sinks"] == 4, info   # the misuse changed nothing
m.reset(4)
again = m.eval(ok_ids)
assert np.array_equal(again, ref_logits), "the model changed after refused calls"
m.reset(15)                                    # the largest legal sink count: a window of one
for t in ids[:40]:
    out = m.eval(np.asarray([t], np.int32))
assert np.isfinite(out).all() and m.cache_info()["evicted"] > 0
m.reset(0)                                     # no sinks at all
assert np.isfinite(m.eval(np.asarray(ids[:40], np.int32), True)).all()
del m
print(f"asan driver: ok ({len(seen)} bad constructions, {len(misuse)} bad calls refused cleanly)")
PY

echo "== normal build: reference outputs"
"$py" "$driver" record "$out/reference.json"
echo "== asan build: engine, malformed corpus, inconsistent inputs (LD_PRELOAD=$libasan $libstdcxx)"
LD_PRELOAD="$libasan $libstdcxx" "$py" "$driver" asan "$out/reference.json" "$so"
echo "asan_test: ok"
