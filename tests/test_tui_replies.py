"""The TUI's reply lifecycle and chat leases as plain classes, without Textual: the engine host starts a
reply worker (a plain thread here), streams it to a listener, stops it on cancel, the UI side commits it
to the store, and the chat's KV snapshot is written after the last token; a window's leases hold a chat
while it is shown or has a reply to commit."""
from __future__ import annotations

import queue
import subprocess
import sys
import threading

import pytest

from edgechat.app.kv_snapshots import SnapshotDir
from edgechat.app.leases import ChatLeases
from edgechat.app.store import open_store
from edgechat.app.tui.host import EngineHost
from edgechat.app.tui.replies import Replies, Reply
from tui_support import REPLY_TIMEOUT_S, load_engine, make_args, scripted_engine, scripted_reply

TOKEN_DELAY_S = 0.01        # the scripted engine's time per token: a reply streams for a while


class Recorder:
    """A ``HostListener`` that queues what the workers tell, for the test's thread (the "UI thread")."""

    def __init__(self, snapshots: SnapshotDir | None = None):
        self.events: queue.Queue = queue.Queue()
        self.snapshots = snapshots
        self.snapshot_at_done: bool | None = None     # the chat's snapshot existed when done was told

    def chunk(self, reply, text, kind="text"):
        self.events.put(("chunk", reply, text))

    def beyond_window(self, reply, notice):
        self.events.put(("beyond", reply, notice))

    def done(self, reply, event, spans):
        if self.snapshots is not None:
            self.snapshot_at_done = self.snapshots.path(reply.chat_id).exists()
        self.events.put(("done", reply, event))

    def failed(self, reply, error):
        self.events.put(("failed", reply, error))

    def engine_loaded(self, engine, key):
        self.events.put(("loaded", engine, key))

    def engine_failed(self, key, error):
        self.events.put(("load failed", key, error))

    def until(self, kind: str) -> list[tuple]:
        """Everything told up to and including the first event of ``kind``."""
        seen = []
        while not seen or seen[-1][0] != kind:
            seen.append(self.events.get(timeout=REPLY_TIMEOUT_S))
        return seen


class Threads:
    """The host's ``launch``: each worker a plain thread."""

    def __init__(self):
        self.started: list[threading.Thread] = []

    def __call__(self, fn, group: str) -> None:
        t = threading.Thread(target=fn, args=(lambda: False,), name=group)
        self.started.append(t)
        t.start()

    def join(self) -> None:
        for t in self.started:
            t.join(REPLY_TIMEOUT_S)
            assert not t.is_alive(), f"the {t.name} worker did not end"


@pytest.fixture(scope="module")
def engine():
    eng = scripted_engine(ctx=2048, delay=TOKEN_DELAY_S)
    yield eng
    eng.close()


def window(db, engine, snapshots=None, **args):
    """A window's plain parts: store, leases, replies, and a host that runs workers as threads."""
    store = open_store(db)
    leases = ChatLeases(store)
    recorder, threads = Recorder(snapshots), Threads()
    host = EngineHost(make_args(**args), threads, recorder, engine, snapshots)
    return store, leases, Replies(store, leases), host, recorder, threads


def ask(store, leases, replies, host, question: str, **kwargs) -> Reply:
    """Show a new chat, commit the question and start the reply (as the App's send does)."""
    chat = store.create_chat(question)
    leases.show(chat.id)
    store.add_message(chat.id, "user", question)
    reply = replies.begin(Reply(chat.id, [{"role": "user", "content": question}]))
    host.reply(reply, kwargs)
    return reply


