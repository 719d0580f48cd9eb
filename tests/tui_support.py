"""Helpers for the TUI tests: CLI-like arguments, a scripted engine (and the real one for the smoke
test), and driving the app with a Pilot.

The scripted engine is the real ``Engine`` (the real tokenizer, chat template, Conversation and cache
bookkeeping) with a fake at the ``generate`` seam: a backend that keeps the native ring's counts but
computes nothing, and replies scripted from the last user message. Pictures and behaviour therefore do
not depend on the kernels' rounding.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from edgechat.models.resolve import resolve
from edgechat.runtime import load
from edgechat.runtime.engine import Engine
from edgechat.runtime.info import BackendInfo, CacheInfo, EngineInfo, ring_window_start

REPLY_TIMEOUT_S = 180
THOUGHT = "The user wants me to think first. I will name the question, then add a paragraph."
FILLER = ("Here is what I know about it. **First**, it is worth a closer look: people have studied it "
          "for a long time. *Second*, there is more to learn, and every answer raises a new question.")


def make_args(**overrides) -> argparse.Namespace:
    """The Namespace app/cli.py passes to run_tui: greedy, short replies unless overridden."""
    args = dict(model=None, backend="auto", threads=None, ctx=2048, sinks=4, pin_system=False,
                gpu_layers=0, system=None, temp=0.0, top_k=None, top_p=None, min_p=None,
                repeat_penalty=None, seed=None, max_tokens=16, verbose=False)
    args.update(overrides)
    return argparse.Namespace(**args)


def load_engine(ctx: int):
    """The real default model (packaged SmolLM2-135M) with a cache of ``ctx`` tokens."""
    return load(resolve(None), ctx=ctx)


def scripted_reply(messages: list[dict]) -> str:
    """The scripted engine's answer: it names the question, then a fixed Markdown paragraph (eight of
    them when the question asks for something long); a question that asks to think gets a
    ``<think>`` block first (``THOUGHT``)."""
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    paragraphs = 8 if "long" in question.lower() else 1
    thought = f"<think>{THOUGHT}</think>" if "think" in question.lower() else ""
    return thought + f"You asked: {question}" + f"\n\n{FILLER}" * paragraphs


class ScriptedBackend:
    """The native ring's bookkeeping (one-token eviction, truncate rules) without a model;
    ``prefill_delay`` seconds per call that feeds more than one token (a chunk of a prompt)."""

    name = "scripted"
    prefill_delay = 0.0

    def __init__(self, n_vocab: int, ctx: int, sinks: int):
        self.n_vocab, self.n_ctx = n_vocab, ctx
        self.info = BackendInfo(isa="scripted", threads=1)
        self.reset(sinks)

    def _first_window(self, n: int) -> int:
        return max(self._sinks, n - (self.n_ctx - self._sinks))

    def eval(self, ids, all_logits: bool = False) -> np.ndarray:
        if len(ids) > 1:
            time.sleep(self.prefill_delay)
        self._n_past += len(ids)
        return np.zeros((len(ids), self.n_vocab) if all_logits else (self.n_vocab,), np.float32)

    def reset(self, sinks: int | None = None) -> None:
        self._sinks = self._sinks if sinks is None else sinks
        self._n_past = 0

    def bind(self, cache) -> None:
        assert cache is None, "one cache"

    def truncate(self, n: int) -> bool:
        if n < 0 or n > self._n_past:
            return False
        if n > self._sinks and self._first_window(n) < self._first_window(self._n_past):
            return False
        self._n_past = n
        return True

    def cache_info(self) -> CacheInfo:
        n, s = self._n_past, self._sinks
        used = n if n <= s else s + n - self._first_window(n)
        evicted = max(0, n - self.n_ctx)
        return CacheInfo(capacity=self.n_ctx, used=used, sinks=s, evicted=evicted,
                         window_start=ring_window_start(n, s, evicted), bytes=self.n_ctx * 1024,
                         kv_type="f16", n_past=n)

    def close(self) -> None:
        pass


class ScriptedEngine(Engine):
    """``Engine`` with scripted replies at the ``generate`` seam; ``delay`` seconds per token."""

    delay = 0.0

    def _generate(self, ids, sampler, cancel, max_tokens):
        if self.feed_prompt(list(ids), cancel) is None and len(ids) > 1:   # a long one in chunks, as
            return                                                        # the Engine: cancelled
        reply = self.tokenize(scripted_reply(self.conversation.messages)) + [self.tokenizer.eos_id]
        for n, tok in enumerate(reply):
            if (max_tokens is not None and n >= max_tokens) or (cancel is not None and cancel.is_set()):
                return
            time.sleep(self.delay)
            yield tok
            self.cache.feed([tok])


def scripted_engine(ctx: int = 2048, sinks: int = 4, pin_system: bool = False, delay: float = 0.0,
                    prefill_delay: float = 0.0):
    """A ScriptedEngine on the default model's tokenizer and chat template; ``delay`` seconds per
    reply token, ``prefill_delay`` per chunk of a prompt."""
    from edgechat.runtime.conversation import MemoTokenizer
    from edgechat.runtime.loader import _template
    from edgechat.runtime.ggufload import read_model
    from edgechat.runtime.tokenizer import Tokenizer
    path = resolve(None)
    mf = read_model(path)
    tok = MemoTokenizer(Tokenizer(path))
    info = EngineInfo(backend="native", reason="the native engine runs this arch and these tensor types",
                      arch=mf.arch, path=str(path), name=path.stem, types=mf.types, threads=1,
                      isa="scripted", ctx=ctx, sinks=sinks, pin_system=pin_system)
    backend = ScriptedBackend(tok.n_vocab, ctx, sinks)
    backend.prefill_delay = prefill_delay
    engine = ScriptedEngine(backend, tok, _template(mf, tok), info, pin_system=pin_system, sinks=sinks)
    engine.delay = delay
    return engine


async def wait_reply(app, pilot, timeout: float = REPLY_TIMEOUT_S) -> None:
    """Wait until the reply in progress (if any) is finished and drawn, and its worker is done: after
    the last token is shown the worker still writes the chat's KV snapshot (app/tui/host.py)."""
    start = time.monotonic()
    while app.reply is not None or any(w.group == "reply" and not w.is_finished for w in app.workers):
        assert time.monotonic() - start < timeout, "the reply did not finish in time"
        await pilot.pause(0.05)
    await pilot.pause()


