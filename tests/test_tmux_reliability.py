"""The real `edgechat` in real terminals (tmux) when things go wrong around it: SIGTERM and SIGHUP in
the middle of a reply (the partial reply is committed and the terminal restored), the terminal
window closed mid-reply, and two windows on one history (each keeps its own chat)."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from test_tmux import SOME_WORDS, Tmux, edgechat_pid, edgechat_script, reply_so_far, send

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (scripts/setup.sh --test installs it)")

STORY = "Write a long story about a dragon"
LOADED = "● SmolLM2"
STAY_S = 120          # the pane's shell waits this long after edgechat exits, so the pane can be read


def launch(tmp_path: Path, name: str, *args: str) -> tuple[Tmux, Path]:
    """Start edgechat (its data in tmp_path) in tmux session "chat" of server ``name``; the pane stays
    after edgechat exits (its exit code goes to the returned file). Does not wait for the model."""
    tmux = Tmux(f"edgechat-rel-{tmp_path.name}-{name}")
    rc_file = tmp_path / f"rc-{name}"
    rc_file.unlink(missing_ok=True)
    command = (f"cd {shlex.quote(str(tmp_path))} && EDGECHAT_HOME={shlex.quote(str(tmp_path))} "
               f"exec {shlex.quote(edgechat_script())} {shlex.join(args)}")
    tmux("new-session", "-d", "-s", "chat", "-x", "100", "-y", "30",
         f"sh -c {shlex.quote(command)}; echo $? > {rc_file}; sleep {STAY_S}")
    return tmux, rc_file


def loaded(tmux: Tmux) -> None:
    tmux.wait_for(lambda s: LOADED in s and "KV" in s, "the model to load")


def wait_exit(rc_file: Path, timeout: float = 60) -> int:
    start = time.monotonic()
    while not rc_file.exists() or not rc_file.read_text().strip():
        assert time.monotonic() - start < timeout, "edgechat did not exit"
        time.sleep(0.1)
    return int(rc_file.read_text())


def rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def streaming(tmux: Tmux) -> None:
    """Wait until the reply streams and some of its words are on the screen (still writing)."""
    tmux.wait_for(lambda s: len(reply_so_far(s).split()) >= SOME_WORDS, "the reply to stream")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_mid_reply_commits_the_partial_reply_and_restores_the_terminal(tmp_path, sig):
    tmux, rc_file = launch(tmp_path, "a", "--temp", "0", "--max-tokens", "2000", "--ctx", "512")
    try:
        loaded(tmux)
        send(tmux, STORY)
        streaming(tmux)
        os.kill(edgechat_pid(tmux), sig)
        code = wait_exit(rc_file)
        modes = tmux("display-message", "-p", "-t", "chat",
                     "#{alternate_on} #{mouse_any_flag} #{mouse_all_flag} #{cursor_flag}").split()
    finally:
        tmux("kill-server")
    assert code == 128 + sig
    # the app's screen left, mouse tracking off, the cursor shown again
    assert modes == ["0", "0", "0", "1"], modes
    messages = rows(tmp_path / "chats.db", "SELECT role, content, finish FROM messages ORDER BY id")
    assert [(m[0], m[2]) for m in messages] == [("user", None), ("assistant", "cancelled")]
    assert messages[0][1] == STORY and len(messages[1][1].split()) >= 3, messages


def test_terminal_closed_mid_reply_commits_the_partial_reply(tmp_path):
    """Closing the window: tmux kills the session, the pty goes away and edgechat gets SIGHUP."""
    tmux, rc_file = launch(tmp_path, "a", "--temp", "0", "--max-tokens", "2000", "--ctx", "512")
    try:
        loaded(tmux)
        send(tmux, STORY)
        streaming(tmux)
        import psutil
        proc = psutil.Process(edgechat_pid(tmux))
        tmux("kill-session", "-t", "chat")
        proc.wait(timeout=60)
    finally:
        tmux("kill-server")
    messages = rows(tmp_path / "chats.db", "SELECT role, content, finish FROM messages ORDER BY id")
    assert [(m[0], m[2]) for m in messages] == [("user", None), ("assistant", "cancelled")]
    assert len(messages[1][1].split()) >= 3, messages


def reply_done(tmux: Tmux, sent: str) -> None:
    """Wait until the reply to ``sent`` (on the screen) has ended."""
    tmux.wait_for(lambda s: sent in s and "Assistant" in s.split(sent)[-1] and "writing…" not in s,
                  f"the reply to {sent!r}")


def test_two_windows_on_one_history_keep_their_chats_apart(tmp_path):
    """Both windows start together on a history whose latest chat is an empty "New chat": one of
    them may take it, the other starts its own; their turns never land in the other's chat."""
    from edgechat.app.store import open_store
    store = open_store(tmp_path / "chats.db")
    store.create_chat("New chat")
    store.close()
    windows = [launch(tmp_path, name, "--temp", "0", "--max-tokens", "12") for name in ("a", "b")]
    words = {"a": "Alpha", "b": "Bravo"}
    try:
        for tmux, _ in windows:
            loaded(tmux)
        for turn in (1, 2):
            for (tmux, _), name in zip(windows, words):
                send(tmux, f"{words[name]} {turn}: say hello")
            for (tmux, _), name in zip(windows, words):
                reply_done(tmux, f"{words[name]} {turn}: say hello")
        for tmux, _ in windows:
            tmux("send-keys", "-t", "chat", "C-q")
        codes = [wait_exit(rc) for _, rc in windows]
    finally:
        for tmux, _ in windows:
            tmux("kill-server")
    assert codes == [0, 0]
    db = tmp_path / "chats.db"
    chats = dict(rows(db, "SELECT id, title FROM chats"))
    messages = rows(db, "SELECT chat_id, role, content FROM messages ORDER BY id")
    assert len(chats) == 2, chats                         # the empty chat was taken by one of them
    for word in words.values():
        (chat_id,) = [i for i, t in chats.items() if t.startswith(word)]
        mine = [(role, content) for c, role, content in messages if c == chat_id]
        assert [r for r, _ in mine] == ["user", "assistant", "user", "assistant"], mine
        assert [c for r, c in mine if r == "user"] == [f"{word} 1: say hello", f"{word} 2: say hello"]
    assert rows(db, "SELECT count(*) FROM leases") == [(0,)]   # both let go when they quit


