"""The real `edgechat` console script in a real terminal (tmux): type, see the reply, quit, find the chat;
and kill -9 in the middle of a reply: the database opens, passes integrity_check, and holds every
message that was committed before the kill."""
from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (scripts/setup.sh --test installs it)")

QUESTION = "Hello! Who are you?"
SOME_WORDS = 5          # a reply "streams" once this many of its words are on the screen, still writing


def edgechat_script() -> str:
    beside = Path(sys.executable).parent / "edgechat"
    found = str(beside) if beside.exists() else shutil.which("edgechat")
    assert found, "the edgechat console script is not installed (pip install -e .)"
    return found


class Tmux:
    """A tmux server of our own (its own socket), so the user's sessions are never touched."""

    def __init__(self, socket: str):
        self.base = ["tmux", "-L", socket]

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=30).stdout

    def alive(self) -> bool:
        return subprocess.run([*self.base, "has-session", "-t", "chat"], capture_output=True).returncode == 0

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "chat")

    def wait_for(self, condition, what: str, timeout: float = 180) -> str:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            text = self.screen()
            if condition(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; the screen:\n{self.screen()}")


def start_edgechat(tmp_path, *args: str) -> tuple[Tmux, Path]:
    """Start the real edgechat (its data in tmp_path) in a tmux session "chat"; wait until it is ready.

    Returns:
        The tmux server and the file the shell writes edgechat's exit code to.
    """
    tmux = Tmux(f"edgechat-test-{tmp_path.name}")
    rc_file = tmp_path / "rc"
    rc_file.unlink(missing_ok=True)
    command = (f"cd {shlex.quote(str(tmp_path))} && EDGECHAT_HOME={shlex.quote(str(tmp_path))} "
               f"exec {shlex.quote(edgechat_script())} {shlex.join(args)}")
    tmux("new-session", "-d", "-s", "chat", "-x", "100", "-y", "30",
         f"sh -c {shlex.quote(command)}; echo $? > {rc_file}")
    try:
        tmux.wait_for(lambda s: "● SmolLM2" in s and "KV" in s, "the model to load")
    except BaseException:
        tmux("kill-server")
        raise
    return tmux, rc_file


def send(tmux: Tmux, text: str) -> None:
    tmux("send-keys", "-t", "chat", "-l", text)
    tmux("send-keys", "-t", "chat", "Enter")


def reply_so_far(screen: str) -> str:
    """The text of the reply being written: between the last "Assistant" and "writing…" ("" when no
    reply is being written)."""
    if "writing…" not in screen:
        return ""
    return screen.rsplit("writing…", 1)[0].rsplit("Assistant", 1)[-1]


def quit_with_ctrl_q(tmux: Tmux) -> None:
    tmux("send-keys", "-t", "chat", "C-q")
    start = time.monotonic()
    while tmux.alive() and time.monotonic() - start < 30:
        time.sleep(0.2)
    assert not tmux.alive(), "Ctrl-Q did not quit"


def test_edgechat_in_tmux(tmp_path):
    tmux, rc_file = start_edgechat(tmp_path, "--temp", "0", "--max-tokens", "16")
    try:
        send(tmux, QUESTION)
        screen = tmux.wait_for(lambda s: "Assistant" in s and "writing…" not in s, "the reply")
        assert "You" in screen and QUESTION in screen
        quit_with_ctrl_q(tmux)
    finally:
        tmux("kill-server")
    assert rc_file.read_text().strip() == "0"

    conn = sqlite3.connect(tmp_path / "chats.db")
    chats = conn.execute("SELECT id, title FROM chats").fetchall()
    messages = conn.execute("SELECT role, content, finish FROM messages ORDER BY id").fetchall()
    conn.close()
    assert chats == [(chats[0][0], QUESTION)]
    assert [m[0] for m in messages] == ["user", "assistant"] and messages[0][1] == QUESTION
    reply = messages[1][1]
    assert reply and messages[1][2] in ("stop", "length")
    first_words = " ".join(reply.split()[:3])
    assert first_words in " ".join(screen.split()), f"the reply {reply!r} was not on the screen"


def edgechat_pid(tmux: Tmux) -> int:
    """The edgechat process: the child of the pane's shell (sh -c execs it)."""
    import psutil
    shell = psutil.Process(int(tmux("display-message", "-p", "-t", "chat", "#{pane_pid}").strip()))
    found = [p for p in shell.children(recursive=True) if "edgechat" in " ".join(p.cmdline())]
    assert len(found) == 1, [p.cmdline() for p in shell.children(recursive=True)]
    return found[0].pid


def test_kill_9_mid_reply_loses_no_committed_message(tmp_path):
    """Turn 1 finishes (user + reply committed); turn 2 is killed with SIGKILL while its reply streams
    (its user message was committed when sent; the reply was not finished, so it is not there)."""
    tmux, _ = start_edgechat(tmp_path, "--temp", "0", "--max-tokens", "16")
    try:
        send(tmux, QUESTION)
        tmux.wait_for(lambda s: "Assistant" in s and "writing…" not in s, "the first reply")
        quit_with_ctrl_q(tmux)
    finally:
        tmux("kill-server")
    # a second run with long replies, killed while one streams
    tmux, rc_file = start_edgechat(tmp_path, "--temp", "0", "--max-tokens", "2000", "--ctx", "256")
    second = "Tell me a long story about the sea."      # shorter than a title
    try:
        tmux("send-keys", "-t", "chat", "C-n")
        send(tmux, second)
        tmux.wait_for(lambda s: len(reply_so_far(s).split()) >= SOME_WORDS, "the second reply to stream")
        os.kill(edgechat_pid(tmux), signal.SIGKILL)
        start = time.monotonic()
        while not rc_file.exists() and time.monotonic() - start < 30:
            time.sleep(0.1)
    finally:
        tmux("kill-server")
    assert rc_file.read_text().strip() == str(128 + signal.SIGKILL)

    db = tmp_path / "chats.db"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT c.title, m.role, m.content, m.finish FROM messages m "
                        "JOIN chats c ON c.id = m.chat_id ORDER BY m.id").fetchall()
    conn.close()
    assert [(r[0], r[1]) for r in rows] == [(QUESTION, "user"), (QUESTION, "assistant"), (second, "user")]
    assert rows[0][2] == QUESTION and rows[1][2] and rows[1][3] in ("stop", "length") and rows[2][2] == second
    # edgechat itself opens it again, with no problem to report
    from edgechat.app.store import open_store
    store = open_store(db)
    assert store.problem is None and [len(store.messages(c.id)) for c in store.list_chats()] == [1, 2]
    store.close()


