"""A corpus of malformed GGUF files, one per class of check in runtime/gguf_check.py.

Each case is built by a small hand-written GGUF serializer (``Gguf``) from a valid mini file (8-token
vocabulary, one layer, F32 and Q4_0 tensors), changed in one place, and comes with the field that
``check_gguf`` must name and a fragment of its message.

    python scripts/make_bad_ggufs.py [--out DIR]    # write the corpus and check each file
"""
from __future__ import annotations

import argparse
import struct
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "tests" / ".cache" / "bad_ggufs"

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "B",
        U64: "Q", I64: "q", F64: "d"}
T_F32, T_Q4_0 = 0, 2
Q4_0_BLOCK_BYTES = 18   # 32 weights


@dataclass
class Raw:
    """Bytes written as they are, in place of an encoded value (or a whole tensor info)."""

    data: bytes


@dataclass
class Tensor:
    name: str | bytes
    shape: tuple[int, ...]          # GGUF order: shape[0] is the row length
    ttype: int = T_F32
    offset: int | None = None       # relative to the data section; None: next aligned offset
    nbytes: int | None = None       # data bytes written; None: what shape and type need
    n_dims: int | None = None       # None: len(shape)


@dataclass
class Gguf:
    """A GGUF file as parts; ``to_bytes`` lays it out, with overrides for hostile headers."""

    kvs: list[tuple[str | bytes, int, object]] = field(default_factory=list)  # (key, type, value)
    tensors: list[Tensor] = field(default_factory=list)
    magic: bytes = b"GGUF"
    version: int = 3
    endian: str = "<"
    alignment: int = 32             # used for the layout; the file says so only through a kv
    n_kv: int | None = None         # None: len(kvs)
    n_tensors: int | None = None    # None: len(tensors)

    def to_bytes(self) -> bytes:
        header, offsets = self.header()
        data = bytearray()
        for t, off in zip(self.tensors, offsets):
            n = _nbytes(t) if t.nbytes is None else t.nbytes
            if off + n > len(data) and off < 1 << 20:   # far offsets are left unwritten
                data += bytes(off + n - len(data))
                data[off:off + n] = _pattern(n)
        return header + bytes(data)

    def header(self) -> tuple[bytes, list[int]]:
        """The header padded to the alignment (its length is the data offset), and each tensor's
        offset relative to the data section."""
        e = self.endian
        out = bytearray(self.magic)
        out += struct.pack(f"{e}IQQ", self.version,
                           len(self.tensors) if self.n_tensors is None else self.n_tensors,
                           len(self.kvs) if self.n_kv is None else self.n_kv)
        for key, vtype, value in self.kvs:
            out += _string(key, e) + struct.pack(f"{e}I", vtype) + _value(vtype, value, e)
        offsets, rel = [], 0
        for t in self.tensors:
            off = rel if t.offset is None else t.offset
            offsets.append(off)
            rel = _align(off + (_nbytes(t) if t.nbytes is None else t.nbytes), self.alignment)
            out += _string(t.name, e)
            out += struct.pack(f"{e}I", len(t.shape) if t.n_dims is None else t.n_dims)
            out += struct.pack(f"{e}{len(t.shape)}Q", *t.shape)
            out += struct.pack(f"{e}IQ", t.ttype, off)
        out += bytes(_align(len(out), self.alignment) - len(out))
        return bytes(out), offsets


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


def _nbytes(t: Tensor) -> int:
    n = 1
    for d in t.shape:
        n *= d
    return n * 4 if t.ttype == T_F32 else n // 32 * Q4_0_BLOCK_BYTES


