"""The TUI's "reply format" setting (none / json / a JSON schema file): kept in the chat's settings, the
reply constrained with the real default model, a bad schema refused with one notice."""
from __future__ import annotations

import json
import sqlite3

import jsonschema
import pytest

from edgechat.app.store import open_store
from edgechat.app.tui.app import EdgechatApp
from edgechat.app.tui.screens import SettingsScreen
from tui_support import load_engine, make_args, send

SIZE = (100, 32)
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0}}}
pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def engine():
    eng = load_engine(ctx=2048)
    yield eng
    eng.close()


def last_reply(db) -> tuple[str, str]:
    """(content, finish) of the last reply, as the store committed it."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT content, finish FROM messages WHERE role = 'assistant' "
                            "ORDER BY id DESC").fetchone()
    finally:
        conn.close()


async def set_format(app, pilot, value: str) -> None:
    await pilot.press("f3")
    assert isinstance(app.screen, SettingsScreen)
    app.screen.query_one("#reply-format").value = value
    await pilot.press("ctrl+s")
    await pilot.pause()


async def test_reply_format_schema_file_constrains_the_reply(engine, db, tmp_path):
    schema_file = tmp_path / "person.json"
    schema_file.write_text(json.dumps(SCHEMA))
    app = EdgechatApp(make_args(max_tokens=64), open_store(db), engine=engine, volatile=False)
    async with app.run_test(size=SIZE) as pilot:
        await set_format(app, pilot, str(schema_file))
        assert len(app.screen_stack) == 1 and app.chat.settings["reply_format"] == str(schema_file)
        await send(app, pilot, "Describe a person.")
        text, finish = last_reply(db)
        assert finish == "stop", text
        jsonschema.validate(json.loads(text), SCHEMA)
        await set_format(app, pilot, "json")
        assert app.chat.settings["reply_format"] == "json"
        await send(app, pilot, "Anything.")
        text, finish = last_reply(db)
        assert text.startswith("{")                       # any JSON object: a long one may hit the limit
        if finish == "stop":
            assert isinstance(json.loads(text), dict)


async def test_bad_reply_format_is_one_notice(engine, db, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "strng"}')
    app = EdgechatApp(make_args(), open_store(db), engine=engine, volatile=False)
    async with app.run_test(size=SIZE) as pilot:
        before = dict(app.chat.settings)
        await pilot.press("f3")
        for value, words in ((str(bad), "strng"), (str(tmp_path / "missing.json"), "cannot read")):
            app.screen.query_one("#reply-format").value = value
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert isinstance(app.screen, SettingsScreen) and app.chat.settings == before
            assert any(n.message.startswith("reply format") and words in n.message for n in app._notifications)