FILE_LIMIT_BLOCKS = 128   # ulimit -f (512-byte blocks): the history opens (its -shm and first WAL
                          # frames fit), then the WAL cannot grow past 64 KiB: a save fails mid-session


def test_quitting_after_a_failed_save_names_the_messages_not_written(tmp_path):
    """The disk "fills" (a file size limit) during the session: the chat goes on in memory, and at
    quit the messages that never reached the file are named; the file holds all the others."""
    tmux = Tmux(f"edgechat-rel-{tmp_path.name}-full")
    rc_file = tmp_path / "rc-full"
    command = (f"ulimit -f {FILE_LIMIT_BLOCKS}; cd {shlex.quote(str(tmp_path))} && "
               f"EDGECHAT_HOME={shlex.quote(str(tmp_path))} exec {shlex.quote(edgechat_script())} "
               "--temp 0 --max-tokens 12")
    tmux("new-session", "-d", "-s", "chat", "-x", "200", "-y", "50",
         f"sh -c {shlex.quote(command)}; echo $? > {rc_file}; sleep {STAY_S}")
    sent = [f"Message {i}: say hi" for i in range(1, 5)]
    try:
        loaded(tmux)
        for text in sent:
            send(tmux, text)
            reply_done(tmux, text)
        assert "Cannot write chat history" in tmux.screen()       # the banner said so at once
        tmux("send-keys", "-t", "chat", "C-q")
        assert wait_exit(rc_file) == 0
        after = tmux("capture-pane", "-p", "-J", "-t", "chat", "-S", "-50")
    finally:
        tmux("kill-server")
    saved = rows(tmp_path / "chats.db", "SELECT role, content FROM messages ORDER BY id")
    named = [line.strip() for line in after.splitlines() if line.startswith("  “")]
    assert "messages were kept only in memory and were not saved" in after and named, after
    assert len(saved) + len(named) == 2 * len(sent)               # every message: saved or named
    saved_users = [c for r, c in saved if r == "user"]
    named_users = [n.split(", you: ", 1)[1] for n in named if ", you: " in n]
    assert saved_users + named_users == sent                      # in order, none in both
