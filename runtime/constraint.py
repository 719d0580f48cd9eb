"""Structured output: a token mask from llguidance (JSON schema, regex, Lark grammar) behind the sampler.

One ``LLTokenizer`` per vocab is built from our own tokenizer (every token's bytes, control tokens as
specials, the end-of-turn ids as EOS), so both backends share it. ``compile_constraint`` turns a
request (``Format``) into a grammar and a matcher, bounded in size, fuel and time; the first compile of
a grammar is cached, later requests copy the compiled matcher.

A ``Constraint`` is a step of the sampler chain (``Sampler.constraint``): ``apply`` masks the logits
before the usual filters and the draw, ``consume`` tells the matcher the sampled token. After each
``consume`` the next mask is computed on a worker thread (llguidance and our extension both release
the GIL), so it overlaps the forward pass of the token just sampled. Tokens the grammar forces
(``forced``) are handed to the generate loop, which feeds them with the sampled token as one batch.
``rollback`` follows the cache when speculative drafts are rejected.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np

from .errors import EdgechatError

MAX_SOURCE_BYTES = 256 * 1024    # a schema / grammar / regex longer than this is refused before compiling
COMPILE_TIMEOUT_S = 5.0          # wall-clock bound on one compile (the fuel limits below usually stop it first)
LEXER_FUEL = 2_000_000           # llguidance's initial_lexer_fuel (~50k/ms: about 40 ms of regex building)
MAX_GRAMMAR_SIZE = 300_000       # grammar symbols (llguidance's default is 500k)
FF_MAX = 15                      # forced tokens fed with the sampled one: a batch of 16, the verify batch
                                 # whose logits equal one-token decodes bit for bit (native engine)
CACHE_GRAMMARS = 64              # compiled matchers kept (a client resends the same schema)
FORMATS = ("json_schema", "json_object", "regex", "lark", "gbnf")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_tokenizers: dict[tuple, object] = {}
_compiled: "OrderedDict[tuple, object]" = OrderedDict()


class ConstraintError(EdgechatError):
    """A schema, regex or grammar that cannot be compiled, or that is too large; one line, names it."""

    exit_code = 2

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Format:
    """What the reply must look like.

    Args:
        kind: "json_schema" (``source`` a schema: dict or JSON text), "json_object" (any JSON object),
            "regex", "lark" (llguidance's Lark syntax) or "gbnf" (llama.cpp's GBNF, converted to Lark).
        source: the schema, pattern or grammar text ("" for json_object).
        param: where it came from (a server field or a CLI flag), named in errors.
    """

    kind: str
    source: object = ""
    param: str | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="edgechat-mask")
        return _pool


# ---- the tokenizer ------------------------------------------------------------------------------

class _Vocab:
    """What llguidance's ``TokenizerWrapper`` reads: token bytes, specials, EOS, and a tokenize call."""

    def __init__(self, tok):
        n = tok.n_vocab
        self.tokens = []
        self.special_token_ids = []
        for i in range(n):
            if tok.is_control(i):
                self.tokens.append(tok.token_bytes(i, special=True))
                self.special_token_ids.append(i)
            else:
                self.tokens.append(tok.token_bytes(i, special=False))
        self.eos_token_id = tok.eos_id if tok.eos_id >= 0 else min(tok.eot_ids)
        self.bos_token_id = tok.bos_id if tok.bos_id >= 0 else None
        self._tok = tok

    def __call__(self, text) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if getattr(self._tok, "closed", False):    # its owner closed it: a copy of our own from then on
            from .tokenizer import Tokenizer
            self._tok = Tokenizer(self._tok.path)
        return list(self._tok.tokenize(text, special=False))


