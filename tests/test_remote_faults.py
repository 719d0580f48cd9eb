"""The remote client's faults against real local servers, no mocks: a stalled server (a small ASGI app
that never sends a chunk: tests/stall_server.py) times out and a cancel stops it at once; a redirect to
another host is refused; an ``edgechat serve`` killed mid-stream leaves the partial reply, kept and
marked, in the one-shot CLI and in the TUI (each of those two tests kills a server of its own).

Nothing waits on the clock: each wait is on a condition with a deadline (a thread ending, a process
exiting, text arriving).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from serve_support import Server, free_port
from stall_server import MODEL, StallServer
from tui_support import make_args, wait_until

from edgechat.runtime.events import DoneEvent, TextEvent
from edgechat.runtime.remote import RemoteChat, RemoteError

STALL_S = 1.0                # the read timeout the stall tests set
BOUND_S = 60                 # the outer bound of anything that should end (a hung client fails the test)
STORY = "Write a very long story about a dragon who loves to sing."   # the default model writes ~600 tokens
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def stalled():
    with StallServer() as s:
        yield s


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("EDGECHAT_BASE_URL", None)
    return subprocess.run([sys.executable, "-m", "edgechat.app.cli", *args], capture_output=True, text=True,
                          timeout=BOUND_S, env=env, **kw)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The one-line error of a failed run (exit 1, no traceback)."""
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgechat: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ---- a stalled server ------------------------------------------------------------------------------

def test_stalled_server_times_out(stalled):
    remote = RemoteChat(stalled.url, read_timeout=STALL_S).connect()
    assert remote.model == MODEL                              # the server's first model
    with pytest.raises(RemoteError, match=f"sent nothing for {STALL_S:g} s"):
        list(remote.chat(HELLO))
    remote.close()


def test_stalled_server_one_shot_is_one_line(stalled):
    line = one_line_error(cli("-p", "hi", "--base-url", stalled.url, "--remote-timeout", str(STALL_S)))
    assert "stalled" in line and "--remote-timeout" in line


def test_cancel_stops_a_stalled_reply_at_once(stalled):
    """A cancel (the TUI's Esc) ends the reply while the server sends nothing, long before the read
    timeout: the reply ends "cancelled", empty."""
    remote = RemoteChat(stalled.url, read_timeout=BOUND_S * 10).connect()
    cancel, events = threading.Event(), []
    worker = threading.Thread(target=lambda: events.extend(remote.chat(HELLO, cancel=cancel)), daemon=True)
    worker.start()
    cancel.set()
    worker.join(BOUND_S)
    assert not worker.is_alive(), "a cancelled reply kept waiting for the stalled server"
    assert isinstance(events[-1], DoneEvent) and events[-1].finish_reason == "cancelled" and events[-1].text == ""
    remote.close()


@pytest.mark.asyncio
async def test_esc_stops_a_stalled_reply_in_the_tui(stalled, db):
    """Esc ends the reply while the server sends nothing (its read timeout is far away); the turn is
    stored, the reply marked stopped."""
    from edgechat.app.store import open_store
    from edgechat.app.tui.app import EdgechatApp
    from tui_support import send, wait_reply
    app = EdgechatApp(make_args(base_url=stalled.url, remote_timeout=BOUND_S * 10), open_store(db), volatile=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.status.state == "ready", timeout=BOUND_S)
        await send(app, pilot, "Hello?", wait=False)
        assert app.reply is not None
        await pilot.press("escape")
        await wait_reply(app, pilot, timeout=BOUND_S)
    stored = open_store(db).messages(app.chat.id)
    assert [(m.role, m.finish) for m in stored] == [("user", None), ("assistant", "cancelled")]


def test_redirect_to_another_host_is_refused(stalled):
    with pytest.raises(RemoteError, match="redirected to another host.*127.0.0.2.*refused"):
        RemoteChat(stalled.url + "/redirect").connect()
    line = one_line_error(cli("models", "--base-url", stalled.url + "/redirect"))
    assert "refused" in line


