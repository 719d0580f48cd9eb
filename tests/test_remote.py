"""The chat window and the one-shot on an OpenAI-compatible server: a real ``edgechat serve`` on a
loopback port (one for the module, with a key), no mocks. The oracle is the server itself, asked the
same thing through the official ``openai`` client: at temperature 0 the one-shot must print what it
answers, and count the tokens its usage reports. The key must never reach the chat database or
``--json``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from serve_support import Server, free_port
from tui_support import make_args, send, wait_reply, wait_until

openai = pytest.importorskip("openai")

KEY = "remote-test-key-7f3a9c"
MAX_PROMPT = 300              # the server's --max-prompt-tokens: the context-length test goes past it
BOUND_S = 120                 # the outer bound of a subprocess or a wait (a hung client fails the test)
PROMPT = "Say hello."
REPLY_TOKENS = 16


@pytest.fixture(scope="module")
def server():
    with Server("--threads", "2", "--ctx", "1024", "--max-prompt-tokens", str(MAX_PROMPT), api_key=KEY) as s:
        yield s


@pytest.fixture(scope="module")
def oracle(server):
    """The server's own greedy answer to PROMPT (text, usage), through the official client."""
    client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=BOUND_S)
    model = client.models.list().data[0].id
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}],
                                       temperature=0, max_tokens=REPLY_TOKENS)
    return r.choices[0].message.content, r.usage, model


def cli(*args: str, key: str | None = KEY) -> subprocess.CompletedProcess:
    """``edgechat ARGS`` with the key in the environment (as a user sets it), never on the command line."""
    env = {k: v for k, v in os.environ.items() if k not in ("EDGECHAT_BASE_URL", "OPENAI_API_KEY")}
    env.update(HF_HUB_OFFLINE="1")
    env.pop("EDGECHAT_REMOTE_KEY", None)
    if key is not None:
        env["EDGECHAT_REMOTE_KEY"] = key
    return subprocess.run([sys.executable, "-m", "edgechat.app.cli", *args], capture_output=True, text=True,
                          timeout=BOUND_S, env=env)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgechat: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ---- models and doctor ----------------------------------------------------------------------------

def test_models_lists_the_servers_models(server, oracle):
    listed = json.loads(cli("models", "--base-url", server.url, "--json").stdout)
    assert [m["id"] for m in listed] == [oracle[2]] and listed[0]["base_url"] == server.url
    text = cli("--base-url", server.url, "models")              # the option before the subcommand too
    assert text.returncode == 0 and oracle[2] in text.stdout and KEY not in text.stdout


def test_models_without_a_path_uses_v1(server, oracle):
    r = cli("models", "--base-url", server.base, "--json")       # http://host:port -> /v1
    assert [m["id"] for m in json.loads(r.stdout)] == [oracle[2]]


def test_doctor_checks_the_endpoint(server, oracle):
    ok = cli("doctor", "--base-url", server.url)
    assert ok.returncode == 0 and oracle[2] in ok.stdout and "no problems found" in ok.stdout
    bad = cli("doctor", "--base-url", server.url, "--json", key="wrong")
    report = json.loads(bad.stdout)
    assert bad.returncode == 1 and not report["reachable"] and "401" in report["problems"][0]
    assert "wrong" not in bad.stdout


# ---- one-shot -------------------------------------------------------------------------------------

def test_one_shot_prints_the_servers_answer(server, oracle):
    r = cli("-p", PROMPT, "--base-url", server.url, "--temp", "0", "--max-tokens", str(REPLY_TOKENS))
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n") == oracle[0]


def test_one_shot_json_reports_remote_and_never_the_key(server, oracle):
    r = cli("-p", PROMPT, "--base-url", server.url, "--temp", "0", "--max-tokens", str(REPLY_TOKENS), "--json", "-v")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    text, usage, model = oracle
    assert out["backend"] == "remote" and out["model"] == model and out["path"] == server.url
    assert out["text"] == text and out["finish_reason"] in ("stop", "length")
    assert out["tokens"] == {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens}
    assert out["speculative"] == "remote" and out["cache"] == "remote"
    assert KEY not in r.stdout and KEY not in r.stderr