def lltokenizer(tok):
    """The llguidance tokenizer of a vocab (built once per file: about 0.25 s for 49k tokens).

    Args:
        tok: the engine's tokenizer (``token_bytes``, ``is_control``, ``eot_ids``, ``tokenize``).
    """
    import llguidance as llg
    key = _vocab_key(tok)
    lt = _tokenizers.get(key)
    if lt is None:
        # llguidance calls back into the tokenizer (forced tokens) for as long as it lives: the engine's
        # own, kept alive by the reference (a second llama.cpp vocab costs 12-14 MiB; one closed by its
        # owner is replaced by a copy on the next call)
        vocab = _Vocab(tok)
        eos = sorted({vocab.eos_token_id, *tok.eot_ids})
        wrapper = llg.TokenizerWrapper(vocab)
        lt = llg.LLTokenizer(wrapper, n_vocab=tok.n_vocab, eos_token=eos)
        wrapper.tokens = vocab.tokens = ()    # read once into llguidance's trie: 3 MiB of bytes objects for 49k tokens
        _tokenizers[key] = lt
    return lt


def _vocab_key(tok) -> tuple:
    """The vocab's file (path, size, mtime), or the tokenizer object itself when it has no file."""
    import os
    path = getattr(tok, "path", None)
    if not path:
        return (id(tok), tok.n_vocab)
    st = os.stat(path)
    return (path, st.st_size, st.st_mtime_ns, tok.n_vocab)


# ---- compiling ----------------------------------------------------------------------------------

def _limits():
    import llguidance as llg
    return llg.LLParserLimits(initial_lexer_fuel=LEXER_FUEL, max_grammar_size=MAX_GRAMMAR_SIZE,
                              verbose_errors=False)


def grammar_of(fmt: Format) -> str:
    """The llguidance grammar of a format (not yet checked against a tokenizer).

    JSON comes out compact (no whitespace between tokens: a small model would spend its tokens on
    indentation); unknown schema keywords are errors, not silently ignored.
    """
    import llguidance as llg
    param = fmt.param
    if fmt.kind not in FORMATS:
        raise ConstraintError(f"unknown format '{fmt.kind}' (choose from {', '.join(FORMATS)})", param)
    src = fmt.source
    text = src if isinstance(src, str) else json.dumps(src)
    if len(text.encode("utf-8")) > MAX_SOURCE_BYTES:
        raise ConstraintError(f"the {fmt.kind.replace('_', ' ')} is larger than {MAX_SOURCE_BYTES // 1024} KiB",
                              param)
    if fmt.kind in ("json_schema", "json_object"):
        schema = _schema(text if fmt.kind == "json_schema" else '{"type": "object"}', param)
        opts = {"whitespace_flexible": False, "lenient": False}
        try:
            return llg.LLMatcher.grammar_from_json_schema(schema, defaults=opts)
        except (ValueError, TypeError) as e:
            raise ConstraintError(f"invalid JSON schema: {_line(e)}", param) from None
    if not text.strip():
        raise ConstraintError(f"the {fmt.kind} is empty", param)
    if fmt.kind == "regex":
        return llg.LLMatcher.grammar_from_regex(text)
    if fmt.kind == "gbnf":
        from llguidance.gbnf_to_lark import any_to_lark
        try:
            text = any_to_lark(text)
        except Exception as e:       # the converter raises its own error types and plain ones
            raise ConstraintError(f"GBNF grammar not supported by llguidance's converter: {_line(e)}",
                                  param) from None
    return llg.LLMatcher.grammar_from_lark(text)


def check(fmt: Format) -> None:
    """Check a format without a vocab (before a model is loaded): its JSON, size, schema, regex or grammar.

    Raises:
        ConstraintError: as ``compile_constraint`` would.
    """
    import llguidance as llg
    err = llg.LLMatcher.validate_grammar(grammar_of(fmt), None, limits=_limits())
    if err:
        raise ConstraintError(f"{_what(fmt)}: {_line(err)}", fmt.param)


def _schema(text: str, param) -> dict:
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConstraintError(f"the JSON schema is not valid JSON: {e}", param) from None
    if not isinstance(schema, (dict, bool)):
        raise ConstraintError("a JSON schema must be an object", param)
    return _strict_formats(schema)