async def send(app, pilot, text: str, wait: bool = True) -> None:
    """Type ``text`` into the input key by key, submit it, and (by default) wait for the reply.

    With ``wait=False`` the input's submit action runs instead of an Enter key press: a Pilot key
    press waits until the process is idle (up to 1 s), and a reply keeps it busy.
    """
    prompt = app.query_one("#prompt")
    prompt.focus()
    await pilot.press(*text)
    if wait:
        await pilot.press("enter")
        await wait_reply(app, pilot)
    else:
        await prompt.action_submit()
        await wait_until(pilot, lambda: prompt.value == "", timeout=10)   # the app has taken it
        await pilot.pause(0)                                             # and finished handling it


async def start_reply(app, pilot, text: str):
    """Send ``text`` and return the Reply once its first piece is drawn."""
    await send(app, pilot, text, wait=False)
    reply = app.reply
    await wait_until(pilot, lambda: reply.view.markdown.source)
    return reply


async def wait_until(pilot, condition, timeout: float = REPLY_TIMEOUT_S) -> None:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        await pilot.pause(0.02)


def check_context_map(app, stored: list[str]) -> None:
    """Turns before the divider have left the window and are dimmed; the rest are not; none is lost.

    Args:
        app: the running EdgechatApp, after a reply that made the cache evict.
        stored: the contents of the chat's messages in the database, in order.
    """
    from edgechat.app.tui.widgets import ContextDivider
    cache = app.status.cache
    views = [v for v in app.transcript.views if v.role != "system"]
    divider = app.query_one(ContextDivider)
    children = list(app.transcript.children)
    assert cache.evicted > 0 and divider.display
    text = str(divider.render())
    assert f"{cache.evicted:,} tokens" in text and "attention sinks" in text
    above = [v for v in views if children.index(v) < children.index(divider)]
    below = [v for v in views if children.index(v) > children.index(divider)]
    assert above and below
    assert all(v.window in ("evicted", "sinks") and v.has_class("-evicted") for v in above)
    assert all(v.window in (None, "partial") and not v.has_class("-evicted") for v in below)
    assert below[-1].window is None
    assert [v.content for v in views] == stored          # nothing silently dropped


def engine_fixture(**kwargs):
    """A module-scoped pytest fixture: a ``scripted_engine(**kwargs)``, closed after the module."""
    import pytest

    @pytest.fixture(scope="module")
    def engine():
        eng = scripted_engine(**kwargs)
        yield eng
        eng.close()
    return engine


def tui_app(engine, db, **args):
    """The App on ``engine`` and the history file ``db``, drawn without timings (``make_args(**args)``)."""
    from edgechat.app.store import open_store
    from edgechat.app.tui.app import EdgechatApp
    return EdgechatApp(make_args(**args), open_store(db), engine=engine, volatile=False)
