"""llama.cpp backend through llama-cpp-python's low-level API, with the StreamingLLM sink cache.

The cache policy is the one in ``base.Backend`` and it is the oracle the native engine is tested
against: capacity ``ctx`` entries, the first ``sinks`` tokens ever fed pinned at positions 0..S-1, the
window after them. When the cache is full, before a token is added, the oldest ``evict_chunk`` window
entries go (``seq_rm(S, S+k)``) and the rest of the window slides down (``seq_add(S+k, end, -k)``), so
the positions stay 0..used-1 and the next token goes at position ``used``. With ``evict_chunk=1`` this
is exact StreamingLLM; a larger chunk trades a little context for fewer K re-rotations (each
shift re-rotates the whole window once, and rounds the f16 keys once more).

With ``seqs`` > 1 the context holds that many sequences (llama.cpp's ``n_seq_max``, ``ctx`` cells each,
one KV buffer per sequence): ``new_cache`` hands out sequence ids, each a ring of its own under the same
policy (its evictions are ``seq_rm`` / ``seq_add`` on its id), and ``step`` decodes the next tokens of
several of them in one ``llama_decode`` (a ``llama_batch`` with sequence ids), the weights read once.
Unlike the native engine's, llama.cpp's batched logits are not bit for bit those of a solo decode
(tests/test_llama_batch.py bounds the difference).
"""
from __future__ import annotations

import ctypes
import os
import re
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from ..cpu import has_amx, physical_cores
from ..errors import InsufficientMemory, ModelNotFound, UnsupportedModel
from ..info import BackendInfo, CacheInfo, ring_window_start
from ..llama_lib import clear_error, first_error, lib

OWN = 0                      # the sequence of the backend's own cache
MAX_BATCH = 512              # tokens per llama_decode call (n_batch = n_ubatch)
DEFAULT_EVICT_CHUNK = 64     # window entries dropped per eviction unless asked otherwise
GGML_TYPE_F16 = 1            # KV cache element types: f16 (2 bytes) and q8_0 (34 bytes per 32)
GGML_TYPE_Q8_0 = 8
KV_GGML_TYPES = {"f16": GGML_TYPE_F16, "q8_0": GGML_TYPE_Q8_0}
KV_BYTES_PER_ELEM = {"f16": 2.0, "q8_0": 34 / 32}
FLASH_ATTN_ENABLED = 1       # LLAMA_FLASH_ATTN_TYPE_ENABLED: a quantized V cache needs flash attention


def _amx_buffer_type(L) -> bool:
    """True when llama.cpp would put weights in its AMX matmul buffer type: an x86 CPU with AMX tiles
    (Linux) and a llama.cpp built with AMX (its system info says ``AMX_INT8 = 1``; a native build on
    such a CPU is). With llama-cpp-python 0.3.36 every batched decode then dies of a general-protection
    fault in ``ggml_backend_amx_mul_mat`` (ldtilecfg); turning llama.cpp's extra buffer types off avoids
    it. Elsewhere, a llama.cpp built without AMX included (``LLAMA_CPP_LIB_PATH``), they stay on: they
    are the CPU weight repacks (Q4_0, Q4_K, IQ4_NL on AVX2/AVX-512 and NEON) that speed it up."""
    if not has_amx():
        return False
    info = L.llama_print_system_info()
    return b"AMX_INT8 = 1" in (info or b"")


def _gpu_layers(gpu_layers) -> int:
    """``-1`` / ``"all"`` -> every layer (llama.cpp's -1), else a non-negative layer count."""
    if isinstance(gpu_layers, str):
        if gpu_layers.strip().lower() == "all":
            return -1
        gpu_layers = int(gpu_layers)
    if gpu_layers < -1:
        raise ValueError(f"gpu_layers must be -1, 'all' or >= 0, got {gpu_layers}")
    return gpu_layers


