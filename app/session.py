"""``edgechat -p ... --session FILE``: one-shot turns that keep their KV cache in FILE between runs.

The engine's state (cache, token stream, conversation) is restored from FILE when it matches this
model and these settings, the new prompt is appended to the restored conversation (only its tokens are
fed), and the state is saved back after the reply. A file that does not match is ignored with a
one-line note and the prompt starts a new conversation, which then replaces it.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SessionStart:
    restored: bool = False
    note: str = ""              # "restored", or why not
    restore_s: float = 0.0      # time spent reading and restoring the snapshot


def start(engine, path: str | None, verbose: bool = False) -> SessionStart:
    """Restore ``path`` into ``engine`` if it holds a matching snapshot (a missing file is a new session)."""
    if not path:
        return SessionStart()
    t0 = time.perf_counter()
    ok = engine.load_state(path)
    s = SessionStart(ok, engine.state_note, time.perf_counter() - t0)
    if not ok and (Path(path).exists() or verbose):
        print(f"edgechat: session {path}: {s.note}; starting over", file=sys.stderr)
    return s


def messages(engine, session: SessionStart, prompt: str, system: str | None) -> list[dict]:
    """The conversation to send: the restored one plus the prompt, or a new one."""
    if session.restored:
        return engine.conversation.messages + [{"role": "user", "content": prompt}]
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def save(engine, path: str | None) -> None:
    """Write the session back (atomically); a failure is a one-line error."""
    if not path:
        return
    from ..runtime.errors import EdgechatError
    try:
        engine.save_state(path)
    except OSError as e:
        raise EdgechatError(f"cannot write the session file {path}: {e.strerror or e}") from None