def test_key_on_the_command_line_never_printed(server):
    r = cli("-p", PROMPT, "--base-url", server.url, "--remote-key", KEY, "--max-tokens", "4", "--json", "-v", key=None)
    assert r.returncode == 0 and KEY not in r.stdout + r.stderr


def test_wrong_key_is_one_line_401(server):
    line = one_line_error(cli("-p", PROMPT, "--base-url", server.url, key="not-the-key"))
    assert "401" in line and "--remote-key" in line and "not-the-key" not in line


def test_unreachable_port_is_one_line():
    url = f"http://127.0.0.1:{free_port()}/v1"                 # nothing listens there
    line = one_line_error(cli("-p", PROMPT, "--base-url", url))
    assert "cannot reach" in line and url in line


def test_unknown_model_is_one_line(server, oracle):
    line = one_line_error(cli("-p", PROMPT, "--base-url", server.url, "-m", "no-such-model"))
    assert "no-such-model" in line and oracle[2] in line


def test_context_length_400_is_one_clear_line(server):
    line = one_line_error(cli("-p", "word " * (2 * MAX_PROMPT), "--base-url", server.url))
    assert "longer than the server's context" in line


@pytest.mark.parametrize("url", ["ftp://host/v1", "localhost:8080", "http://user:pw@host/v1"])
def test_a_bad_url_is_a_usage_error(url):
    r = cli("-p", PROMPT, "--base-url", url)
    assert r.returncode == 2 and "--base-url" in r.stderr and "Traceback" not in r.stderr


def test_local_only_options_are_refused_on_a_server(server, tmp_path):
    line = one_line_error(cli("-p", PROMPT, "--base-url", server.url, "--session", str(tmp_path / "s")))
    assert "--session" in line


# ---- structured output, straight through ----------------------------------------------------------

CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                            "parameters": CITY}}


def test_one_shot_json_schema_goes_to_the_server(server):
    """--json-schema becomes response_format: the server constrains the reply; jsonschema judges it."""
    jsonschema = pytest.importorskip("jsonschema")
    r = cli("-p", "Name a city in France.", "--base-url", server.url, "--json-schema", json.dumps(CITY),
            "--temp", "0", "--max-tokens", "40", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["finish_reason"] == "stop"
    jsonschema.validate(json.loads(out["text"]), CITY)


def test_tools_go_to_the_server_and_its_calls_come_back(server, oracle):
    """The streamed tool-call pieces add up to the calls the server answers unstreamed (the oracle)."""
    from edgechat.runtime.events import DoneEvent
    from edgechat.runtime.reply import Reply
    from edgechat.runtime.remote import RemoteChat
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=BOUND_S)
    expected = client.chat.completions.create(model=oracle[2], messages=ask, tools=[WEATHER], tool_choice="required",
                                              temperature=0, max_tokens=60).choices[0].message.tool_calls
    remote = RemoteChat(server.url, api_key=KEY).connect()
    reply = Reply(None)
    events = list(remote.chat(ask, reply=reply, tools=[WEATHER], tool_choice="required", temp=0, max_tokens=60))
    remote.close()
    assert isinstance(events[-1], DoneEvent) and events[-1].finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in reply.tool_calls] == \
        [(c.function.name, json.loads(c.function.arguments)) for c in expected] and expected


# ---- the chat window ------------------------------------------------------------------------------

def _db_bytes(home) -> bytes:
    """Every file under the edgechat home (the database, its WAL, KV snapshots)."""
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


