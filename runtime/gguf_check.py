"""Bounded GGUF pre-check: validate a file's header before the gguf package or llama.cpp reads it.

``check_gguf(path)`` parses the header with ``struct`` from a read-only mmap. It trusts no count or
length in the file: each one is checked against the bytes left before anything is read or skipped,
array elements are skipped without building Python objects, and tensor data is never touched. On any
problem it raises ``GGUFError(field, message)``, ``field`` naming the header part, metadata key or
tensor that is wrong. On success it returns a ``GGUFSummary`` that a loader can use with numpy memmap
views: scalar metadata, where each array lies, and each tensor's type, shape, offset and size.

Shapes are in GGUF (ggml) order: ``shape[0]`` is the row length (ne0), the fastest-varying dimension.
"""
from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass, field

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from .errors import GGUFError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4                    # GGML_MAX_DIMS
MAX_TENSOR_NAME = 63            # GGML_MAX_NAME (64) less the terminating NUL
MAX_KEY_LEN = 65535
MAX_STRING_VALUE = 16 << 20     # a scalar string (chat templates are tens of KiB)
MAX_ARRAY_LEN = 1 << 24         # vocabularies and merge lists are well under this
MAX_TENSORS = 1 << 16
MAX_KVS = 1 << 16
MAX_ELEMENTS = (1 << 63) - 1    # ggml counts elements in int64
MAX_BLOCK_COUNT = 1024

# Smallest encodings, used to bound counts by the bytes left before looping over them.
_MIN_KV_BYTES = 8 + 1 + 4 + 1             # key length, 1-byte key, value type, 1-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8  # name length, 1-byte name, n_dims, 1 dim, type, offset

_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_TI_TAIL = struct.Struct("<IQ").unpack_from  # tensor type, offset

# scalar GGUF value types: (struct format, size)
_SCALARS: dict[int, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<B"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_INT_TYPES = frozenset({GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16,
                        GGUFValueType.INT16, GGUFValueType.UINT32, GGUFValueType.INT32,
                        GGUFValueType.UINT64, GGUFValueType.INT64})

# tokenizer arrays that must all have one entry per token, with the element type llama.cpp reads
_VOCAB_ARRAYS = {
    "tokenizer.ggml.tokens": GGUFValueType.STRING,
    "tokenizer.ggml.scores": GGUFValueType.FLOAT32,
    "tokenizer.ggml.token_type": GGUFValueType.INT32,
}
_RESERVED_KEYS = frozenset({"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"})
_SPECIAL_ID = re.compile(r"tokenizer\.ggml\.\w+_token_id")
_ARCH = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_LAYER = re.compile(r"blk\.(\d+)\.")


@dataclass(frozen=True)
class ArrayInfo:
    """Where a metadata array lies: element type, length and the file offset of its first element."""

    type_id: int
    length: int
    offset: int


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: ``shape`` in GGUF order (shape[0] = row length); ``offset`` is absolute in the file."""

    name: str
    type_id: int
    type_name: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int
    n_elements: int


@dataclass
class GGUFSummary:
    """What ``check_gguf`` found in a valid file."""

    path: str
    version: int
    arch: str
    file_size: int
    alignment: int
    data_offset: int                                           # absolute start of the data section
    metadata: dict[str, object] = field(default_factory=dict)  # scalar keys (strings decoded)
    metadata_types: dict[str, int] = field(default_factory=dict)  # scalar key -> GGUFValueType
    arrays: dict[str, ArrayInfo] = field(default_factory=dict)  # array keys
    tensors: list[TensorInfo] = field(default_factory=list)    # in file order

    @property
    def n_tensors(self) -> int:
        return len(self.tensors)

    @property
    def tensor_types(self) -> frozenset[str]:
        return frozenset(t.type_name for t in self.tensors)

    def tensor(self, name: str) -> TensorInfo | None:
        """The tensor called ``name``, or None."""
        return next((t for t in self.tensors if t.name == name), None)


class _Cursor:
    """Bounds-checked little-endian reads from a buffer."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf, end: int):
        self.buf, self.pos, self.end = buf, 0, end

    def left(self) -> int:
        return self.end - self.pos

    def need(self, n: int, fld: str, what: str) -> None:
        if n > self.end - self.pos:
            raise GGUFError(fld, f"{what} needs {n} bytes at offset {self.pos}, "
                                 f"only {self.end - self.pos} left (truncated file?)")

    def u32(self, fld: str, what: str) -> int:
        self.need(4, fld, what)
        self.pos += 4
        return _U32(self.buf, self.pos - 4)[0]

    def u64(self, fld: str, what: str) -> int:
        self.need(8, fld, what)
        self.pos += 8
        return _U64(self.buf, self.pos - 8)[0]

    def raw_string(self, fld: str, what: str, max_len: int) -> bytes:
        n = self.u64(fld, f"{what} length")
        if n > max_len:
            raise GGUFError(fld, f"{what} length {n} exceeds the limit {max_len}")
        self.need(n, fld, what)
        self.pos += n
        return self.buf[self.pos - n:self.pos]  # mmap slices are bytes

    def text(self, fld: str, what: str, max_len: int) -> str:
        raw = self.raw_string(fld, what, max_len)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(fld, f"{what} is not valid UTF-8") from None


