"""Engine hosting, without Textual: one engine at a time, loaded and replying in worker threads, used by
one thread at a time; the chat's KV snapshot is restored before a reply and written after its last token.

The host does not start threads itself: ``launch(fn, group)`` runs ``fn(cancelled)`` in a worker (the
App's ``run_worker``, a test's ``threading.Thread``), and what happens is told to a listener.
"""
from __future__ import annotations

import threading
import time
from functools import partial
from typing import Callable, Protocol

from ...runtime.errors import EdgechatError
from .replies import Reply, ReplyListener, stream_reply

# launch(fn, group): run fn(cancelled) in a worker of ``group`` ("load" or "reply"), one at a time
# per group; cancelled() says whether the worker was asked to stop
Launch = Callable[[Callable[[Callable[[], bool]], None], str], object]


class HostListener(ReplyListener, Protocol):
    """What the host tells, from its worker threads: replies (``ReplyListener``) and loads."""

    def engine_loaded(self, engine, key: tuple) -> None: ...
    def engine_failed(self, key: tuple, error: str) -> None: ...


class EngineHost:
    """The window's engine. ``key`` is (model, pin_system, kv_type, server URL or "") of the engine loaded
    or being loaded (a chat on a server: a ``runtime.remote.RemoteChat``, connected as a model loads).

    Engine calls are serialized here (the engine does not wait for itself): a reply, a load and the
    close at exit each take ``lock``. ``cache_info()`` needs no turn: it is a snapshot.

    Args:
        args: the CLI's options (backend, threads, ctx, ...).
        launch: runs a worker (see ``Launch``).
        listener: told of loads and replies (from the workers' threads).
        engine: an engine already loaded for ``args.model`` (tests share one); not closed by the host.
        snapshots: where chats keep their KV cache (``kv_snapshots.SnapshotDir``), or None.
    """

    def __init__(self, args, launch: Launch, listener: HostListener, engine=None, snapshots=None):
        self.args, self.launch, self.listener, self.engine = args, launch, listener, engine
        kv_type = getattr(args, "kv_type", None) or "auto"
        self.key = ((args.model or "", bool(args.pin_system), kv_type, getattr(engine, "base_url", ""))
                    if engine is not None else None)
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
        self.launch(partial(self._load, key, old), "load")
        return True

    def _load(self, key: tuple, old, cancelled=None) -> None:
        from ..loader import load_engine
        with self.lock:
            if old is not None:
                old.close()
            try:
                engine = load_engine(self.args, model=key[0], pin_system=key[1], kv_type=key[2], base_url=key[3])
            except EdgechatError as e:
                self.listener.engine_failed(key, str(e))
                return
        self.listener.engine_loaded(engine, key)

    def loaded(self, engine, key: tuple) -> bool:
        """Take a loaded engine; False (and it is closed) when another model was asked for meanwhile."""
        if key != self.key:
            engine.close()
            return False
        self.engine, self.holding = engine, None
        return True

    def reply(self, reply: Reply, kwargs: dict) -> None:
        """Generate ``reply`` in a worker thread."""
        self.launch(partial(self.run_reply, reply, kwargs), "reply")

    def run_reply(self, reply: Reply, kwargs: dict, cancelled: Callable[[], bool] = lambda: False) -> None:
        """The reply worker: bring the chat's cache in, stream the reply, then (after the last token is
        told) write the chat's KV snapshot."""
        kwargs = dict(kwargs, truncate_prompt=bool(getattr(self.args, "truncate_prompt", False)))
        with self.lock:
            self._bring_in(reply)
            stream_reply(self.engine, reply, kwargs, self.listener, cancelled)
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

    def switch_branch(self, chat_id: int, leaving: int | None, going: int | None) -> None:
        """The chat now shows the branch ending at message ``going``: the one ending at ``leaving``
        keeps its snapshot; the one going to is restored before the next reply when it has one (else
        the engine rolls back to where the branches part, or rebuilds when the ring evicted that)."""
        if self.snapshots is None:
            return
        with self._snap_lock:
            if leaving is not None:
                self.snapshots.park(chat_id, leaving)
            if going is not None and self.snapshots.unpark(chat_id, going) and self.holding == chat_id:
                self.holding = None                 # restore it, rather than roll back

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
