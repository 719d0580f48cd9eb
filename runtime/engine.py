"""The engine: one loaded model, its sink-ring cache and the conversation that lives in it."""
from __future__ import annotations

import threading
import time
from array import array
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import EdgechatError, UnsupportedModel
from .events import DoneEvent, Stats, TextEvent

BACKENDS = ("auto", "native", "llama.cpp")
# A turn renders only a window of the conversation (the first message, the last cached ones and the
# new ones), so its cost does not grow with the history. That is right for templates that write each
# message on its own (ChatML, Llama 3, Mistral, ...): the window rendering is compared with a whole
# rendering while conversations are this short, and must have matched once before a longer one is
# rendered by window; one mismatch turns the window off for the engine's lifetime.
WINDOW_CHECK_MESSAGES = 24
# memoized tokenizations of template pieces (message contents, scaffolding): a turn renders a window
# of a few messages three times, and the first WINDOW_CHECK_MESSAGES turns render it all
MEMO_PIECES = 4 * WINDOW_CHECK_MESSAGES
MEMO_PIECES_WHOLE = 2048    # ... and when every turn renders the whole conversation (no window)


def default_threads() -> int:
    """Physical cores (hyper-threads share the vector units the kernels saturate)."""
    import psutil
    return max(1, psutil.cpu_count(logical=False) or psutil.cpu_count() or 1)


def choose_backend(requested: str, model_problem: str | None, gpu_layers: int) -> tuple[str, str]:
    """Pick the backend for ``auto`` and say why.

    Args:
        requested: "auto", "native" or "llama.cpp".
        model_problem: why the native backend cannot run the file, or None.
        gpu_layers: layers asked to be offloaded to a GPU (0 = none, -1 = all).

    Returns:
        (backend name, reason)
    """
    if requested not in BACKENDS:
        raise EdgechatError(f"unknown backend '{requested}' (choose from {', '.join(BACKENDS)})")
    if requested == "native":
        if model_problem:
            raise UnsupportedModel(model_problem)
        if gpu_layers:
            raise EdgechatError("--gpu-layers needs --backend llama.cpp (the native backend runs on the CPU)")
        return "native", "asked for with --backend native"
    if requested == "llama.cpp":
        return "llama.cpp", "asked for with --backend llama.cpp"
    if gpu_layers:
        return "llama.cpp", "GPU offload asked (--gpu-layers)"
    if model_problem:
        return "llama.cpp", model_problem
    return "native", "the native engine runs this arch and these tensor types"


class _MemoTokenizer:
    """Memoizes piece tokenization, so re-rendering a long conversation each turn stays cheap."""

    def __init__(self, tok, size: int = MEMO_PIECES):
        self._tok = tok
        self.resize(size)

    def resize(self, size: int) -> None:
        """Start over with room for ``size`` pieces."""
        self.tokenize = lru_cache(maxsize=size)(self._tokenize)

    def _tokenize(self, text: str, special: bool = False) -> tuple[int, ...]:
        return tuple(self._tok.tokenize(text, special=special))

    def __getattr__(self, name):
        return getattr(self._tok, name)


