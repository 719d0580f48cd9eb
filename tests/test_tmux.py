"""The real `edgechat` console script in a real terminal (tmux): type, see the reply, quit, find the chat."""
from __future__ import annotations

import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (scripts/setup.sh --test installs it)")

QUESTION = "Hello! Who are you?"


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


def test_edgechat_in_tmux(tmp_path):
    tmux = Tmux(f"edgechat-test-{tmp_path.name}")
    rc_file = tmp_path / "rc"
    command = (f"cd {shlex.quote(str(tmp_path))} && EDGECHAT_HOME={shlex.quote(str(tmp_path))} "
               f"{shlex.quote(edgechat_script())} --temp 0 --max-tokens 16; echo $? > {rc_file}")
    tmux("new-session", "-d", "-s", "chat", "-x", "100", "-y", "30", command)
    try:
        tmux.wait_for(lambda s: "● SmolLM2" in s and "KV" in s, "the model to load")
        tmux("send-keys", "-t", "chat", "-l", QUESTION)
        tmux("send-keys", "-t", "chat", "Enter")
        screen = tmux.wait_for(lambda s: "Assistant" in s and "writing…" not in s, "the reply")
        assert "You" in screen and QUESTION in screen
        tmux("send-keys", "-t", "chat", "C-q")
        start = time.monotonic()
        while tmux.alive() and time.monotonic() - start < 30:
            time.sleep(0.2)
        assert not tmux.alive(), "Ctrl-Q did not quit"
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
