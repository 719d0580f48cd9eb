"""One streamed chat completion from an OpenAI-compatible server, read on a thread of its own (so the
reader of its items can stop at once: ``EventStream.get`` looks at a cancel event while it waits), and
what one chunk's delta holds: text, a server's separate reasoning, tool-call pieces.
"""
from __future__ import annotations

import json
import queue
import threading
from typing import Callable, ContextManager

import httpx

from .errors import EdgechatError
from .reply import THINK_CLOSE, THINK_OPEN

POLL_S = 0.05              # how often a reader waiting for the server looks at its cancel event
MESSAGE_CHARS = 300        # a server's message is cut there (one line)


class EventStream:
    """One request's server-sent events, read on a thread of its own into a queue of (kind, value):
    ("chunk", dict), ("end", None) after ``[DONE]`` (or the end of the body), ("error", the fault).

    Args:
        open_response: opens the streamed response (``httpx.Client.stream(...)``: a context manager).
        faults: makes the errors: ``http_error(response)``, ``transport_error(exc)``, ``error(message)``.
    """

    def __init__(self, open_response: Callable[[], ContextManager[httpx.Response]], faults):
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        threading.Thread(target=self._read, args=(open_response, faults), daemon=True,
                         name="edgechat-remote").start()

    def get(self, cancel: threading.Event | None) -> tuple[str, object]:
        """The next item; ("cancelled", None) as soon as ``cancel`` is set."""
        while True:
            if cancel is not None and cancel.is_set():
                return "cancelled", None
            try:
                return self._q.get(timeout=POLL_S)
            except queue.Empty:
                continue

    def close(self) -> None:
        """Stop reading (the reader closes the connection after its current read)."""
        self._stop.set()

    def _read(self, open_response, faults) -> None:
        put = self._q.put
        try:
            with open_response() as r:
                if r.status_code >= 300:               # a redirect httpx did not follow, or an error
                    put(("error", faults.http_error(r)))
                    return
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        put(("end", None))
                        return
                    put(chunk_item(data, faults))
            put(("end", None))             # ended without [DONE]: what came is the reply
        except Exception as e:             # noqa: BLE001: the reader thread reports every fault
            if not self._stop.is_set():
                put(("error", faults.transport_error(e) if isinstance(e, httpx.HTTPError) else
                     e if isinstance(e, EdgechatError) else faults.error(f"{type(e).__name__}: {one_line(e)}")))


def chunk_item(data: str, faults) -> tuple[str, object]:
    """One event's data: ("chunk", dict), or ("error", ...) for the error a server sends inside the
    stream (vLLM, llama-server) and for data that is not a JSON object."""
    try:
        chunk = json.loads(data)
    except ValueError:
        return "error", faults.error(f"the server sent something that is not JSON: {one_line(data)[:80]}")
    if isinstance(chunk, dict) and "error" in chunk:
        err = chunk["error"]
        message = err.get("message") if isinstance(err, dict) else str(err)
        return "error", faults.error(f"the server failed mid-reply: {one_line(message or '')}")
    return ("chunk", chunk) if isinstance(chunk, dict) else ("error", faults.error("the server sent a non-object chunk"))


def delta_text(delta: dict, thinking: bool) -> tuple[str, bool]:
    """A delta's text for ``Reply.feed_text``: a server's separate reasoning (``reasoning_content``,
    ollama's ``reasoning``) is wrapped in ``<think>`` tags, so the reply splits it off as it does inline
    tags. Returns (text, inside the reasoning block after it)."""
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    text = delta.get("content") or ""
    piece = ""
    if reasoning:
        piece, thinking = ("" if thinking else THINK_OPEN) + reasoning, True
    if text:
        piece, thinking = piece + (THINK_CLOSE if thinking else "") + text, False
    return piece, thinking


def add_calls(calls: dict, deltas) -> None:
    """OpenAI's streamed tool-call pieces (by ``index``: the id and name once, the arguments in parts)
    added to ``calls``: index -> {"id", "name", "arguments"}."""
    for d in deltas or []:
        if not isinstance(d, dict):
            continue
        call = calls.setdefault(d.get("index", len(calls)), {"id": "", "name": "", "arguments": ""})
        call["id"] = d.get("id") or call["id"]
        fn = d.get("function") or {}
        call["name"] += fn.get("name") or ""
        call["arguments"] += fn.get("arguments") or ""


def one_line(e) -> str:
    """``str(e)`` as one line of at most MESSAGE_CHARS characters."""
    text = " ".join(str(e).split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 1] + "…"