def check_gguf(path: str | os.PathLike) -> GGUFSummary:
    """Validate a GGUF file's header and tensor layout without trusting any count in it.

    Args:
        path: the GGUF file.

    Returns:
        A ``GGUFSummary`` of the file.

    Raises:
        GGUFError: the file is malformed, truncated or of an unsupported kind; ``field`` names the part.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                what = "empty (0 bytes)" if size == 0 else f"{size} bytes"
                raise GGUFError("header", f"file is {what}, shorter than a GGUF header (24)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _parse(mm, size, path)
    except OSError as e:
        raise GGUFError("file", f"cannot read {path}: {e.strerror or e}") from None


def _parse(buf, size: int, path: str) -> GGUFSummary:
    cur = _Cursor(buf, size)
    version, n_tensors, n_kv = _read_preamble(cur)
    s = GGUFSummary(path=path, version=version, arch="", file_size=size,
                    alignment=DEFAULT_ALIGNMENT, data_offset=0)
    for i in range(n_kv):
        _read_kv(cur, i, s)
    s.alignment = _alignment(s)
    raw_tensors = [_read_tensor_info(cur, i) for i in range(n_tensors)]
    s.data_offset = -(-cur.pos // s.alignment) * s.alignment
    s.tensors = _place_tensors(raw_tensors, s)
    s.arch = _arch(s)
    _check_vocab(s)
    _check_layers(s)
    return s


def _read_preamble(cur: _Cursor) -> tuple[int, int, int]:
    magic = bytes(cur.buf[0:4])
    if magic != GGUF_MAGIC:
        raise GGUFError("magic", f"expected b'GGUF', found {magic!r}: not a GGUF file")
    cur.pos = 4
    version = cur.u32("version", "version")
    if version not in SUPPORTED_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in (1, 2, 3):
            raise GGUFError("endianness", "big-endian GGUF files are not supported; "
                                          "convert with gguf-convert-endian")
        raise GGUFError("version", f"version {version} is not supported (need 2 or 3)")
    n_tensors = cur.u64("tensor_count", "tensor count")
    n_kv = cur.u64("kv_count", "metadata key count")
    if n_kv > MAX_KVS or n_kv * _MIN_KV_BYTES > cur.left():
        raise GGUFError("kv_count", f"{n_kv} metadata keys cannot fit in the {cur.left()} bytes left")
    if n_tensors > MAX_TENSORS or n_tensors * _MIN_TENSOR_INFO_BYTES > cur.left():
        raise GGUFError("tensor_count", f"{n_tensors} tensors cannot fit in the {cur.left()} bytes left")
    return version, n_tensors, n_kv


def _read_kv(cur: _Cursor, i: int, s: GGUFSummary) -> None:
    key = cur.text(f"kv[{i}].key", "key", MAX_KEY_LEN)
    if not key or not key.isprintable():  # names end up in error messages on a terminal
        raise GGUFError(f"kv[{i}].key", f"key {ascii(key[:80])} is empty or has unprintable characters")
    fld = key if len(key) <= 80 else key[:77] + "..."
    if key in _RESERVED_KEYS:
        raise GGUFError(fld, "reserved key (gguf.GGUFReader names the header fields so)")
    if key in s.metadata or key in s.arrays:
        raise GGUFError(fld, "duplicate key")
    vtype = cur.u32(fld, "value type")
    if vtype == GGUFValueType.ARRAY:
        s.arrays[key] = _skip_array(cur, fld)
    else:
        s.metadata[key] = _read_scalar(cur, fld, vtype)
        s.metadata_types[key] = vtype


def _read_scalar(cur: _Cursor, key: str, vtype: int):
    if vtype == GGUFValueType.STRING:
        return cur.text(key, "string", MAX_STRING_VALUE)
    st = _SCALARS.get(vtype)
    if st is None:
        raise GGUFError(key, f"unknown value type {vtype}")
    cur.need(st.size, key, "value")
    (v,) = st.unpack_from(cur.buf, cur.pos)
    cur.pos += st.size
    if vtype == GGUFValueType.BOOL:
        if v > 1:
            raise GGUFError(key, f"bool value {v} is neither 0 nor 1")
        v = bool(v)
    return v


def _skip_array(cur: _Cursor, key: str) -> ArrayInfo:
    etype = cur.u32(key, "array element type")
    n = cur.u64(key, "array length")
    if n > MAX_ARRAY_LEN:
        raise GGUFError(key, f"array length {n} exceeds the limit {MAX_ARRAY_LEN}")
    start = cur.pos
    if etype == GGUFValueType.STRING:
        cur.need(8 * n, key, f"array of {n} strings")
        cur.pos = _skip_strings(cur.buf, cur.pos, cur.end, n, key)
    elif etype in _SCALARS:
        cur.need(_SCALARS[etype].size * n, key, f"array of {n} elements")
        cur.pos += _SCALARS[etype].size * n
    elif etype == GGUFValueType.ARRAY:
        raise GGUFError(key, "nested arrays are not supported")
    else:
        raise GGUFError(key, f"unknown array element type {etype}")
    return ArrayInfo(etype, n, start)


def _skip_strings(buf, pos: int, end: int, n: int, key: str) -> int:
    """Skip ``n`` length-prefixed strings from ``pos``; returns the offset after the last one."""
    unpack = _U64
    try:
        for _ in range(n):
            pos += 8 + unpack(buf, pos)[0]
            if pos > end:
                break
    except struct.error:  # a length prefix itself runs past the end
        pos = end + 1
    if pos > end:
        raise GGUFError(key, f"string array of {n} elements runs past the end of the file")
    return pos


def _alignment(s: GGUFSummary) -> int:
    if "general.alignment" in s.arrays:
        raise GGUFError("general.alignment", "must be a uint32, not an array")
    a = s.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if s.metadata_types.get("general.alignment", GGUFValueType.UINT32) != GGUFValueType.UINT32:
        raise GGUFError("general.alignment", "must be a uint32")
    if a <= 0 or a & (a - 1):
        raise GGUFError("general.alignment", f"{a} is not a power of two")
    return a


def _read_tensor_info(cur: _Cursor, i: int) -> tuple[str, tuple[int, ...], int, int]:
    name = cur.text(f"tensor[{i}].name", "tensor name", 1 << 16)
    if not name or len(name.encode()) > MAX_TENSOR_NAME or not name.isprintable():
        raise GGUFError(f"tensor[{i}].name", f"tensor name {ascii(name[:80])} must be 1..{MAX_TENSOR_NAME} "
                                             f"printable bytes")
    n_dims = cur.u32(name, "dimension count")
    if not 1 <= n_dims <= MAX_DIMS:
        raise GGUFError(name, f"{n_dims} dimensions (1..{MAX_DIMS} allowed)")
    cur.need(8 * n_dims + 12, name, "dimensions, type and offset")
    shape = struct.unpack_from(f"<{n_dims}Q", cur.buf, cur.pos)
    ttype, rel = _TI_TAIL(cur.buf, cur.pos + 8 * n_dims)
    cur.pos += 8 * n_dims + 12
    return name, shape, ttype, rel


def _place_tensors(raw, s: GGUFSummary) -> list[TensorInfo]:
    """Check each tensor's shape, type and data range; the ranges must not overlap."""
    out, names = [], set()
    for name, shape, ttype, rel in raw:
        if name in names:
            raise GGUFError(name, "duplicate tensor name")
        names.add(name)
        n_el = _element_count(name, shape)
        tname, nbytes = _tensor_bytes(name, shape, ttype, n_el)
        if rel % s.alignment:
            raise GGUFError(name, f"data offset {rel} is not a multiple of the alignment {s.alignment}")
        start = s.data_offset + rel
        if start >= s.file_size:
            raise GGUFError(name, f"data offset {start} is past the end of the file ({s.file_size} bytes)")
        if start + nbytes > s.file_size:
            raise GGUFError(name, f"data truncated: {nbytes} bytes at offset {start} "
                                  f"run past the end of the file ({s.file_size} bytes)")
        out.append(TensorInfo(name, ttype, tname, shape, start, nbytes, n_el))
    prev = None
    for t in sorted(out, key=lambda t: t.offset):
        if prev is not None and t.offset < prev.offset + prev.nbytes:
            raise GGUFError(t.name, f"data at offset {t.offset} overlaps {prev.name}")
        prev = t
    return out