def test_the_lifecycle_classes_run_without_textual():
    code = ("import sys; import edgechat.app.tui.replies, edgechat.app.tui.host, edgechat.app.leases; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_reply_streams_then_is_committed(engine, db):
    store, leases, replies, host, recorder, threads = window(db, engine)
    reply = ask(store, leases, replies, host, "What is a comet?", max_tokens=12)
    told = recorder.until("done")
    threads.join()
    chunks = [text for kind, _, text in told if kind == "chunk"]
    done = told[-1][2]
    assert len(chunks) > 1 and "".join(chunks) == done.text == reply.done.text
    assert scripted_reply(reply.messages).startswith(done.text) and done.finish_reason == "length"
    assert replies.current is reply and not reply.detached          # drawn until the UI commits it
    stored = replies.commit(reply)
    assert replies.current is None and replies.unsaved == []
    assert [(m.role, m.content) for m in store.messages(reply.chat_id)] == [
        ("user", "What is a comet?"), ("assistant", done.text)]
    assert stored.finish == "length" and stored.stats["completion_tokens"] == done.stats.completion_tokens
    assert replies.commit(reply) is None                           # committed once
    store.close()


def test_stop_ends_the_reply_within_a_token_and_keeps_it(engine, db):
    store, leases, replies, host, recorder, threads = window(db, engine)
    reply = ask(store, leases, replies, host, "Tell me a long story.", max_tokens=500)
    recorder.until("chunk")
    replies.stop()
    done = recorder.until("done")[-1][2]
    threads.join()
    assert done.finish_reason == "cancelled" and 0 < done.stats.completion_tokens < 500
    assert replies.commit(reply).finish == "cancelled"
    assert store.messages(reply.chat_id)[-1].content == done.text
    store.close()


def test_a_detached_reply_is_still_committed_and_its_chat_held_till_then(engine, db):
    store, leases, replies, host, recorder, threads = window(db, engine)
    other = open_store(db)                                          # another window on the history
    reply = ask(store, leases, replies, host, "Tell me a long story.", max_tokens=500)
    recorder.until("chunk")
    assert replies.detach() is reply and reply.detached and replies.current is None
    leases.show(store.create_chat("elsewhere").id)                  # the user went to another chat
    assert other.claim(reply.chat_id) == store._owner.pid           # still held: a reply to commit
    recorder.until("done")
    threads.join()
    assert replies.commit(reply).finish == "cancelled"
    assert other.claim(reply.chat_id) is None                      # let go once committed
    other.close()
    store.close()


def test_a_failing_engine_is_told_and_lets_the_chat_go(db):
    class Broken:
        def chat(self, messages, **kwargs):
            raise RuntimeError("the model fell over")
            yield

    store, leases, replies, host, recorder, threads = window(db, Broken())
    reply = ask(store, leases, replies, host, "Hi")
    leases.show(store.create_chat("elsewhere").id)
    kind, _, error = recorder.until("failed")[-1]
    threads.join()
    assert error == "RuntimeError: the model fell over" and reply.done is None
    replies.failed(reply)
    assert replies.unsaved == [] and [m.role for m in store.messages(reply.chat_id)] == ["user"]
    other = open_store(db)
    assert other.claim(reply.chat_id) is None
    other.close()
    store.close()


def test_leases_refuse_a_chat_another_window_writes(db):
    a, b = open_store(db), open_store(db)
    leases_a, leases_b = ChatLeases(a), ChatLeases(b)
    first, second = a.create_chat("first"), a.create_chat("second")
    leases_a.show(first.id)
    refusal = leases_b.may_write(first.id)
    assert refusal.title == "Read only here" and f"pid {a._owner.pid}" in refusal.text
    assert leases_b.may_write(second.id) is None                   # not shown by a: b writes it
    assert a.claim(second.id) is None                              # and does not keep it after
    leases_a.show(second.id)                                       # a leaves first: it is free
    assert leases_b.may_write(first.id) is None
    a.delete_chat(first.id)
    assert leases_b.may_write(first.id).title == "Chat deleted"
    a.close()
    b.close()


def test_the_snapshot_is_written_after_the_last_token(db, tmp_path):
    """On the real default model: the done event is told before the chat's KV snapshot exists; once
    the worker has ended, the snapshot restores the cache that holds the reply."""
    real = load_engine(ctx=512)
    snapshots = SnapshotDir(tmp_path / "kv")
    try:
        store, leases, replies, host, recorder, threads = window(db, real, snapshots, max_tokens=8)
        reply = ask(store, leases, replies, host, "Name a colour.", max_tokens=8, temp=0.0)
        done = recorder.until("done")[-1][2]
        threads.join()
        assert recorder.snapshot_at_done is False and snapshots.path(reply.chat_id).is_file()
        replies.commit(reply)
        used = real.cache_info().used
        real.reset()
        assert real.load_state(snapshots.path(reply.chat_id)) and real.cache_info().used == used
        assert real.conversation.messages[-1] == {"role": "assistant", "content": done.text}
        store.close()
    finally:
        real.close()


def test_only_the_current_reply_is_stopped_and_a_queue_holds_one_message():
    class Nobody:
        def writing(self, chat_id):
            pass

        def written(self, chat_id):
            pass

    replies = Replies(store=None, leases=Nobody())
    first = replies.begin(Reply(1, []))
    detached = replies.detach()
    second = replies.begin(Reply(1, []))
    replies.stop()
    assert detached is first and first.cancel.is_set() and second.cancel.is_set()
    assert replies.queue(1, "next") and not replies.queue(1, "another")
    assert replies.take_queued() == (1, "next") and replies.take_queued() is None
    third = replies.begin(Reply(2, []))
    replies.cancel_all()
    assert third.cancel.is_set() and replies.unsaved == [first, second, third]