def test_attach_send_and_find_the_chat_with_ctrl_f_after_a_restart(tmp_path):
    """/attach a file (its chip shows), send a message with it, quit; start again (a new chat opens),
    Ctrl+F, type a word of the file, Enter: the chat with the file opens."""
    (tmp_path / "harbour.txt").write_text("The harbour lamps are lit at dusk.\n")
    tmux, rc_file = start_edgechat(tmp_path, "--temp", "0", "--max-tokens", "8")
    try:
        send(tmux, "/attach harbour.txt")
        tmux.wait_for(lambda s: "harbour.txt · 1 line" in s, "the file's chip")
        send(tmux, "Summarize the file")
        tmux.wait_for(lambda s: "Assistant" in s and "writing…" not in s, "the reply")
        quit_with_ctrl_q(tmux)
    finally:
        tmux("kill-server")
    assert rc_file.read_text().strip() == "0"

    tmux, rc_file = start_edgechat(tmp_path, "--temp", "0", "--max-tokens", "8")
    try:
        assert "New chat" in tmux.screen()                               # a new chat is shown
        tmux("send-keys", "-t", "chat", "C-f")
        tmux.wait_for(lambda s: "Search all chats" in s, "the search screen")
        tmux("send-keys", "-t", "chat", "-l", "lamps")
        tmux.wait_for(lambda s: "1 message" in s and "harbour" in s, "the search result")
        tmux("send-keys", "-t", "chat", "Enter")
        tmux.wait_for(lambda s: "Search all chats" not in s and "Summarize the file" in s and "lamps" in s,
                      "the chat with the file")
        quit_with_ctrl_q(tmux)
    finally:
        tmux("kill-server")
    conn = sqlite3.connect(tmp_path / "chats.db")
    sent = conn.execute("SELECT content FROM messages WHERE role = 'user'").fetchall()
    conn.close()
    assert sent == [("Summarize the file\n\n`harbour.txt`:\n```txt\nThe harbour lamps are lit at dusk.\n```",)]