class _Memory:
    """Per-sequence KV-cache calls: ``llama_memory_*`` (llama.cpp mid-2025 on) or ``llama_kv_self_*`` before."""

    def __init__(self, L, ctx):
        if hasattr(L, "llama_get_memory"):
            mem = L.llama_get_memory(ctx)
            self._rm, self._add = L.llama_memory_seq_rm, L.llama_memory_seq_add
            self.clear = lambda: L.llama_memory_clear(mem, False)    # cells only, no memset
            self.can_shift = bool(L.llama_memory_can_shift(mem))
        else:
            mem = ctx
            self._rm, self._add = L.llama_kv_self_seq_rm, L.llama_kv_self_seq_add
            self.clear = lambda: L.llama_kv_self_clear(ctx)
            self.can_shift = bool(L.llama_kv_self_can_shift(ctx))
        self._mem = mem

    def rm(self, seq: int, p0: int, p1: int) -> None:
        """Drop positions [p0, p1) of ``seq`` (p1 = -1: to the end)."""
        if not self._rm(self._mem, seq, p0, p1):
            raise RuntimeError(f"llama.cpp could not remove KV positions [{p0}, {p1})")

    def shift(self, seq: int, p0: int, delta: int) -> None:
        """Add ``delta`` to every position >= p0 of ``seq`` (the K re-rotation happens at the next decode)."""
        self._add(self._mem, seq, p0, -1, delta)


class _Seq:
    """One sequence's ring: its id in the context and the policy's counters."""

    def __init__(self, seq: int):
        self.seq = seq
        self.sinks = self.evict_chunk = 0    # set by the backend's reset
        self.used = 0           # entries in the cache; the next token goes at position used
        self.n_past = 0         # tokens fed since reset
        self.evicted = 0        # window entries evicted since reset
        self.last_evict = -1    # n_past when the last eviction happened