@pytest.mark.parametrize("code, words", [(403, "forbidden (403"), (404, "not found (404"),
                                         (429, "rate limiting (429)"), (500, "server error (500"),
                                         (503, "server error (503")])
def test_http_errors_are_one_line_with_the_servers_message(stalled, code, words):
    with pytest.raises(RemoteError) as e:
        RemoteChat(f"{stalled.url}/fail/{code}").connect()
    line = str(e.value)
    assert words in line and f"made to fail with {code}" in line and "\n" not in line
    assert code != 429 or "retry after 7 s" in line


def test_tls_error_is_one_line(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it writes the self-signed certificate)")
    with StallServer(tls=tmp_path) as tls:
        with pytest.raises(RemoteError, match="TLS error with 127.0.0.1: .*CERTIFICATE_VERIFY_FAILED"):
            RemoteChat(tls.url).connect()
        line = one_line_error(cli("models", "--base-url", tls.url))
        assert "TLS error" in line and "SSL_CERT_FILE" in line
        cert = dict(os.environ, SSL_CERT_FILE=str(tmp_path / "cert.pem"))
        listed = subprocess.run([sys.executable, "-m", "edgechat.app.cli", "models", "--base-url", tls.url, "--json"],
                                capture_output=True, text=True, timeout=BOUND_S, env=cert)
        assert listed.returncode == 0 and MODEL in listed.stdout          # the CA trusted: it answers


def test_serve_runs_its_own_model_whatever_the_base_url(monkeypatch):
    """EDGECHAT_BASE_URL is the chat's and the one-shot's: serve loads its local model (nothing listens
    at that URL)."""
    monkeypatch.setenv("EDGECHAT_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    with Server("--threads", "1", "--ctx", "256") as server:
        assert server.health()["backend"] == "native"


# ---- a server stopped mid-stream ---------------------------------------------------------------------

def test_server_killed_mid_stream_one_shot_keeps_the_partial():
    """The one-shot's partial reply stays on stdout; one line on stderr says the stream broke; exit 1."""
    with Server("--threads", "2", "--ctx", "1024") as server:
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        proc = subprocess.Popen([sys.executable, "-m", "edgechat.app.cli", "-p", STORY, "--base-url", server.url,
                                 "--max-tokens", "1500", "--temp", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        first = proc.stdout.read(1)                          # the reply has started
        server.proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=BOUND_S)
    text, err = (first + out).decode(), err.decode()
    assert proc.returncode == 1, err
    assert len(text.strip()) > 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "closed the connection mid-reply" in lines[0] and "partial reply is kept" in lines[0]


@pytest.mark.asyncio
async def test_server_killed_mid_stream_tui_keeps_the_partial(db):
    """The TUI stores the partial reply with finish "error", marks it, and says so in one notice."""
    from edgechat.app.store import open_store
    from edgechat.app.tui.app import EdgechatApp
    from edgechat.app.tui.widgets.message_view import FINISH_NOTES
    from tui_support import start_reply, wait_reply
    with Server("--threads", "2", "--ctx", "1024") as server:
        app = EdgechatApp(make_args(base_url=server.url, max_tokens=1500), open_store(db), volatile=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: app.status.state == "ready", timeout=BOUND_S)
            reply = await start_reply(app, pilot, STORY)
            server.proc.send_signal(signal.SIGKILL)
            await wait_reply(app, pilot, timeout=BOUND_S)
            view = reply.view
            assert view.finish == "error" and FINISH_NOTES["error"] in view._note()
            notices = [n.message for n in app._notifications]
            assert any("closed the connection mid-reply" in m for m in notices), notices
    stored = open_store(db).messages(app.chat.id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].finish == "error" and stored[1].content.strip() and stored[1].content == reply.done.text
