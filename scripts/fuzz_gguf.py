"""Fuzz check_gguf with hypothesis: mutate valid mini GGUFs and require that check_gguf either passes
or raises GGUFError (never another exception, never over 1 s), and that every file it passes loads in
gguf.GGUFReader and agrees with it.

Mutations: bit flips, byte overwrites, integer header fields (counts, lengths, types, dims, offsets)
overwritten with extremes, truncation, insertion and deletion of bytes; 1-4 per input.

``--target native`` fuzzes the whole native load path instead: a complete tiny model (2 layers, every
type the native kernels run but the k-quants, 8-token vocabulary) is mutated, and every file that passes
check_gguf goes through read_model, the C++ engine's constructor and a short eval, which must end in a
result or an EdgechatError (one line for the user), never another exception. A crash of the C++ ends
the process: run this target in a child process (tests/test_fuzz_gguf.py does) or under ASan.

    python scripts/fuzz_gguf.py --seconds 60 [--target check|native] [--seed N] [--crashes DIR]
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import gguf
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from edgechat.runtime.errors import GGUFError
from edgechat.runtime.gguf_check import GGUFSummary, check_gguf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_bad_ggufs  # noqa: E402

MAX_SECONDS = 1.0      # per check_gguf call
EXTREMES = [0, 1, 2, 3, 4, 5, 8, 12, 13, 31, 32, 33, 48, 63, 64, 255, 256, 1023, 1024, 1025,
            2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


def writer_mini() -> bytes:
    """A second valid base, laid out by gguf.GGUFWriter: F16, Q8_0 and F32 tensors, 2 layers."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "w.gguf"
        w = gguf.GGUFWriter(str(path), "qwen2")
        w.add_block_count(2)
        w.add_embedding_length(64)
        w.add_token_list(make_bad_ggufs.VOCAB)
        w.add_token_types([1] * len(make_bad_ggufs.VOCAB))
        w.add_bos_token_id(1)
        w.add_chat_template("{{ messages[0]['content'] }}")
        w.add_tensor("token_embd.weight", rng.standard_normal((8, 64)).astype(np.float16))
        for i in range(2):
            w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(64, np.float32))
            q8 = rng.integers(0, 256, (16, 2 * 34), dtype=np.uint8)  # 16 rows of 64 Q8_0 weights
            w.add_tensor(f"blk.{i}.attn_q.weight", q8,
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


def int_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every 4- or 8-byte integer in the header, found through gguf.GGUFReader."""
    with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
        f.write(data)
        f.flush()
        r = gguf.GGUFReader(f.name)
        base = r.data.ctypes.data
        parts = [p for fld in r.fields.values() for p in fld.parts]
        parts += [p for t in r.tensors for p in t.field.parts]
        out = {(p.ctypes.data - base + 8 * k, 8) for p in parts if p.dtype.itemsize == 8
               for k in range(p.size)}
        out |= {(p.ctypes.data - base, 4) for p in parts if p.dtype.itemsize == 4 and p.size == 1}
        return sorted(out)


def native_mini() -> bytes:
    """A complete llama model the native engine runs: 2 layers, n_embd 64, 4 heads of 16 (2 kv heads),
    n_ff 128, tied output; tensors in F32, F16, Q4_0, Q4_1, Q5_0 and Q8_0; 8-token vocabulary."""
    from gguf import quants
    T = gguf.GGMLQuantizationType
    rng = np.random.default_rng(1)
    n_embd, n_ff, kv = 64, 128, 32

    def q(shape, qtype):
        w = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if qtype == T.F32:
            return w, None
        if qtype == T.F16:
            return w.astype(np.float16), None
        return quants.quantize(w, qtype), qtype

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "n.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_block_count(2)
        w.add_context_length(64)
        w.add_embedding_length(n_embd)
        w.add_feed_forward_length(n_ff)
        w.add_head_count(4)
        w.add_head_count_kv(2)
        w.add_rope_dimension_count(16)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(10000.0)
        w.add_tokenizer_model("gpt2")
        w.add_token_list(make_bad_ggufs.VOCAB)
        w.add_token_types([1] * len(make_bad_ggufs.VOCAB))
        w.add_token_merges(["a b", "b c"])
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
        tensors = {"token_embd.weight": ((8, n_embd), T.Q8_0), "output_norm.weight": ((n_embd,), T.F32)}
        for i in range(2):
            b = f"blk.{i}."
            tensors |= {b + "attn_norm.weight": ((n_embd,), T.F32), b + "ffn_norm.weight": ((n_embd,), T.F32),
                        b + "attn_q.weight": ((n_embd, n_embd), T.Q4_0), b + "attn_k.weight": ((kv, n_embd), T.Q4_1),
                        b + "attn_v.weight": ((kv, n_embd), T.Q5_0), b + "attn_output.weight": ((n_embd, n_embd), T.F16),
                        b + "ffn_gate.weight": ((n_ff, n_embd), T.Q8_0), b + "ffn_up.weight": ((n_ff, n_embd), T.Q4_0),
                        b + "ffn_down.weight": ((n_embd, n_ff), T.F32)}
        for name, (shape, qtype) in tensors.items():
            data, raw = q(shape, qtype)
            w.add_tensor(name, data, raw_dtype=raw) if raw is not None else w.add_tensor(name, data)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


BASES = [make_bad_ggufs.mini().to_bytes(), writer_mini()]
NATIVE_BASE = len(BASES)          # index of native_mini in BASES (the native target's only base)
BASES.append(native_mini())
FIELDS = [int_fields(b) for b in BASES]


def _names(data: bytes) -> set[str]:
    with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
        f.write(data)
        f.flush()
        s = check_gguf(f.name)
    return {*s.metadata, *s.arrays, *(t.name for t in s.tensors), f"{s.arch}.block_count"}


KNOWN_FIELDS = {"header", "magic", "version", "endianness", "tensor_count", "kv_count"}
KNOWN_FIELDS = KNOWN_FIELDS.union(*(_names(b) for b in BASES))

_pos = st.integers(0, 2**20)
_op = st.one_of(
    st.tuples(st.just("flip"), _pos, st.integers(0, 7)),
    st.tuples(st.just("byte"), _pos, st.integers(0, 255)),
    st.tuples(st.just("field"), _pos, st.one_of(st.sampled_from(EXTREMES), st.integers(0, 2**64 - 1),
                                                st.integers(-64, 64))),
    st.tuples(st.just("int"), _pos, st.sampled_from([4, 8]), st.sampled_from(EXTREMES)),
    st.tuples(st.just("truncate"), _pos),
    st.tuples(st.just("insert"), _pos, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), _pos, st.integers(1, 16)),
)
MUTATIONS = st.tuples(st.integers(0, NATIVE_BASE - 1), st.lists(_op, min_size=1, max_size=4))
NATIVE_MUTATIONS = st.tuples(st.just(NATIVE_BASE), st.lists(_op, min_size=1, max_size=4))
NATIVE_CTX, NATIVE_SINKS = 16, 2     # a cache the 8 fed tokens wrap around


def mutate(base: int, ops) -> bytes:
    """Apply ``ops`` to ``BASES[base]``. "field" ops hit an integer header field: an extreme, any
    64-bit value, or the field's own value moved by a small delta."""
    data = bytearray(BASES[base])
    for op in ops:
        # scramble: hypothesis favours small integers, which would all hit the magic
        kind, pos = op[0], (op[1] * 2654435761 + 977) % (len(data) + 1)
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << op[2]
        elif kind == "byte" and pos < len(data):
            data[pos] = op[2]
        elif kind == "field":
            off, size = FIELDS[base][op[1] % len(FIELDS[base])]
            old = int.from_bytes(data[off:off + size], "little")
            v = old + op[2] if -64 <= op[2] <= 64 else op[2]
            data[off:off + size] = (v % (1 << 8 * size)).to_bytes(size, "little")
        elif kind == "int":
            data[pos:pos + op[2]] = (op[3] % (1 << 8 * op[2])).to_bytes(op[2], "little")
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = op[2]
        elif kind == "delete":
            del data[pos:pos + op[2]]
    return bytes(data)


def assert_matches_reader(s: GGUFSummary, path: Path) -> None:
    """The summary agrees with gguf.GGUFReader, field by field and tensor by tensor; raises
    AssertionError (or the reader's own error) where not."""
    r = gguf.GGUFReader(path)
    assert s.version == r.fields["GGUF.version"].contents()
    assert (s.data_offset, s.alignment, s.file_size) == (r.data_offset, r.alignment, r.data.size)
    keys = {k for k in r.fields if not k.startswith("GGUF.")}
    assert keys == set(s.metadata) | set(s.arrays)
    base = r.data.ctypes.data
    for key in keys:
        f = r.fields[key]
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            a = s.arrays[key]
            assert a.length == len(f.data), key
            assert a.type_id == int(f.parts[3][0]), key
            if a.length:  # parts: key length, key, type, element type, length, first element...
                assert a.offset == f.parts[5].ctypes.data - base, key
        else:
            v = f.contents()
            assert s.metadata[key] == v or (v != v and s.metadata[key] != s.metadata[key]), key  # NaN
            assert s.metadata_types[key] == f.types[0], key
    assert len(s.tensors) == len(r.tensors)
    for t, rt in zip(s.tensors, r.tensors):
        assert (t.name, t.type_id, t.type_name) == (rt.name, int(rt.tensor_type), rt.tensor_type.name)
        assert t.shape == tuple(int(d) for d in rt.shape), t.name
        assert (t.offset, t.nbytes, t.n_elements) == (rt.data_offset, rt.n_bytes, rt.n_elements), t.name
        view = np.memmap(path, dtype=np.uint8, mode="r", offset=t.offset, shape=(t.nbytes,))
        assert np.array_equal(view, np.asarray(rt.data).reshape(-1).view(np.uint8)), t.name


@dataclass
class Stats:
    executions: int = 0
    passed: int = 0
    ran: int = 0                # native target: files the engine loaded and evaluated
    rejected: int = 0
    max_ms: float = 0.0
    fields: dict[str, int] = field(default_factory=dict)
    crashes: list[tuple[bytes, str]] = field(default_factory=list)

    def reject(self, key: str) -> None:
        self.rejected += 1
        self.fields[key] = self.fields.get(key, 0) + 1

    def record_crash(self, data: bytes, what: str) -> None:
        if len(self.crashes) < 100:
            self.crashes.append((data, what))


def field_key(e: GGUFError) -> str:
    """The field a rejection names, indices folded ("tensor[i].name"); a mutated key or tensor name
    (not in the valid bases) is counted as one."""
    return re.sub(r"\[\d+\]", "[i]", e.field) if e.field in KNOWN_FIELDS or "[" in e.field \
        else "(a mutated name)"


def run_one(data: bytes, path: Path, stats: Stats) -> None:
    """Check one input; a crash is any exception but GGUFError, a slow check, or a passed file the
    reader refuses or disagrees with."""
    path.write_bytes(data)
    stats.executions += 1
    t0 = time.perf_counter()
    try:
        summary = check_gguf(path)
    except GGUFError as e:
        stats.reject(field_key(e))
        summary = None
    except Exception:
        stats.record_crash(data, "check_gguf raised:\n" + traceback.format_exc())
        return
    ms = (time.perf_counter() - t0) * 1e3
    stats.max_ms = max(stats.max_ms, ms)
    if ms > MAX_SECONDS * 1e3:
        stats.record_crash(data, f"check_gguf took {ms:.0f} ms")
    if summary is not None:
        stats.passed += 1
        try:
            assert_matches_reader(summary, path)
        except Exception:
            stats.record_crash(data, "passed check_gguf, but GGUFReader:\n" + traceback.format_exc())


def run_one_native(data: bytes, path: Path, stats: Stats) -> None:
    """Load one input the way the native backend does and evaluate 8 tokens; a crash is any exception
    but an EdgechatError (check_gguf's rejections are counted as in ``run_one``)."""
    from edgechat.runtime.backends.native import NativeBackend
    from edgechat.runtime.errors import EdgechatError
    from edgechat.runtime.ggufload import read_model
    path.write_bytes(data)
    stats.executions += 1
    stage = "check_gguf"
    try:
        t0 = time.perf_counter()
        try:
            check_gguf(path)
        finally:
            stats.max_ms = max(stats.max_ms, (time.perf_counter() - t0) * 1e3)
        stats.passed += 1
        stage = "read_model"
        mf = read_model(path)
        problem = mf.native_problem()
        if problem:
            raise EdgechatError(problem)
        stage = "the native engine"
        b = NativeBackend(mf, ctx=NATIVE_CTX, sinks=NATIVE_SINKS, threads=1)
        try:
            b.eval([i % b.n_vocab for i in range(8)], all_logits=True)
        finally:
            b.close()
        stats.ran += 1
    except GGUFError as e:
        stats.reject(f"{stage}: {field_key(e)}")
    except EdgechatError as e:
        key = f"{stage}: {type(e).__name__}"
        stats.fields[key] = stats.fields.get(key, 0) + 1
    except Exception:
        stats.record_crash(data, f"{stage} raised:\n" + traceback.format_exc())


def fuzz(seconds: float = float("inf"), master_seed: int | None = None, executions: int | None = None,
         batch: int = 300, target: str = "check") -> Stats:
    """Run hypothesis batches of ``batch`` inputs until ``seconds`` have passed or about
    ``executions`` inputs have run (whole batches). ``target``: "check" (check_gguf against
    GGUFReader) or "native" (the whole native load path, see the module doc)."""
    one, strategy = (run_one, MUTATIONS) if target == "check" else (run_one_native, NATIVE_MUTATIONS)
    stats = Stats()
    rng = random.Random(master_seed)
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as d:
        path = Path(d) / "fuzz.gguf"

        @settings(max_examples=batch, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def run(m):
            one(mutate(*m), path, stats)

        while time.monotonic() < deadline and (executions is None or stats.executions < executions):
            seed(rng.getrandbits(64))(run)()
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--executions", type=int, default=None, help="stop after about this many inputs")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--target", choices=["check", "native"], default="check")
    ap.add_argument("--crashes", type=Path, default=None, help="write crashing inputs here")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    s = fuzz(args.seconds, args.seed, args.executions, target=args.target)
    wall = time.monotonic() - t0
    ran = f", ran in the engine {s.ran}" if args.target == "native" else ""
    print(f"target {args.target}: executions {s.executions} in {wall:.1f} s ({s.executions / wall:.0f}/s); "
          f"passed check_gguf {s.passed}{ran}, rejected {s.rejected}, crashes {len(s.crashes)}; "
          f"slowest check {s.max_ms:.2f} ms")
    print("rejections by field:", dict(sorted(s.fields.items(), key=lambda kv: -kv[1])))
    for i, (data, what) in enumerate(s.crashes[:5]):
        print(f"--- crash {i}: {what}")
    if args.crashes and s.crashes:
        args.crashes.mkdir(parents=True, exist_ok=True)
        for i, (data, what) in enumerate(s.crashes):
            (args.crashes / f"crash-{i}.gguf").write_bytes(data)
            (args.crashes / f"crash-{i}.txt").write_text(what)
    return 1 if s.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