class LlamaCppBackend:
    """A GGUF model run by llama.cpp, with the sink-ring cache policy of ``base.Backend``.

    Args:
        path: the GGUF file.
        ctx: cache capacity in entries (tokens).
        sinks: how many of the first tokens ever fed stay pinned.
        threads: CPU threads for decode and prefill; default the physical core count.
        gpu_layers: layers to offload (0 = none, -1 or "all" = every layer); ignored by a CPU-only build.
        evict_chunk: window entries dropped per eviction; 1 = exact StreamingLLM. Default
            ``min(64, window // 8)``; never more than the window ``ctx - sinks``.
        seqs: sequences the context holds (``ctx`` cells each, allocated now): the own cache and
            ``seqs - 1`` more from ``new_cache``, stepped together by ``step``.
    """

    name = "llama.cpp"

    def __init__(self, path, *, ctx: int = 2048, sinks: int = 4, threads: int | None = None,
                 gpu_layers=0, evict_chunk: int | None = None, kv_type: str = "f16", seqs: int = 1):
        self._model = self._ctx = self._batch = None
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelNotFound(f"no such model file: {path}")
        if ctx < 2:
            raise ValueError(f"ctx must be >= 2, got {ctx}")
        if kv_type not in KV_GGML_TYPES:
            raise ValueError(f"unknown kv type '{kv_type}' (f16 or q8_0)")
        if seqs < 1:
            raise ValueError(f"seqs must be >= 1, got {seqs}")
        self._kv_type = kv_type
        L = lib()
        self.n_ctx = ctx
        self.max_caches = seqs
        self._evict_chunk_arg = evict_chunk
        self._n_threads = threads or physical_cores()
        self._gpu_layers = _gpu_layers(gpu_layers)
        self._load_model(L, path)
        self._new_context(L)
        self._new_batch(L)
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self._model))
        self.max_step_tokens = self._n_batch            # tokens of one ``step``, all sequences together
        self._kv_bytes = self._kv_bytes_for(L, ctx)
        self.info = BackendInfo(isa="llama.cpp", threads=self._n_threads, extra={
            "gpu_layers": self._gpu_layers,
            "gpu_offload": bool(L.llama_supports_gpu_offload()),
            "n_batch": self._n_batch,
            "extra_bufts": self._extra_bufts,
            "kv_cells": L.llama_n_ctx(self._ctx) // seqs,   # per sequence: llama.cpp pads; we use the first ctx
            "seqs": seqs,
            "llama_cpp": _version(),
            "build": _build_features(L),
        })
        self._own = self._cur = _Seq(OWN)
        self._free = list(range(seqs - 1, 0, -1))       # sequence ids new_cache hands out (pop: 1 first)
        self.reset(sinks)

    # -- loading ----------------------------------------------------------------------------------

    def _load_model(self, L, path: str) -> None:
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = self._gpu_layers
        self._extra_bufts = not _amx_buffer_type(L)
        mp.use_extra_bufts = self._extra_bufts
        clear_error()
        self._model = L.llama_model_load_from_file(path.encode(), mp)
        if not self._model:
            why = re.sub(r"^(\w+: )+(error loading model: )?", "", first_error()) \
                or "unknown architecture or a damaged file"
            raise UnsupportedModel(f"llama.cpp cannot load {os.path.basename(path)}: {why}")

    def _new_context(self, L) -> None:
        self._n_batch = min(MAX_BATCH, self.n_ctx)
        cp = L.llama_context_default_params()
        cp.n_ctx = self.n_ctx * self.max_caches
        cp.n_batch = cp.n_ubatch = self._n_batch
        cp.n_seq_max = self.max_caches
        if hasattr(cp, "kv_unified"):
            cp.kv_unified = False                   # a KV buffer per sequence: ctx cells each
        cp.n_threads = cp.n_threads_batch = self._n_threads
        cp.type_k = cp.type_v = KV_GGML_TYPES[self._kv_type]
        if self._kv_type != "f16" and hasattr(cp, "flash_attn_type"):
            cp.flash_attn_type = FLASH_ATTN_ENABLED   # llama.cpp refuses a quantized V cache without it
        cp.no_perf = True
        clear_error()
        self._ctx = L.llama_init_from_model(self._model, cp)
        if not self._ctx:
            self.close()
            why = first_error() or ("out of memory?" if self._kv_type == "f16" else
                                    f"it refuses a {self._kv_type} KV cache here")
            raise UnsupportedModel(f"llama.cpp cannot create a context with a {self._kv_type} KV cache: {why}")
        self._mem = _Memory(L, self._ctx)
        if not self._mem.can_shift:
            self.close()
            raise UnsupportedModel(f"llama.cpp cannot shift this model's {self._kv_type} cache, which the sink "
                                   f"cache needs" + (" (try --kv-type f16)" if self._kv_type != "f16" else ""))

    def _new_batch(self, L) -> None:
        n = self._n_batch
        self._batch = L.llama_batch_init(n, 0, 1)
        b = self._batch
        self._tok = np.ctypeslib.as_array(b.token, shape=(n,))        # tok: [n_batch] int32
        self._pos = np.ctypeslib.as_array(b.pos, shape=(n,))          # pos: [n_batch] int32
        self._want = np.ctypeslib.as_array(b.logits, shape=(n,))      # want: [n_batch] int8
        np.ctypeslib.as_array(b.n_seq_id, shape=(n,))[:] = 1
        self._seq_ptrs = [b.seq_id[i] for i in range(n)]      # each token's one sequence id: [0] set per batch

    def _kv_bytes_for(self, L, cells: int) -> int:
        """K and V for ``cells`` entries: n_layer * cells * (k_dim + v_dim) * bytes per element."""
        n_layer = L.llama_model_n_layer(self._model)
        n_head, n_head_kv = L.llama_model_n_head(self._model), L.llama_model_n_head_kv(self._model)
        head = L.llama_model_n_embd(self._model) // max(n_head, 1)
        arch = self._meta(L, "general.architecture") or ""
        k_head = int(self._meta(L, f"{arch}.attention.key_length") or head)
        v_head = int(self._meta(L, f"{arch}.attention.value_length") or head)
        return int(n_layer * cells * n_head_kv * (k_head + v_head) * KV_BYTES_PER_ELEM[self._kv_type])

    def _meta(self, L, key: str) -> str | None:
        buf = ctypes.create_string_buffer(256)
        n = L.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode() if n >= 0 else None

    # -- the caches -----------------------------------------------------------------------------------

    def new_cache(self, sinks: int, kv_type: str = ""):
        """Another sequence of the context, empty, with ``sinks`` pinned entries (its cells were
        allocated with the context: ``seqs``). The KV type is the context's."""
        if kv_type and kv_type != self._kv_type:
            raise ValueError(f"the llama.cpp context's caches are {self._kv_type}, not {kv_type}")
        if not self._free:
            raise InsufficientMemory(f"llama.cpp: all {self.max_caches} sequences of the context are in use "
                                     "(serve's --cache-slots sets how many it holds)")
        c = _Seq(self._free.pop())
        with self._on(c):
            self.reset(sinks)               # its cells emptied (another may have used the id)
        return c

    @contextmanager
    def _on(self, c: _Seq):
        """``c`` the cache the methods work on, for the block (the bound one again after it)."""
        prev, self._cur = self._cur, c
        try:
            yield
        finally:
            self._cur = prev

    def drop_cache(self, cache) -> None:
        """Give a ``new_cache`` sequence back (its cells emptied)."""
        if cache is self._cur:
            self._cur = self._own
        self._mem.rm(cache.seq, -1, -1)
        self._free.append(cache.seq)

    def bind(self, cache) -> None:
        """Make ``cache`` (a ``new_cache`` sequence; None: the own one) the one the methods work on."""
        if cache is not None and not isinstance(cache, _Seq):
            raise ValueError("not a cache of this llama.cpp backend")
        self._cur = self._own if cache is None else cache

    def reset(self, sinks: int | None = None) -> None:
        """Empty the cache; optionally change the number of pinned sink entries."""
        c = self._cur
        if sinks is not None:
            if not 0 <= sinks < self.n_ctx:
                raise ValueError(f"sinks must be in [0, {self.n_ctx - 1}], got {sinks}")
            c.sinks = sinks
            window = self.n_ctx - sinks
            k = self._evict_chunk_arg or min(DEFAULT_EVICT_CHUNK, max(1, window // 8))
            c.evict_chunk = max(1, min(int(k), window))
        if self.max_caches == 1:
            self._mem.clear()
        else:
            self._mem.rm(c.seq, -1, -1)
        c.used = c.n_past = c.evicted = 0
        c.last_evict = -1

    def cache_info(self) -> CacheInfo:
        """The cache now; ``window_start`` moves a chunk at a time, as eviction does."""
        c = self._cur
        return CacheInfo(capacity=self.n_ctx, used=c.used, sinks=c.sinks, evicted=c.evicted,
                         window_start=ring_window_start(c.n_past, c.sinks, c.evicted),
                         bytes=self._kv_bytes, kv_type=self._kv_type, n_past=c.n_past,
                         evict_chunk=c.evict_chunk)

    def truncate(self, n_past: int) -> bool:
        """Roll back to the state after the first ``n_past`` tokens fed since reset.

        Returns False (and changes nothing) when an eviction happened at or after that point, since
        it removed entries that state held.
        """
        c = self._cur
        if not 0 <= n_past <= c.n_past:
            raise ValueError(f"n_past must be in [0, {c.n_past}], got {n_past}")
        if c.last_evict >= n_past:
            return False
        drop = c.n_past - n_past
        if drop:
            self._mem.rm(c.seq, c.used - drop, -1)
            c.used -= drop
            c.n_past = n_past
        return True

    def spec_room(self) -> int:
        """0: no speculation on llama.cpp. Its batched logits differ from its one-token decode's once
        the cache holds a few hundred tokens (max |dlogit| 0.4-0.7 at 600 tokens on the default model,
        0.0 at 50), so a verified draft could change a greedy reply; speculation is native-only."""
        return 0

    def checkpoint(self, n: int) -> None:
        """Nothing to keep (``spec_room`` is 0: no verify batches here)."""
    # -- snapshots: llama_state_get_data / set_data (cells, positions, the last logits) with one
    # sequence; llama_state_seq_get_data / set_data (that sequence's cells) with several

    _COUNTERS = ("used", "n_past", "evicted", "last_evict", "sinks", "evict_chunk")

    def export_state(self) -> dict:
        """llama.cpp's state of the cache as one uint8 array ``blob``, with this backend's counters."""
        L, c = lib(), self._cur
        u8 = ctypes.POINTER(ctypes.c_uint8)
        if self.max_caches == 1:
            n = L.llama_state_get_size(self._ctx)
            blob = np.empty(n, np.uint8)
            got = L.llama_state_get_data(self._ctx, blob.ctypes.data_as(u8), n)
        else:
            n = L.llama_state_seq_get_size(self._ctx, c.seq)
            blob = np.empty(n, np.uint8)
            got = L.llama_state_seq_get_data(self._ctx, blob.ctypes.data_as(u8), n, c.seq)
        state = {k: getattr(c, k) for k in self._COUNTERS}
        return dict(state, blob=blob[:got])

    def import_state(self, state: dict) -> bool:
        """Load ``export_state()``; False (and an empty cache) when llama.cpp does not take it."""
        if any(not isinstance(state.get(k), int) for k in self._COUNTERS):
            return False
        blob = np.ascontiguousarray(state["blob"], dtype=np.uint8)
        L, c = lib(), self._cur
        u8 = ctypes.POINTER(ctypes.c_uint8)
        if self.max_caches == 1:
            self._mem.clear()
            got = L.llama_state_set_data(self._ctx, blob.ctypes.data_as(u8), blob.size)
        else:
            self._mem.rm(c.seq, -1, -1)
            got = L.llama_state_seq_set_data(self._ctx, blob.ctypes.data_as(u8), blob.size, c.seq)
        if got != blob.size or not 0 <= state["used"] <= self.n_ctx or not 0 <= state["sinks"] < self.n_ctx:
            self.reset()
            return False
        for k in self._COUNTERS:
            setattr(c, k, state[k])
        return True

    def _evict(self, c: _Seq) -> None:
        """Drop the oldest ``evict_chunk`` window entries of ``c`` and slide the rest down over them."""
        s, k = c.sinks, c.evict_chunk
        self._mem.rm(c.seq, s, s + k)
        self._mem.shift(c.seq, s + k, -k)
        c.used -= k
        c.evicted += k
        c.last_evict = c.n_past

    # -- eval -----------------------------------------------------------------------------------------

    def _ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            raise ValueError("eval needs at least one token")
        if ids.min() < 0 or ids.max() >= self.n_vocab:
            raise ValueError(f"token id out of range [0, {self.n_vocab})")
        return ids

    def eval(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Append ``ids`` to the cache under the sink policy.

        A batch is split at the batch size and at every eviction point, so it leaves the cache exactly
        as feeding the tokens one by one would.

        Returns:
            float32 logits ``(len(ids), n_vocab)`` if ``all_logits``, else the last token's ``(n_vocab,)``.
        """
        ids = self._ids(ids)
        n, c = len(ids), self._cur
        out = np.empty((n, self.n_vocab) if all_logits else (self.n_vocab,), np.float32)
        i = 0
        while i < n:
            if c.used == self.n_ctx:
                self._evict(c)
            m = min(n - i, self.n_ctx - c.used, self._n_batch)
            rows = out[i:i + m] if all_logits else (out[None] if i + m == n else None)
            self._decode([(c, ids[i:i + m], 0 if rows is None else len(rows))], [rows])
            i += m
        return out

    def step(self, caches: list, tokens: Sequence[int], counts: Sequence[int]) -> np.ndarray:
        """One llama_decode over several sequences (None: the own one): ``counts[i]`` of ``tokens``
        (laid end to end) appended to ``caches[i]``. Returns the logits of each one's last token,
        (len(caches), n_vocab). A sequence whose tokens would cross an eviction point (or that has more
        than a batch) is fed by itself first, as ``eval`` splits it; the rest go in one batch."""
        seqs = [self._own if h is None else h for h in caches]
        if len(set(map(id, seqs))) != len(seqs):
            raise ValueError("step: a cache appears twice")
        if len(counts) != len(seqs) or sum(counts) != len(tokens) or min(counts, default=0) < 1:
            raise ValueError("step: one count (>= 1) per cache, adding up to the tokens")
        ids = self._ids(tokens)
        out = np.empty((len(seqs), self.n_vocab), np.float32)
        parts, rows, at, room = [], [], 0, self._n_batch
        for i, (c, n) in enumerate(zip(seqs, counts)):
            chunk = ids[at:at + n]
            at += n
            if c.used == self.n_ctx and n <= c.evict_chunk:
                self._evict(c)                  # as eval would before the first token
            if c.used + n > self.n_ctx or n > room:
                with self._on(c):
                    out[i] = self.eval(chunk)
                continue
            parts.append((c, chunk, 1))
            rows.append(out[i:i + 1])
            room -= n
        if parts:
            self._decode(parts, rows)
        return out

    def _decode(self, parts: list, rows: list) -> None:
        """One llama_decode of each ``(seq, ids, n_out)`` in ``parts`` at its positions used..; the logits
        of each one's last n_out tokens -> its ``rows`` entry (None when n_out is 0)."""
        L, m = lib(), 0
        wanted = []
        for c, ids, n_out in parts:
            k = len(ids)
            self._tok[m:m + k] = ids
            self._pos[m:m + k] = np.arange(c.used, c.used + k)
            self._want[m:m + k] = 0
            self._want[m + k - n_out:m + k] = 1
            for j in range(m, m + k):
                self._seq_ptrs[j][0] = c.seq
            wanted.append((m + k - n_out, n_out))
            m += k
        self._batch.n_tokens = m
        clear_error()
        rc = L.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc}): {first_error()}")
        for c, ids, _ in parts:
            c.used += len(ids)
            c.n_past += len(ids)
        row_bytes = self.n_vocab * 4
        for (first, n_out), r in zip(wanted, rows):
            for j in range(n_out):
                src = L.llama_get_logits_ith(self._ctx, first + j)
                ctypes.memmove(r[j].ctypes.data, src, row_bytes)

    def close(self) -> None:
        """Free the batch, the context and the model (idempotent)."""
        if self._model is None and self._ctx is None and self._batch is None:
            return
        L = lib()
        if self._batch is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            L.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            L.llama_model_free(self._model)
            self._model = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _build_features(L) -> str:
    """What the loaded llama.cpp was built with, from its system info: the x86 SIMD levels and AMX
    (or NEON/SVE/Metal/CUDA...) that are on, and where the library came from when
    ``LLAMA_CPP_LIB_PATH`` points elsewhere; e.g. "AVX2 AVX512 AVX512_VNNI REPACK"."""
    info = (L.llama_print_system_info() or b"").decode("utf-8", "replace")
    on = [k.strip() for k, v in re.findall(r"([A-Z0-9_ ]+?) = (\w+)", info) if v == "1"]
    keep = [k for k in dict.fromkeys(on) if k not in ("SSE3", "SSSE3", "AVX", "F16C", "FMA", "BMI2")]
    where = os.environ.get("LLAMA_CPP_LIB_PATH")
    return " ".join(keep) + (f" (library from LLAMA_CPP_LIB_PATH={where})" if where else "")


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("llama_cpp_python")
    except Exception:
        return "?"