class Engine:
    """A loaded model. Not created directly: use ``edgechat.runtime.load``.

    The conversation lives in the cache: ``chat`` takes the whole message list each turn, finds what
    the cache already holds, rolls back or rebuilds where the list changed, and appends only new tokens.
    """

    def __init__(self, backend, tokenizer, template, info: dict, *, pin_system: bool, sinks: int):
        self._b = backend
        self._tok = tokenizer
        self._tmpl = template
        self.info = info
        self._pin_system = pin_system
        self._sinks = sinks
        self._lock = threading.RLock()
        self._stream = array("i")         # logical tokens the cache represents, in order (4 bytes each)
        self._skip = 0                    # logical tokens skipped by a rebuild (after the sinks)
        self._msgs: list[dict] = []       # messages whose tokens are in the stream
        self._ends: list[int] = []        # logical end of each message in the stream
        self._spans: list[tuple[int, int]] = []
        self._window_checked = False      # a window rendering has matched a whole one
        self._window_ok = True            # no window rendering has ever differed from a whole one

    # ---- the contract ---------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Plain text to ids; special-token strings in ``text`` stay text."""
        return list(self._tok.tokenize(text, special=False))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._tok.detokenize(list(ids))

    def reset(self) -> None:
        """Empty the cache and forget the conversation."""
        with self._lock:
            self._reset(self._sinks)

    def eval(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Append ids to the cache under the sink policy.

        Returns:
            float32 logits, shape (len(ids), vocab) with ``all_logits``, else (vocab,) for the last id.
        """
        with self._lock:
            self._msgs, self._ends = [], []
            return self._feed(list(ids), all_logits)

    def cache_info(self) -> dict:
        """capacity, used, sinks, evicted, bytes, n_past, window_start (logical index)."""
        with self._lock:
            info = dict(self._b.cache_info())
            info["evicted"] += self._skip
            info["window_start"] = self._window_start(info)
            return info

    def message_spans(self) -> list[tuple[int, int]]:
        """Logical token range of each message of the last ``chat`` call (the reply last)."""
        return list(self._spans)

    def close(self) -> None:
        with self._lock:
            if self._b is not None:
                self._b.close()
                self._b = None
            close = getattr(self._tok, "close", None)
            if close:
                close()

    # ---- cache bookkeeping ----------------------------------------------------------------------

    def _reset(self, sinks: int) -> None:
        self._b.reset(sinks)
        self._stream, self._skip, self._msgs, self._ends = array("i"), 0, [], []

    def _window_start(self, info: dict) -> int:
        n_backend = info["n_past"]
        first = max(info["sinks"], n_backend - (info["capacity"] - info["sinks"]))
        return min(first, n_backend) + self._skip

    def _feed(self, ids: list[int], all_logits: bool = False) -> np.ndarray | None:
        if not ids:
            return None
        out = self._b.eval(ids, all_logits)
        self._stream.extend(ids)
        return out

    def _rollback(self, n: int) -> int:
        """Make the cache represent stream[:n]; returns tokens re-fed for a rebuild (0 if none)."""
        if n >= len(self._stream):
            return 0
        sinks = self._b.cache_info()["sinks"]
        if n >= sinks + self._skip and self._b.truncate(n - self._skip):
            del self._stream[n:]
            return 0
        # the ring evicted past n: rebuild from the sinks and the tail that fits the window
        keep = self._stream[:n]
        self._b.reset(sinks)
        window = self._b.n_ctx - sinks
        tail_start = max(sinks, n - window // 2)      # leave half the window for what comes next
        refeed = keep[:sinks] + keep[tail_start:]
        if refeed:
            self._b.eval(refeed)
        self._stream, self._skip = keep, tail_start - sinks
        return len(refeed)

    def _system_sinks(self, messages: list[dict]) -> int:
        """--pin-system: the sink region is BOS + the whole system prompt."""
        if not messages or messages[0].get("role") != "system":
            return self._sinks
        n = len(self._tmpl.render_ids(messages[:1], add_generation_prompt=False))
        return max(1, min(n, self._b.n_ctx // 2))

    # ---- chat -----------------------------------------------------------------------------------

    def _target(self, messages: list[dict]) -> tuple[int, list[int], list[int]]:
        """What the cache should hold for ``messages`` + generation prompt: the cached stream's first
        ``base`` tokens (the leading messages reused as fed: their exact tokens, e.g. sampled replies)
        then ``suffix``; and the message ends. The stream's part is not copied: it grows with the
        conversation, and a copy each turn would cost time and memory in proportion to it."""
        k = 0
        while k < min(len(messages), len(self._msgs)) and messages[k] == self._msgs[k]:
            k += 1
        if k:
            new = self._new_ids(messages, k)
            if new is not None:
                base = self._ends[k - 1]
                suffix, rel_ends = new
                return base, suffix, self._ends[:k] + [base + e for e in rel_ends]
        full = self._tmpl.render_ids(messages, add_generation_prompt=True)
        ends, end = [], 0
        for i in range(len(messages)):      # message by message, by window where it is known to be right
            new = self._new_ids(messages[:i + 1], i) if i and self._window_ok else None
            if new is None:
                end = len(self._tmpl.render_ids(messages[:i + 1], add_generation_prompt=False))
            else:
                end += new[1][0]
            ends.append(end)
        return 0, list(full), ends

    @staticmethod
    def _view_start(k: int) -> int:
        """First message after messages[0] in the window for new messages from k on: one cached message
        before them at least, and an odd index, so each message keeps its index's parity (templates
        that check user/assistant alternation)."""
        j = k - 1 if (k - 1) % 2 == 1 else k - 2
        return max(j, 1)

    def _by_window(self, n_messages: int) -> bool:
        """Render a conversation of this length by window (see WINDOW_CHECK_MESSAGES)?"""
        return self._window_checked and self._window_ok and n_messages > WINDOW_CHECK_MESSAGES

    def _rendered_suffix(self, msgs: list[dict], k: int) -> tuple[list[int], list[int]] | None:
        """ids that ``msgs[k:]`` + generation prompt add after ``msgs[:k]``, and where each new message
        ends (relative); None if the rendering of msgs[:k] is not a token prefix of the whole."""
        r = self._tmpl.render_ids
        prefix = r(msgs[:k], add_generation_prompt=False)
        full = r(msgs, add_generation_prompt=True)
        if list(full[:len(prefix)]) != list(prefix):
            return None
        ends = [len(r(msgs[:i + 1], add_generation_prompt=False)) - len(prefix) for i in range(k, len(msgs))]
        return list(full[len(prefix):]), ends

    def _new_ids(self, messages: list[dict], k: int) -> tuple[list[int], list[int]] | None:
        """``_rendered_suffix`` of the whole conversation, computed on a window of it once that is
        known to give the same (see WINDOW_CHECK_MESSAGES)."""
        j = self._view_start(k)
        if j <= 1 or not self._window_ok:
            return self._rendered_suffix(messages, k)
        view = messages[:1] + messages[j:]
        windowed = self._rendered_suffix(view, k - j + 1)
        if self._by_window(len(messages)):
            return windowed
        whole = self._rendered_suffix(messages, k)
        if windowed == whole:
            self._window_checked = True
        else:
            self._window_ok = False
            self._tok.resize(MEMO_PIECES_WHOLE)
        return whole

    def _closing_ids(self, messages: list[dict], reply: str) -> list[int]:
        """Scaffolding the template puts after an assistant message (e.g. <|im_end|> and a newline)."""
        if self._by_window(len(messages)):
            messages = messages[:1] + messages[self._view_start(len(messages)):]
        sentinel = "\u2063edgechat-reply-end\u2063"
        text = self._tmpl.render_text(messages + [{"role": "assistant", "content": sentinel}],
                                      add_generation_prompt=False)
        tail = text.split(sentinel, 1)[1] if sentinel in text else ""
        return list(self._tok.tokenize(tail, special=True)) if tail else []

    def chat(self, messages: list[dict], *, max_tokens: int = 512, cancel: threading.Event | None = None,
             **sampling) -> Iterator[TextEvent | DoneEvent]:
        """Generate the assistant's reply to a conversation, streaming text as it comes.

        Args:
            messages: the whole conversation: dicts with ``role`` and ``content``.
            max_tokens: reply length limit.
            cancel: set it to stop within one token; the partial reply is kept.
            **sampling: temp, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed.

        Yields:
            TextEvent for each piece of text, then one DoneEvent with stats and cache info.
        """
        from .sampler import make_sampler
        from .tokenizer import IncrementalDecoder
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        with self._lock:
            t_start = time.perf_counter()
            stats = Stats(load_s=self.info.get("load_s", 0.0))
            if self._pin_system and not self._stream:
                self._reset(self._system_sinks(messages))
            base, suffix, ends = self._target(messages)
            stream, common = self._stream, base
            limit = min(base + len(suffix), len(stream))
            while common < limit and suffix[common - base] == stream[common]:
                common += 1
            # the pinned system prompt changed (an edit past it, even in evicted history, is a rollback)
            if self._pin_system and common < self._b.cache_info()["sinks"]:
                self._reset(self._system_sinks(messages))
                common = 0
            # the target's last token, for when it is all cached: its logits are needed, so it is re-fed
            last = suffix[-1:] or list(stream[base - 1:base])
            stats.rebuild_tokens = self._rollback(common)
            new = suffix[common - base:] if common >= base else list(stream[common:base]) + suffix
            if not new:
                self._rollback(base + len(suffix) - 1)
                new = last
            self._msgs, self._ends = messages, ends
            logits = self._feed(new)
            stats.prompt_tokens = len(new)
            stats.prefill_s = time.perf_counter() - t_start
            sampler = make_sampler(**sampling)
            decoder = IncrementalDecoder(self._tok)
            reply_start = len(self._stream)
            self._spans = [(ends[i - 1] if i else 0, e) for i, e in enumerate(ends)]
            eot = self._tok.eot_ids
            text, finish, t_first = [], "length", None
            for _ in range(max_tokens):
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                tok = sampler.sample(logits, self._stream)
                if tok in eot:
                    finish = "stop"
                    break
                piece = decoder.feed(tok)
                if t_first is None:
                    t_first = time.perf_counter()
                    stats.ttft_s = t_first - t_start
                logits = self._feed([tok])
                stats.completion_tokens += 1
                self._spans[len(ends):] = [(reply_start, len(self._stream))]
                if piece:
                    text.append(piece)
                    yield TextEvent(piece, tok)
            tail = decoder.flush()
            if tail:
                text.append(tail)
                yield TextEvent(tail, -1)
            reply = "".join(text)
            t_end = time.perf_counter()
            if t_first is None:
                stats.ttft_s = t_end - t_start
            stats.decode_s = t_end - (t_first or t_end)
            stats.prefill_tps = stats.prompt_tokens / stats.prefill_s if stats.prefill_s > 0 else 0.0
            stats.decode_tps = (stats.completion_tokens - 1) / stats.decode_s if stats.decode_s > 0 else 0.0
            self._feed(self._closing_ids(messages, reply))
            self._msgs = messages + [{"role": "assistant", "content": reply}]
            self._ends = ends + [len(self._stream)]
            self._spans = [(self._ends[i - 1] if i else 0, e) for i, e in enumerate(self._ends)]
            yield DoneEvent(reply, finish, stats, self.cache_info())


def load(model=None, *, backend: str = "auto", threads: int | None = None, ctx: int = 2048,
         sinks: int = 4, gpu_layers: int = 0, pin_system: bool = False, evict_chunk: int | None = None,
         force: bool = False) -> Engine:
    """Load a model.

    Args:
        model: None for the packaged default, a catalog/local name, or a path to a GGUF file.
        backend: "auto" (native when it runs the file and no GPU offload is asked), "native", "llama.cpp".
        threads: compute threads (default: physical cores).
        ctx: KV cache capacity in tokens (sinks included); allocated once, never grown.
        sinks: pinned attention-sink entries (StreamingLLM).
        gpu_layers: layers to offload (llama.cpp backend); -1 = all.
        pin_system: make the sink region BOS + the whole system prompt.
        evict_chunk: llama.cpp backend: tokens evicted at once when the ring is full.
        force: skip the memory preflight.

    Returns:
        An Engine.
    """
    from ..models.resolve import resolve
    from . import memory
    from .ggufload import read_model
    from .template import ChatTemplate
    from .tokenizer import Tokenizer, quiet_llama_logs
    t0 = time.perf_counter()
    if ctx <= sinks or sinks < 0:
        raise EdgechatError(f"--ctx ({ctx}) must be larger than --sinks ({sinks}), and --sinks >= 0")
    threads = threads or default_threads()
    if threads < 1:
        raise EdgechatError("--threads must be at least 1")
    path = Path(resolve(model))
    mf = read_model(path)
    cfg = mf.config
    est = memory.estimate(path.stat().st_size, cfg["n_layer"], ctx, cfg["n_head_kv"], cfg["head_dim"])
    memory.preflight(est, force=force)
    name, reason = choose_backend(backend, mf.native_problem(), gpu_layers)
    quiet_llama_logs()
    tok = Tokenizer(path)
    if name == "native":
        from .backends.native import NativeBackend
        be = NativeBackend(mf, ctx=ctx, sinks=sinks, threads=threads)
    else:
        from .backends.llama_cpp import LlamaCppBackend
        be = LlamaCppBackend(str(path), ctx=ctx, sinks=sinks, threads=threads, gpu_layers=gpu_layers,
                             evict_chunk=evict_chunk)
    memo = _MemoTokenizer(tok)
    template = ChatTemplate(mf.metadata.get("tokenizer.chat_template"), memo,
                            bos_token=tok.token_text(tok.bos_id), eos_token=tok.token_text(tok.eos_id))
    info = {"backend": name, "reason": reason, "arch": mf.arch, "path": str(path), "name": path.stem,
            "types": mf.types, "threads": threads, "ctx": ctx, "sinks": sinks,
            "isa": getattr(be, "info", {}).get("isa", "llama.cpp"), "gpu_layers": gpu_layers,
            "pin_system": pin_system}
    info.update({k: v for k, v in getattr(be, "info", {}).items() if k not in info})
    info["load_s"] = time.perf_counter() - t0
    return Engine(be, memo, template, info, pin_system=pin_system, sinks=sinks)
