"""Engine hosting for the TUI: one engine at a time, loaded in a worker, used by one thread at a time."""
from __future__ import annotations

import threading
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
    """The app's engine. ``key`` is (model, pin_system) of the engine loaded or being loaded.

    Engine calls are serialized here (the engine does not wait for itself): a reply, a load and the
    close at exit each take ``lock``. ``cache_info()`` needs no turn: it is a snapshot.

    Args:
        app: the App (runs the workers, receives the messages).
        args: the CLI's options (backend, threads, ctx, ...).
        engine: an engine already loaded for ``args.model`` (tests share one); not closed by the host.
    """

    def __init__(self, app, args, engine=None):
        self.app, self.args, self.engine = app, args, engine
        self.key = (args.model or "", bool(args.pin_system)) if engine is not None else None
        self._own = engine is None
        self.lock = threading.Lock()

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
                engine = load_engine(self.args, model=key[0], pin_system=key[1])
            except EdgechatError as e:
                self.app.post_message(EngineFailed(key, str(e)))
                return
        self.app.post_message(EngineLoaded(engine, key))

    def loaded(self, message: EngineLoaded) -> bool:
        """Take a loaded engine; False (and it is closed) when another model was asked for meanwhile."""
        if message.key != self.key:
            message.engine.close()
            return False
        self.engine = message.engine
        return True

    def reply(self, reply: Reply, kwargs: dict) -> None:
        """Generate ``reply`` in a worker thread."""
        self.app.run_worker(partial(self._reply, reply, kwargs), thread=True, exclusive=True, group="reply")

    def _reply(self, reply: Reply, kwargs: dict) -> None:
        worker = get_current_worker()
        kwargs = dict(kwargs, truncate_prompt=bool(getattr(self.args, "truncate_prompt", False)))
        with self.lock:
            stream_reply(self.engine, reply, kwargs, self.app.post_message, lambda: worker.is_cancelled)

    def close(self) -> None:
        """Close the engine if the host loaded it (after the reply in progress stops)."""
        with self.lock:
            if self._own and self.engine is not None:
                self.engine.close()
                self.engine = None