_DATE = ("[1-9][0-9]{3}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
         "|02-(?:0[1-9]|1[0-9]|2[0-8]))")
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# formats whose llguidance regex is looser than RFC 3339 / Python's own parsers (a leap second "23:59:60",
# "02-30", an octet "01"): the reply is held to these patterns instead, so what it writes also passes a
# strict validator (jsonschema's format checker)
STRICT_FORMATS = {"date": _DATE, "time": _TIME, "date-time": f"{_DATE}T{_TIME}",
                  "ipv4": f"{_OCTET}(?:\\.{_OCTET}){{3}}"}


def _strict_formats(node):
    """The schema with ``format`` date / time / date-time / ipv4 (and no ``pattern`` of its own) written
    as the strict pattern of ``STRICT_FORMATS``."""
    if isinstance(node, list):
        return [_strict_formats(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict_formats(v) for k, v in node.items()}
    fmt = out.get("format")
    if isinstance(fmt, str) and fmt in STRICT_FORMATS and "pattern" not in out:
        del out["format"]
        out["pattern"] = f"^{STRICT_FORMATS[fmt]}$"
    return out


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def compile_constraint(fmt: Format, tok) -> "Constraint":
    """A fresh constraint for one reply (a cached compile is copied: no new compile).

    Args:
        fmt: what the reply must look like.
        tok: the engine's tokenizer.

    Raises:
        ConstraintError: invalid, unsupported (an unknown schema keyword), too large, or too slow to compile.
    """
    lt = lltokenizer(tok)
    grammar = grammar_of(fmt)
    key = (id(lt), grammar)
    proto = _compiled.get(key)
    if proto is None:
        proto = _compile(grammar, lt, fmt)
        _compiled[key] = proto
        while len(_compiled) > CACHE_GRAMMARS:
            _compiled.popitem(last=False)
    else:
        _compiled.move_to_end(key)
    return Constraint(proto.deep_copy(), tok.n_vocab)


def _compile(grammar: str, lt, fmt: Format):
    import llguidance as llg
    fut = _executor().submit(lambda: llg.LLMatcher(lt, grammar, log_level=0, limits=_limits()))
    try:
        m = fut.result(timeout=COMPILE_TIMEOUT_S)
    except FutureTimeout:
        raise ConstraintError(f"the {fmt.kind.replace('_', ' ')} took over {COMPILE_TIMEOUT_S:g} s to compile",
                              fmt.param) from None
    if m.is_error():
        raise ConstraintError(f"{_what(fmt)}: {_line(m.get_error())}", fmt.param)
    return m


def _what(fmt: Format) -> str:
    return {"json_schema": "unsupported or invalid JSON schema", "json_object": "JSON object",
            "regex": "invalid regex", "lark": "invalid grammar", "gbnf": "invalid grammar"}[fmt.kind]


# ---- one reply's matcher ------------------------------------------------------------------------

class Constraint:
    """One reply's matcher and its next mask (computed ahead, on a worker thread).

    Args:
        matcher: a fresh ``llguidance.LLMatcher``.
        n_vocab: the tokenizer's vocab size (logits may be wider: those extra ids are never allowed).
    """

    def __init__(self, matcher, n_vocab: int):
        self._m = matcher
        self._n = n_vocab
        self._mask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)   # [words]: bit i of word w = id 32w+i
        self._job = None                   # the mask computation in flight
        self._ff: list[int] | None = None  # tokens forced after the last consume, not yet taken
        self._ff_ready = threading.Event()
        self.consumed = 0                  # tokens the matcher holds
        self.mask_s: list[float] = []      # seconds each mask took (bench: p50 / p99)
        self.wait_s: list[float] = []      # seconds the sampler waited for it (what the overlap left)
        self._start(ff=False)

    # -- the worker ----------------------------------------------------------------------------

    def _start(self, ff: bool) -> None:
        self._ff, self._ff_ready = None, threading.Event()
        if not ff:
            self._ff_ready.set()
        self._job, self._job_ff = _executor().submit(self._work, ff), ff

    def _work(self, ff: bool) -> None:
        if ff and self._forced_now():
            return                          # the loop takes them; the mask after them comes next
        t0 = time.perf_counter()
        self._m.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
        self.mask_s.append(time.perf_counter() - t0)

    def _forced_now(self) -> list[int]:
        forced = self._m.compute_ff_tokens() if not self._m.is_stopped() else []
        self._ff = forced
        self._ff_ready.set()
        return forced

    def _wait(self) -> None:
        """The work in flight, done; a job the worker has not started yet (no core was free: the engine's
        threads hold them) runs here at once rather than waiting for the worker to be scheduled."""
        if self._job is not None:
            t0 = time.perf_counter()
            if self._job.cancel():
                self._work(self._job_ff)
            else:
                self._job.result()
            self._job = None
            self.wait_s.append(time.perf_counter() - t0)

    # -- the sampler's calls -------------------------------------------------------------------

    def allowed(self) -> np.ndarray:
        """bool ``[n_vocab]``: the tokens the grammar allows next."""
        self._wait()
        if self._ff:                        # forced tokens not taken: the mask after the last consume
            self._ff = None
            self._work(False)
        self._check()
        bits = np.unpackbits(self._mask.view(np.uint8), bitorder="little", count=self._n)
        return bits.view(bool)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Logits with the disallowed tokens at -inf (a copy).

        Args:
            logits: float32 ``[vocab]``.
        """
        ok = self.allowed()                                   # [n_vocab]
        out = np.full(logits.shape, -np.inf, dtype=np.float32)
        n = min(self._n, logits.shape[0])
        np.copyto(out[:n], logits[:n], where=ok[:n])
        return out

    def consume(self, tok: int) -> None:
        """The sampled token; then the forced tokens and the next mask are computed on the worker."""
        self._wait()
        if not self._m.consume_token(int(tok)):
            raise ConstraintError(f"the constraint refused token {tok}: {_line(self._m.get_error())}")
        self.consumed += 1
        self._start(ff=True)

    def forced(self, limit: int = FF_MAX) -> list[int]:
        """Tokens the grammar forces now (at most ``limit``), consumed: the loop feeds them in one batch."""
        if not self._ff_ready.is_set():
            if self._job.cancel():          # not started (no core free): the forced tokens here,
                self._job = None            # the mask still on the worker, overlapping the forward pass
                if not self._forced_now():
                    self._start(ff=False)
            else:
                self._ff_ready.wait()
        ff = self._ff
        if not ff or limit <= 0:
            return []
        self._wait()
        ff = ff[:min(limit, FF_MAX)]
        if not self._m.consume_tokens(ff):
            raise ConstraintError(f"the constraint refused its own forced tokens: {_line(self._m.get_error())}")
        self.consumed += len(ff)
        self._start(ff=False)
        return ff

    def valid_prefix(self, tokens: list[int]) -> int:
        """How many of ``tokens`` (drafts) the grammar accepts from here; the matcher is not moved."""
        self._wait()
        return int(self._m.validate_tokens([int(t) for t in tokens])) if tokens else 0

    def rollback(self, n: int) -> None:
        """Forget the last ``n`` consumed tokens (rejected drafts, a cache rolled back)."""
        if n <= 0:
            return
        self._wait()
        if not self._m.rollback(n):
            raise ConstraintError(f"the constraint could not roll back {n} tokens")
        self.consumed -= n
        self._start(ff=False)

    # -- state -----------------------------------------------------------------------------------

    def is_stopped(self) -> bool:
        """The grammar is complete: only an end-of-turn token is allowed next."""
        self._wait()
        return self._m.is_stopped()

    def _check(self) -> None:
        if self._m.is_error():
            raise ConstraintError(f"constraint error: {_line(self._m.get_error())}")

    def close(self) -> None:
        """Wait for the work in flight (the matcher is then free to drop)."""
        try:
            self._wait()
        except Exception:
            pass