@pytest.mark.asyncio
async def test_tui_chat_streams_from_the_server_and_is_saved(server, oracle, db, monkeypatch):
    """A chat started with --base-url streams the server's reply, is saved with where it ran (URL and
    model id, never the key), says "remote" for what only a local engine has, and reconnects when it
    is opened again in a new window."""
    from edgechat.app.store import open_store
    from edgechat.app.tui.app import EdgechatApp
    from edgechat.app.tui.screens import StatsScreen
    monkeypatch.setenv("EDGECHAT_REMOTE_KEY", KEY)
    args = make_args(base_url=server.url, max_tokens=REPLY_TOKENS, temp=0.0)
    app = EdgechatApp(args, open_store(db), volatile=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: app.status.state == "ready", timeout=BOUND_S)
        await send(app, pilot, PROMPT)
        status = str(app.status.render())
        assert "remote" in status and "KV, sinks, speculation: remote" in status
        await send(app, pilot, "/stats")
        assert isinstance(app.screen, StatsScreen) and app.screen.data["cache"] == {"remote": "the server's"}
        assert app.screen.data["info"]["backend"] == "remote" and app.screen.data["info"]["speculation"] == "remote"
        await pilot.press("escape")
        chat_id = app.chat.id
    app.store.close()                                           # the window has gone: its chats are free
    store = open_store(db)
    stored = store.messages(chat_id)
    assert [(m.role, m.content) for m in stored] == [("user", PROMPT), ("assistant", oracle[0])]
    assert store.get_chat(chat_id).settings["remote"] == {"url": server.url, "model": oracle[2]}
    store.close()
    assert KEY.encode() not in _db_bytes(db.parent)

    again = EdgechatApp(make_args(max_tokens=REPLY_TOKENS, temp=0.0), open_store(db), volatile=False)
    async with again.run_test(size=(120, 30)) as pilot:          # no --base-url: the chat knows its server
        await again._switch_to(chat_id)
        await wait_until(pilot, lambda: again.status.state == "ready" and again.engine is not None
                         and again.engine.info.backend == "remote", timeout=BOUND_S)
        await send(again, pilot, "And goodbye.")
    stored = open_store(db).messages(chat_id)
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"] and stored[3].content
    assert KEY.encode() not in _db_bytes(db.parent)


@pytest.mark.asyncio
async def test_tui_remote_command_moves_a_chat_to_the_server_and_back(server, oracle, db, monkeypatch):
    """/remote URL moves a local chat to the server (the next reply is the server's), /model lists the
    server's models beside the local ones, /remote off brings it back to its local model."""
    from edgechat.app.store import open_store
    from edgechat.app.tui.app import EdgechatApp
    from edgechat.app.tui.remote import REMOTE, picker_models
    from edgechat.app.tui.screens.model_picker import local_models
    from tui_support import scripted_engine
    monkeypatch.setenv("EDGECHAT_REMOTE_KEY", KEY)
    local = scripted_engine()
    app = EdgechatApp(make_args(max_tokens=REPLY_TOKENS, temp=0.0), open_store(db), engine=local, volatile=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await send(app, pilot, f"/remote {server.url}")
        await wait_until(pilot, lambda: app.engine is not None and app.engine.info.backend == "remote",
                         timeout=BOUND_S)
        await send(app, pilot, PROMPT)
        assert app.history[-1].content == oracle[0]
        current, models = picker_models(app, local_models())
        assert current == (REMOTE, oracle[2]) and models[0][0] == (REMOTE, oracle[2])
        assert any(isinstance(name, str) for name, _ in models)          # the local ones follow
        prompt = app.query_one("#prompt")                   # past the server's context: one notice
        prompt.value = "word " * (2 * MAX_PROMPT)
        await prompt.action_submit()
        await wait_reply(app, pilot)
        assert any("longer than the server's context" in n.message for n in app._notifications)
        assert [m.role for m in app.store.messages(app.chat.id)] == ["user", "assistant", "user"]  # kept
        await send(app, pilot, "/remote off")
        assert REMOTE not in app.chat.settings and app.host.key[3] == ""
        dead = f"http://127.0.0.1:{free_port()}/v1"          # nothing listens: one notice, the chat kept
        await send(app, pilot, f"/remote {dead}")
        await wait_until(pilot, lambda: app.status.state == "error", timeout=BOUND_S)
        assert any(n.title == "Cannot reach the server" and "cannot reach" in n.message for n in app._notifications)
        assert app.chat.settings[REMOTE]["url"] == dead
    local.close()