def _element_count(name: str, shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        if d < 1:
            raise GGUFError(name, f"shape {list(shape)} has a zero dimension")
        n *= d
        if n > MAX_ELEMENTS:
            raise GGUFError(name, f"shape {list(shape)} overflows the element count")
    return n


def _tensor_bytes(name: str, shape: tuple[int, ...], ttype: int, n_el: int) -> tuple[str, int]:
    try:
        qt = GGMLQuantizationType(ttype)
        block, type_size = GGML_QUANT_SIZES[qt]
    except (ValueError, KeyError):
        raise GGUFError(name, f"unknown tensor type {ttype}") from None
    if shape[0] % block:
        raise GGUFError(name, f"row length {shape[0]} is not a multiple of the {qt.name} "
                              f"block size {block}")
    return qt.name, n_el // block * type_size


def _arch(s: GGUFSummary) -> str:
    arch = s.metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise GGUFError("general.architecture", "missing or not a string")
    if not _ARCH.fullmatch(arch):
        raise GGUFError("general.architecture", f"{ascii(arch[:80])} is not an architecture name")
    return arch


def _check_vocab(s: GGUFSummary) -> None:
    n_vocab = None
    for key, etype in _VOCAB_ARRAYS.items():
        if key in s.metadata:
            raise GGUFError(key, "must be an array")
        info = s.arrays.get(key)
        if info is None:
            continue
        if info.type_id != etype:
            raise GGUFError(key, f"element type {info.type_id}, expected {GGUFValueType(etype).name}")
        if n_vocab is None:
            n_vocab = info.length
        elif info.length != n_vocab:
            raise GGUFError(key, f"{info.length} entries but the vocabulary has {n_vocab}")
    for key, v in s.metadata.items():
        if not _SPECIAL_ID.fullmatch(key):
            continue
        if type(v) is not int:
            raise GGUFError(key, f"token id {v!r} is not an integer")
        if n_vocab is not None and not 0 <= v < n_vocab:
            raise GGUFError(key, f"token id {v} is outside the vocabulary (0..{n_vocab - 1})")
    for key in s.arrays:
        if _SPECIAL_ID.fullmatch(key):
            raise GGUFError(key, "a token id must be a scalar")


def _check_layers(s: GGUFSummary) -> None:
    key = f"{s.arch}.block_count"
    if key in s.arrays:
        raise GGUFError(key, "must be an integer, not an array")
    n = s.metadata.get(key)
    if n is not None and (type(n) is not int or not 1 <= n <= MAX_BLOCK_COUNT):
        raise GGUFError(key, f"{n!r} layers (1..{MAX_BLOCK_COUNT} allowed)")
    layers = {int(m.group(1)) for t in s.tensors if (m := _LAYER.match(t.name))}
    if not layers:
        return
    if n is None:
        raise GGUFError(key, "missing, but the file has blk.N tensors")
    if max(layers) >= n:
        raise GGUFError(key, f"{n} layers, but the file has tensors of layer blk.{max(layers)}")
    if len(layers) != n:
        missing = sorted(set(range(n)) - layers)
        raise GGUFError(key, f"{n} layers, but no tensors for blk.{missing[0]} "
                             f"({len(missing)} layers missing)")
