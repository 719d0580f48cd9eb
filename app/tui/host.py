"""Engine hosting for the TUI: one engine at a time, loaded in a worker, used by one thread at a time."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import partial

from textual.message import Message
from textual.worker import get_current_worker

from ...runtime.errors import EdgechatError
from .reply import Reply, stream_reply


@dataclass
class EngineLoaded(Message):
    """A model finished loading."""

    engine: object
    key: tuple


@dataclass
class EngineFailed(Message):
    """A model could not be loaded."""

    key: tuple
    error: str


class EngineHost:
    """The app's engine. ``key`` is (model, pin_system, kv_type) of the engine loaded or being loaded.

    Engine calls are serialized here (the engine does not wait for itself): a reply, a load and the
    close at exit each take ``lock``. ``cache_info()`` needs no turn: it is a snapshot.

    Args:
        app: the App (runs the workers, receives the messages).
        args: the CLI's options (backend, threads, ctx, ...).
        engine: an engine already loaded for ``args.model`` (tests share one); not closed by the host.
        snapshots: where chats keep their KV cache (``kv_snapshots.SnapshotDir``), or None.
    """

    def __init__(self, app, args, engine=None, snapshots=None):
        self.app, self.args, self.engine = app, args, engine
        kv_type = getattr(args, "kv_type", None) or "auto"
        self.key = (args.model or "", bool(args.pin_system), kv_type) if engine is not None else None
        self._own = engine is None
        self.lock = threading.Lock()
        self.snapshots = snapshots
        self.holding: int | None = None      # the chat whose conversation the engine's cache holds
        self._gone: set[int] = set()         # chats deleted or cleared: a reply ending now saves nothing
        self._snap_lock = threading.Lock()   # a worker's check-and-save against forget() on the UI thread

    def ensure(self, key: tuple) -> bool:
        """Start loading the model of ``key`` unless it is the one loaded or loading; True if started."""
        if key == self.key:
            return False
        old = self.engine if self._own else None
        self.engine, self.key, self._own = None, key, True
        self.app.run_worker(partial(self._load, key, old), thread=True, exclusive=True, group="load")
        return True

    def _load(self, key: tuple, old) -> None:
        from ..loader import load_engine
        with self.lock:
            if old is not None:
                old.close()
            try:
                engine = load_engine(self.args, model=key[0], pin_system=key[1], kv_type=key[2])
            except EdgechatError as e:
                self.app.post_message(EngineFailed(key, str(e)))
                return
        self.app.post_message(EngineLoaded(engine, key))

    def loaded(self, message: EngineLoaded) -> bool:
        """Take a loaded engine; False (and it is closed) when another model was asked for meanwhile."""
        if message.key != self.key:
            message.engine.close()
            return False
        self.engine, self.holding = message.engine, None
        return True

    def reply(self, reply: Reply, kwargs: dict) -> None:
        """Generate ``reply`` in a worker thread."""
        self.app.run_worker(partial(self._reply, reply, kwargs), thread=True, exclusive=True, group="reply")

    def _reply(self, reply: Reply, kwargs: dict) -> None:
        worker = get_current_worker()
        kwargs = dict(kwargs, truncate_prompt=bool(getattr(self.args, "truncate_prompt", False)))
        with self.lock:
            self._bring_in(reply)
            stream_reply(self.engine, reply, kwargs, self.app.post_message, lambda: worker.is_cancelled)
            self.holding = reply.chat_id
            if reply.done is not None and self.snapshots is not None and hasattr(self.engine, "save_state"):
                with self._snap_lock:
                    if reply.chat_id not in self._gone:
                        self.snapshots.save(self.engine, reply.chat_id)

    def _bring_in(self, reply: Reply) -> None:
        """Before a reply in a chat the cache does not hold: restore the chat's snapshot; the note says
        whether it was restored or why the chat is re-prefilled (nothing for a chat with no history)."""
        with self._snap_lock:
            self._gone.discard(reply.chat_id)
        if self.holding == reply.chat_id or self.snapshots is None or not hasattr(self.engine, "load_state"):
            return
        t0 = time.perf_counter()
        ok, note = self.snapshots.restore(self.engine, reply.chat_id)
        reply.restore_s = time.perf_counter() - t0
        if ok:
            reply.kv_note = "restored"
        elif any(m["role"] == "assistant" for m in reply.messages):     # a chat with history
            reply.kv_note = f"re-prefilled ({note})"

    def forget(self, chat_id: int) -> None:
        """A chat was deleted or cleared: drop its snapshot (the cache no longer stands for it)."""
        with self._snap_lock:
            self._gone.add(chat_id)
            if self.snapshots is not None:
                self.snapshots.delete(chat_id)
        if self.holding == chat_id:
            self.holding = None

    def close(self) -> None:
        """Close the engine if the host loaded it (after the reply in progress stops)."""
        with self.lock:
            if self._own and self.engine is not None:
                self.engine.close()
                self.engine = None