def _pattern(n: int) -> bytes:
    """Tensor bytes: small finite floats for F32, harmless scales for Q4_0 (f16 0x3c00 = 1.0)."""
    return (b"\x00\x00\x80\x3c" * (n // 4 + 1))[:n]


def _string(s: str | bytes | Raw, e: str) -> bytes:
    if isinstance(s, Raw):
        return s.data
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(f"{e}Q", len(b)) + b


def _value(vtype: int, value, e: str) -> bytes:
    if isinstance(value, Raw):
        return value.data
    if vtype == STR:
        return _string(value, e)
    if vtype == ARR:
        etype, items = value
        return struct.pack(f"{e}IQ", etype, len(items)) + b"".join(_value(etype, v, e) for v in items)
    return struct.pack(f"{e}{_FMT[vtype]}", value)


VOCAB = ["<unk>", "<s>", "</s>", "a", "b", "c", "ab", "bc"]


def mini() -> Gguf:
    """The valid base: llama, 1 layer, n_embd 32, 8 tokens; F32 norms/embeddings and a Q4_0 matrix."""
    kvs = [
        ("general.architecture", STR, "llama"),
        ("general.name", STR, "mini"),
        ("general.alignment", U32, 32),
        ("llama.block_count", U32, 1),
        ("llama.embedding_length", U32, 32),
        ("llama.rope.freq_base", F32, 10000.0),
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.tokens", ARR, (STR, VOCAB)),
        ("tokenizer.ggml.scores", ARR, (F32, [0.0] * len(VOCAB))),
        ("tokenizer.ggml.token_type", ARR, (I32, [1] * len(VOCAB))),
        ("tokenizer.ggml.merges", ARR, (STR, ["a b", "b c"])),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.add_bos_token", BOOL, 1),
        ("tokenizer.chat_template", STR, "{% for m in messages %}{{ m['content'] }}{% endfor %}"),
    ]
    tensors = [
        Tensor("token_embd.weight", (32, 8)),
        Tensor("blk.0.attn_norm.weight", (32,)),
        Tensor("blk.0.attn_q.weight", (32, 32), T_Q4_0),
        Tensor("output_norm.weight", (32,)),
    ]
    return Gguf(kvs, tensors)


def _set_kv(g: Gguf, key: str, vtype: int, value) -> Gguf:
    """A copy of ``g`` with ``key`` set (replaced in place, or appended)."""
    kvs = [kv for kv in g.kvs]
    for i, (k, _, _) in enumerate(kvs):
        if k == key:
            kvs[i] = (key, vtype, value)
            return replace(g, kvs=kvs)
    return replace(g, kvs=kvs + [(key, vtype, value)])


def _drop_kv(g: Gguf, key: str) -> Gguf:
    return replace(g, kvs=[kv for kv in g.kvs if kv[0] != key])


def _set_tensor(g: Gguf, i: int, **changes) -> Gguf:
    ts = list(g.tensors)
    ts[i] = replace(ts[i], **changes)
    return replace(g, tensors=ts)


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    field: str          # what GGUFError.field must be
    fragment: str       # a piece of the message


def cases() -> list[Case]:
    """Every malformed file: one case per check (a few checks have two)."""
    g = mini()
    good = g.to_bytes()
    q = "blk.0.attn_q.weight"
    two_layers = replace(g, tensors=g.tensors + [Tensor("blk.1.attn_norm.weight", (32,))])
    c = [
        Case("empty", b"", "header", "shorter than a GGUF header"),
        Case("truncated_header", good[:20], "header", "shorter than a GGUF header"),
        Case("bad_magic", b"GGML" + good[4:], "magic", "not a GGUF file"),
        Case("big_endian", replace(g, endian=">").to_bytes(), "endianness", "big-endian"),
        Case("version_1", replace(g, version=1).to_bytes(), "version", "version 1"),
        Case("version_4", replace(g, version=4).to_bytes(), "version", "version 4"),
        Case("huge_tensor_count", replace(g, n_tensors=1 << 63).to_bytes(), "tensor_count", "cannot fit"),
        Case("huge_kv_count", replace(g, n_kv=(1 << 64) - 1).to_bytes(), "kv_count", "cannot fit"),
        Case("kv_count_past_end", replace(g, tensors=[], n_kv=len(g.kvs) + 1, alignment=1).to_bytes(),
             f"kv[{len(g.kvs)}].key", "left"),
        Case("huge_key_length", replace(g, kvs=[(Raw(struct.pack("<Q", 1 << 40)), U32, 0)] + g.kvs)
             .to_bytes(), "kv[0].key", "length"),
        Case("huge_string_length",
             _set_kv(g, "general.name", STR, Raw(struct.pack("<Q", 1 << 62) + b"mini")).to_bytes(),
             "general.name", "length"),
        Case("string_past_end",
             _set_kv(g, "general.name", STR, Raw(struct.pack("<Q", len(good)) + b"mini")).to_bytes(),
             "general.name", "left"),
        Case("array_2e40_elements",
             _set_kv(g, "tokenizer.ggml.scores", ARR, Raw(struct.pack("<IQ", F32, 1 << 40))).to_bytes(),
             "tokenizer.ggml.scores", "exceeds the limit"),
        Case("array_past_end",
             _set_kv(g, "tokenizer.ggml.scores", ARR, Raw(struct.pack("<IQ", F32, 1 << 20))).to_bytes(),
             "tokenizer.ggml.scores", "left"),
        Case("string_array_element_past_end",
             _set_kv(g, "tokenizer.ggml.merges", ARR,
                     Raw(struct.pack("<IQQ", STR, 2, 3) + b"a b" + struct.pack("<Q", 1 << 50))).to_bytes(),
             "tokenizer.ggml.merges", "past the end"),
        Case("unknown_value_type", _set_kv(g, "general.name", 13, Raw(b"\0" * 8)).to_bytes(),
             "general.name", "unknown value type 13"),
        Case("unknown_array_type",
             _set_kv(g, "general.tags", ARR, Raw(struct.pack("<IQ", 99, 1) + b"\0" * 8)).to_bytes(),
             "general.tags", "unknown array element type"),
        Case("nested_array", _set_kv(g, "general.tags", ARR, (ARR, [(U8, [1])])).to_bytes(),
             "general.tags", "nested"),
        Case("bool_not_0_or_1", _set_kv(g, "tokenizer.ggml.add_bos_token", BOOL, 7).to_bytes(),
             "tokenizer.ggml.add_bos_token", "neither 0 nor 1"),
        Case("empty_key", replace(g, kvs=[("", U32, 0)] + g.kvs).to_bytes(), "kv[0].key", "empty"),
        Case("key_with_escape", replace(g, kvs=[("x\x1b[2J", U32, 0)] + g.kvs).to_bytes(), "kv[0].key",
             "unprintable"),
        Case("tensor_name_with_newline", _set_tensor(g, 3, name="out\nput").to_bytes(), "tensor[3].name",
             "printable"),
        Case("architecture_not_a_name", _set_kv(g, "general.architecture", STR, "llama\x1b[31m").to_bytes(),
             "general.architecture", "not an architecture name"),
        Case("key_not_utf8", replace(g, kvs=[(b"gen\xff", U32, 0)] + g.kvs).to_bytes(), "kv[0].key",
             "UTF-8"),
        Case("reserved_key", replace(g, kvs=g.kvs + [("GGUF.kv_count", U64, 1)]).to_bytes(),
             "GGUF.kv_count", "reserved"),
        Case("duplicate_key", replace(g, kvs=g.kvs + [("general.name", STR, "again")]).to_bytes(),
             "general.name", "duplicate key"),
        Case("string_value_not_utf8", _set_kv(g, "general.name", STR, b"\xc3\x28").to_bytes(),
             "general.name", "UTF-8"),
        Case("missing_architecture", _drop_kv(g, "general.architecture").to_bytes(),
             "general.architecture", "missing"),
        Case("alignment_not_power_of_two", _set_kv(g, "general.alignment", U32, 48).to_bytes(),
             "general.alignment", "power of two"),
        Case("alignment_zero", _set_kv(g, "general.alignment", U32, 0).to_bytes(),
             "general.alignment", "power of two"),
        Case("alignment_wrong_type", _set_kv(g, "general.alignment", U64, 32).to_bytes(),
             "general.alignment", "uint32"),
        Case("duplicate_tensor", _set_tensor(g, 3, name="token_embd.weight").to_bytes(),
             "token_embd.weight", "duplicate tensor name"),
        Case("tensor_name_too_long", _set_tensor(g, 3, name="x" * 64).to_bytes(), "tensor[3].name",
             "1..63"),
        Case("tensor_name_not_utf8", _set_tensor(g, 3, name=b"out\xfe").to_bytes(), "tensor[3].name",
             "UTF-8"),
        Case("five_dims", _set_tensor(g, 1, shape=(32, 1, 1, 1, 1)).to_bytes(),
             "blk.0.attn_norm.weight", "5 dimensions"),
        Case("zero_dims", _set_tensor(g, 1, shape=(), n_dims=0).to_bytes(),
             "blk.0.attn_norm.weight", "0 dimensions"),
        Case("huge_n_dims", _set_tensor(g, 1, n_dims=1 << 31).to_bytes(),
             "blk.0.attn_norm.weight", "dimensions"),
        Case("zero_dim", _set_tensor(g, 0, shape=(32, 0)).to_bytes(), "token_embd.weight",
             "zero dimension"),
        Case("overflow_shape", _set_tensor(g, 0, shape=(1 << 32, 1 << 32, 1 << 32), nbytes=64).to_bytes(),
             "token_embd.weight", "overflows"),
        Case("unknown_tensor_type", _set_tensor(g, 1, ttype=1000).to_bytes(), "blk.0.attn_norm.weight",
             "unknown tensor type 1000"),
        Case("removed_tensor_type", _set_tensor(g, 1, ttype=4).to_bytes(), "blk.0.attn_norm.weight",
             "unknown tensor type 4"),
        Case("row_not_multiple_of_block", _set_tensor(g, 2, shape=(48, 32)).to_bytes(), q,
             "not a multiple of the Q4_0 block size"),
        Case("misaligned_offset", _set_tensor(g, 3, offset=16 + 1024 + 128 + 576).to_bytes(),
             "output_norm.weight", "not a multiple of the alignment"),
        Case("offset_past_end", _set_tensor(g, 3, offset=1 << 40).to_bytes(), "output_norm.weight",
             "past the end"),
        Case("huge_byte_size", _set_tensor(g, 0, shape=(1 << 20, 1 << 20, 1 << 20), nbytes=64).to_bytes(),
             "token_embd.weight", "data truncated"),
        Case("overlapping_tensors", _set_tensor(g, 3, offset=1024).to_bytes(), "output_norm.weight",
             "overlaps blk.0.attn_norm.weight"),
        Case("truncated_data", good[:-8], "output_norm.weight", "data truncated"),
        Case("truncated_in_kvs", good[:_tensor_infos_start(g) - 10], "tokenizer.chat_template", "left"),
        Case("truncated_in_tensor_infos", good[:_tensor_infos_start(g) + 30], "token_embd.weight", "left"),
        Case("tokenizer_lengths_differ",
             _set_kv(g, "tokenizer.ggml.scores", ARR, (F32, [0.0] * 7)).to_bytes(),
             "tokenizer.ggml.scores", "7 entries"),
        Case("token_type_wrong_type",
             _set_kv(g, "tokenizer.ggml.token_type", ARR, (U8, [1] * 8)).to_bytes(),
             "tokenizer.ggml.token_type", "element type"),
        Case("tokens_not_array", _set_kv(g, "tokenizer.ggml.tokens", STR, "abc").to_bytes(),
             "tokenizer.ggml.tokens", "must be an array"),
        Case("bos_outside_vocab", _set_kv(g, "tokenizer.ggml.bos_token_id", U32, 8).to_bytes(),
             "tokenizer.ggml.bos_token_id", "outside the vocabulary"),
        Case("eos_negative", _set_kv(g, "tokenizer.ggml.eos_token_id", I32, -1).to_bytes(),
             "tokenizer.ggml.eos_token_id", "outside the vocabulary"),
        Case("token_id_float", _set_kv(g, "tokenizer.ggml.eot_token_id", F32, 1.0).to_bytes(),
             "tokenizer.ggml.eot_token_id", "not an integer"),
        Case("block_count_absurd", _set_kv(g, "llama.block_count", U32, 100000).to_bytes(),
             "llama.block_count", "100000 layers"),
        Case("block_count_zero", _set_kv(g, "llama.block_count", U32, 0).to_bytes(),
             "llama.block_count", "0 layers"),
        Case("block_count_missing", _drop_kv(g, "llama.block_count").to_bytes(), "llama.block_count",
             "missing"),
        Case("tensor_beyond_block_count", two_layers.to_bytes(), "llama.block_count", "blk.1"),
        Case("layer_missing", _set_kv(two_layers, "llama.block_count", U32, 3).to_bytes(),
             "llama.block_count", "no tensors for blk.2"),
    ]
    return c


def _tensor_infos_start(g: Gguf) -> int:
    """Where the tensor infos begin: the end of the kvs (n_tensors is fixed size, so 0 does)."""
    return len(replace(g, tensors=[], alignment=1).to_bytes())


def write_corpus(out_dir: Path | str = CACHE) -> list[tuple[Path, Case]]:
    """Write each case to ``out_dir/NAME.gguf``; returns (path, case) pairs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for case in cases():
        p = out / f"{case.name}.gguf"
        p.write_bytes(case.data)
        written.append((p, case))
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=CACHE)
    args = ap.parse_args(argv)
    import time

    from edgechat.runtime.errors import GGUFError
    from edgechat.runtime.gguf_check import check_gguf
    bad = 0
    for path, case in write_corpus(args.out):
        t0 = time.perf_counter()
        try:
            check_gguf(path)
            got = "PASSED (should have failed)"
        except GGUFError as e:
            got = str(e)
            ok = e.field == case.field and case.fragment in got
            got = ("ok   " if ok else "WRONG ") + got
        ms = (time.perf_counter() - t0) * 1e3
        bad += not got.startswith("ok")
        print(f"{case.name:32s} {ms:6.2f} ms  {got}")
    print(f"{len(cases())} cases, {bad} wrong")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
