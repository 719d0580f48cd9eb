"""The chat TUI driven with Textual's Pilot, on the scripted engine (tui_support: the real Engine,
tokenizer and template with scripted replies at the generate seam), plus one smoke test on the real
default model (greedy, short replies).

The context map after eviction (a 256-token cache) is checked in test_tui_snapshots.py, in the same
run that takes its screenshot.
"""
from __future__ import annotations

import sqlite3
import time

import pytest

from edgechat.app.store import open_store
from edgechat.app.tui.app import EdgechatApp
from edgechat.app.tui.screens import ConfirmScreen, HelpScreen, ModelPicker, SettingsScreen, StatsScreen
from edgechat.app.tui.widgets import ChatList, StatusBar
from edgechat.runtime.events import DoneEvent
from tui_support import (load_engine, make_args, scripted_engine, scripted_reply, send, start_reply,
                         wait_reply, wait_until)

SIZE = (100, 32)
pytestmark = pytest.mark.asyncio


TOKEN_DELAY_S = 0.01        # the scripted engine's time per token: replies stream for a while


@pytest.fixture(scope="module")
def engine():
    eng = scripted_engine(ctx=2048, delay=TOKEN_DELAY_S)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def real_engine():
    eng = load_engine(ctx=2048)
    yield eng
    eng.close()


def make_app(engine, db, **args) -> EdgechatApp:
    return EdgechatApp(make_args(**args), open_store(db), engine=engine, volatile=False)


def rows(db, sql: str, *params) -> list[tuple]:
    """Committed rows, through a connection of our own."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def reference_reply(engine, messages, max_tokens: int) -> str:
    """What the engine itself answers to ``messages``, greedy."""
    *_, done = engine.chat(messages, max_tokens=max_tokens, temp=0.0)
    return done.text


class Watched:
    """The engine, seen from its worker thread: what the database holds when a reply starts and ends;
    each piece is held back 20 ms so the test sees the reply drawn piece by piece."""

    def __init__(self, engine, db):
        self._engine, self._db = engine, db
        self.at_start = self.at_end = None

    def chat(self, messages, **kwargs):
        self.at_start = rows(self._db, "SELECT role FROM messages")
        for event in self._engine.chat(messages, **kwargs):
            if isinstance(event, DoneEvent):
                self.at_end = rows(self._db, "SELECT role FROM messages")
            else:
                time.sleep(0.02)
            yield event

    def __getattr__(self, name):
        return getattr(self._engine, name)


async def test_send_streams_the_reply_and_commits_each_message(real_engine, db):
    """Smoke test on the real model: the reply streams piece by piece and is what the engine answers."""
    engine = real_engine
    watched = Watched(engine, db)
    app = make_app(watched, db, max_tokens=24)
    seen = []                                          # the reply's Markdown source as it streams
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "Hi! What is your name?", wait=False)
        while app.reply is not None:
            seen.append(app.reply.view.markdown.source)
            await pilot.pause(0.01)
        await wait_reply(app, pilot)
        views = app.transcript.views
        shown = views[-1].content
        status = app.query_one(StatusBar)
        assert status.state == "ready" and status.cache.used > 0
    # the user message is committed when sent; the reply only when it has ended
    assert watched.at_start == watched.at_end == [("user",)]
    assert [v.role for v in views] == ["user", "assistant"]
    assert shown and any(0 < len(s) < len(shown) and shown.startswith(s) for s in seen), \
        "the reply was not drawn piece by piece"
    stored = rows(db, "SELECT role, content, finish FROM messages ORDER BY id")
    assert stored[1] == ("assistant", shown, views[-1].finish)
    assert views[-1].finish in ("stop", "length")
    assert shown == reference_reply(engine, [{"role": "user", "content": "Hi! What is your name?"}], 24)


async def test_stop_keeps_the_partial_reply_and_the_next_turn_works(engine, db):
    app = make_app(engine, db, max_tokens=200)
    async with app.run_test(size=SIZE) as pilot:
        for key, prompt in (("escape", "Write a long story about a brave dragon."),
                            ("ctrl+c", "Now write a long poem about the sea.")):
            reply = await start_reply(app, pilot, prompt)
            await pilot.press(key)
            await wait_reply(app, pilot, timeout=30)
            assert reply.view.has_class("-stopped") and "stopped" in str(
                reply.view.query_one(".note").render())
        await send(app, pilot, "Thanks! Now say goodbye.")
        shown = [(v.content, v.markdown.source) for v in app.transcript.views[1::2]]
    stored = rows(db, "SELECT role, content, finish, stats FROM messages ORDER BY id")
    assert [r[0] for r in stored] == ["user", "assistant"] * 3
    for (_, content, finish, stats), (kept, drawn) in zip(stored[1::2][:2], shown[:2], strict=True):
        assert finish == "cancelled" and content == kept and content
        assert '"completion_tokens"' in stats and drawn.strip() == content.strip()
    assert stored[5][2] in ("stop", "length") and stored[5][1]


async def test_quitting_mid_reply_commits_the_partial_reply(engine, db):
    app = make_app(engine, db, max_tokens=200)
    async with app.run_test(size=SIZE) as pilot:
        await start_reply(app, pilot, "Write a long story about a brave dragon.")
        await pilot.press("ctrl+q")
    stored = rows(db, "SELECT role, content, finish FROM messages ORDER BY id")
    assert [(r[0], r[2]) for r in stored] == [("user", None), ("assistant", "cancelled")]
    assert stored[1][1]


async def test_changing_the_system_prompt_mid_reply_stops_and_keeps_it(engine, db):
    app = make_app(engine, db, max_tokens=1000)
    async with app.run_test(size=SIZE) as pilot:
        await start_reply(app, pilot, "Write a long story about a brave dragon.")
        app.query_one("#prompt").value = "/system Be brief."         # at once: the reply is fast
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(rows(db, "SELECT id FROM messages")) == 2)
        await wait_until(pilot, lambda: len(app.transcript.views) == 3)
        views = app.transcript.views
        assert [v.role for v in views] == ["system", "user", "assistant"]
        assert views[0].content == "Be brief." and views[2].finish == "cancelled"
    assert rows(db, "SELECT finish FROM messages WHERE role = 'assistant'") == [("cancelled",)]


async def test_transcript_follows_the_reply_only_when_at_the_bottom(engine, db):
    app = make_app(engine, db, max_tokens=100)
    async with app.run_test(size=(80, 16)) as pilot:
        transcript = app.transcript
        await send(app, pilot, "Write a long story about a brave dragon.", wait=False)
        reply = app.reply
        await wait_until(pilot, lambda: transcript.max_scroll_y > 2 or app.reply is None)
        assert app.reply is not None, "the reply ended before it filled the screen"
        assert transcript.scroll_y == transcript.max_scroll_y            # following
        transcript.scroll_home(animate=False)                          # the user scrolls up
        grown = transcript.max_scroll_y
        await wait_until(pilot, lambda: transcript.max_scroll_y > grown + 1 or app.reply is None)
        assert transcript.scroll_y == 0                                # left where the user put it
        await pilot.press("escape")
        await wait_reply(app, pilot)
        assert transcript.scroll_y == 0 and reply.view.finish
        await send(app, pilot, "Thanks", wait=False)                   # sending goes to the bottom
        await pilot.pause()
        assert transcript.scroll_y == transcript.max_scroll_y
        await pilot.press("escape")
        await wait_reply(app, pilot)


async def test_switching_chats_keeps_each_conversation_and_its_settings(engine, db):
    app = make_app(engine, db, max_tokens=8)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "Hello there")
        first = app.chat.id
        await send(app, pilot, "/new", wait=False)
        await send(app, pilot, "/system You answer in one word.", wait=False)
        await send(app, pilot, "What color is the sky?")
        second = app.chat.id
        assert first != second
        assert [v.role for v in app.transcript.views] == ["system", "user", "assistant"]
        # pick the first chat in the sidebar
        chats = app.query_one(ChatList)
        chats.focus()
        chats.highlighted = chats.get_option_index(str(first))
        await pilot.press("enter")
        await pilot.pause()
        assert app.chat.id == first and app.chat.system == ""
        assert [v.content for v in app.transcript.views][0] == "Hello there"
        await send(app, pilot, "How are you?")
        assert len(app.transcript.views) == 4
    assert rows(db, "SELECT system FROM chats WHERE id = ?", second) == [("You answer in one word.",)]
    assert rows(db, "SELECT count(*) FROM messages WHERE chat_id = ?", first) == [(4,)]
    assert rows(db, "SELECT count(*) FROM messages WHERE chat_id = ?", second) == [(2,)]


async def test_slash_commands(engine, db, tmp_path):
    app = make_app(engine, db, max_tokens=8)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "Name a fruit.")
        first_reply = app.transcript.views[-1]

        await send(app, pilot, "/regen")
        assert app.transcript.views[-1] is not first_reply
        assert app.transcript.views[-1].content == first_reply.content      # greedy: same words
        assert len(rows(db, "SELECT id FROM messages")) == 3                # the first reply: a branch

        await send(app, pilot, "/copy", wait=False)
        assert app.clipboard == app.transcript.views[-1].content

        await send(app, pilot, "/rename Fruit talk", wait=False)
        assert app.chat.title == "Fruit talk"
        assert "Fruit talk" in str(app.query_one(ChatList).get_option(str(app.chat.id)).prompt)

        await send(app, pilot, "/export", wait=False)
        exported = list(tmp_path.glob("edgechat-*-fruit-talk.md"))
        assert len(exported) == 1
        text = exported[0].read_text()
        assert "# Fruit talk" in text and "Name a fruit." in text and first_reply.content in text

        for command, screen in (("/stats", StatsScreen), ("/help", HelpScreen),
                                ("/model", ModelPicker), ("/system", SettingsScreen)):
            await send(app, pilot, command, wait=False)
            assert isinstance(app.screen, screen), command
            await pilot.press("escape")
            assert len(app.screen_stack) == 1

        await send(app, pilot, "/clear", wait=False)
        assert app.transcript.views == [] and rows(db, "SELECT count(*) FROM messages") == [(0,)]

        told = []
        notify = app.notify
        app.notify = lambda message, **kw: (told.append(message), notify(message, **kw))
        await send(app, pilot, "/nonsense", wait=False)
        assert any("Unknown command /nonsense" in m for m in told)

        await send(app, pilot, "/delete", wait=False)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert rows(db, "SELECT title FROM chats") == [("New chat",)]


async def test_settings_editor_saves_the_system_prompt_and_sampling(engine, db):
    app = make_app(engine, db, max_tokens=8)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        assert isinstance(app.screen, SettingsScreen)
        assert app.screen.query_one("#kv-type").value == "auto"          # --kv-type's default
        key = app.host.key
        await pilot.press(*"You are terse.")
        app.screen.query_one("#top_k").value = "5"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert len(app.screen_stack) == 1
        assert app.chat.system == "You are terse." and app.chat.settings["top_k"] == 5
        assert app.chat.settings["kv_type"] == "auto" and app.host.key == key    # the same engine: no reload
        assert app.transcript.views[0].role == "system"
        await send(app, pilot, "Hi")
    assert rows(db, "SELECT system, settings FROM chats")[0][0] == "You are terse."


async def test_settings_editor_refuses_values_the_command_line_refuses(engine, db):
    # the CLI's bounds (--max-tokens >= 1, --temp >= 0, ...): a bad value is one notice, the screen stays
    # open and nothing is saved
    app = make_app(engine, db, max_tokens=8)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        before = dict(app.chat.settings)
        for key, text, words in (("max_tokens", "0", "Max reply tokens: 0 is below 1"),
                                 ("temp", "nan", "Temperature: nan is below 0.0")):
            app.screen.query_one(f"#{key}").value = text
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert isinstance(app.screen, SettingsScreen) and app.chat.settings == before
            assert words in [n.message for n in app._notifications]
            app.screen.query_one(f"#{key}").value = ""
        app.screen.query_one("#seed").value = "-1"              # llama.cpp's "random": accepted
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert len(app.screen_stack) == 1 and app.chat.settings["seed"] == -1
        await send(app, pilot, "Hi")                             # and a reply samples with it


async def test_chats_survive_a_restart(engine, db):
    app = make_app(engine, db, max_tokens=8)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "Remember the word apple.")
        chat_id, reply = app.chat.id, app.transcript.views[-1].content
    app.store.close()

    app = make_app(engine, db, max_tokens=8)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.chat.id != chat_id and app.transcript.views == []     # a fresh chat opens
        chats = app.query_one(ChatList)
        listed = [o.id for o in chats.options]
        assert str(chat_id) in listed
        await pilot.click(chats, offset=(2, listed.index(str(chat_id))))
        await wait_until(pilot, lambda: app.chat.id == chat_id)
        await pilot.pause()
        assert [(v.role, v.content) for v in app.transcript.views] == [
            ("user", "Remember the word apple."), ("assistant", reply)]
        # the conversation goes on where it stopped
        await send(app, pilot, "Which word?")
        assert len(app.transcript.views) == 4
    app.store.close()


async def test_input_history_recalls_sent_messages(engine, db):
    app = make_app(engine, db, max_tokens=4)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "first")
        await send(app, pilot, "second")
        prompt = app.query_one("#prompt")
        await pilot.press(*"draft")
        await pilot.press("up")
        assert prompt.value == "second"
        await pilot.press("up", "up")
        assert prompt.value == "first"
        await pilot.press("down", "down")
        assert prompt.value == "draft"


async def test_broken_database_is_explained_and_the_chat_goes_on(engine, db):
    db.write_bytes(b"not a database at all" * 50)
    app = make_app(engine, db, max_tokens=4)
    async with app.run_test(size=SIZE) as pilot:
        banner = app.query_one("#store-problem")
        assert banner.display and "left untouched" in str(banner.render())
        await send(app, pilot, "Hello")
        assert [v.role for v in app.transcript.views] == ["user", "assistant"]
    assert db.read_bytes() == b"not a database at all" * 50


async def test_model_picker_lists_the_packaged_default():
    from edgechat.app.tui.screens.model_picker import local_models
    models = local_models()
    assert models and models[0][0] == "" and "packaged" in models[0][1]


async def test_empty_or_whitespace_input_is_not_sent(engine, db):
    app = make_app(engine, db, max_tokens=4)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"   ", "enter")
        await pilot.pause()
        assert app.reply is None and app.history == []
        assert rows(db, "SELECT role FROM messages") == []
        await send(app, pilot, "hi")
        assert [m.role for m in app.history] == ["user", "assistant"]


async def test_a_message_sent_during_a_reply_is_queued_whole(engine, db):
    """Enter while a reply streams: the message leaves the input whole and is sent, unchanged, when the
    reply ends (typing meanwhile goes into an empty input, never into the queued text)."""
    app = make_app(engine, db, max_tokens=200)
    async with app.run_test(size=SIZE) as pilot:
        await start_reply(app, pilot, "Continue the story. Make it long.")
        prompt = app.query_one("#prompt")
        prompt.value = "What was the dragon's name?"
        await prompt.action_submit()
        await pilot.pause()
        assert app.reply is not None and prompt.value == ""
        await wait_until(pilot, lambda: len(app.history) == 4 and app.reply is None)
        await wait_reply(app, pilot)
    users = [r[0] for r in rows(db, "SELECT content FROM messages WHERE role = 'user' ORDER BY id")]
    assert users == ["Continue the story. Make it long.", "What was the dragon's name?"]
    assert app.history[-1].content == scripted_reply([{"role": "user", "content": users[1]}])


async def test_a_second_message_during_a_reply_stays_in_the_input(engine, db):
    """With one message queued already, Enter leaves the input as typed (with a warning)."""
    app = make_app(engine, db, max_tokens=200)
    async with app.run_test(size=SIZE) as pilot:
        await start_reply(app, pilot, "Write a long story about a brave dragon.")
        prompt = app.query_one("#prompt")
        for text in ("first queued", "second one"):
            prompt.value = text
            await prompt.action_submit()
            await pilot.pause()
        assert prompt.value == "second one" and app.reply is not None
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(app.history) == 4 and app.reply is None)
        assert [m.content for m in app.history if m.role == "user"] == [
            "Write a long story about a brave dragon.", "first queued"]


async def test_stats_answers_during_a_reply(engine, db):
    """/stats while a reply streams opens the stats screen at once, with the cache as it is now."""
    app = make_app(engine, db, max_tokens=200)
    async with app.run_test(size=SIZE) as pilot:
        await start_reply(app, pilot, "Write a long story about a brave dragon.")
        prompt = app.query_one("#prompt")
        prompt.value = "/stats"
        await prompt.action_submit()
        await pilot.pause()
        assert isinstance(app.screen, StatsScreen) and app.reply is not None   # the reply still runs
        assert app.screen.data["cache"]["n_past"] > 0
        await pilot.press("escape")
        app.action_stop()
        await wait_reply(app, pilot)


async def test_chat_settings_keep_an_explicit_kv_type_only():     # async: the module is marked asyncio
    from argparse import Namespace

    from edgechat.app.tui import settings
    assert "kv_type" not in settings.from_args(Namespace(kv_type="auto", pin_system=False))
    assert settings.from_args(Namespace(kv_type="f16", pin_system=False))["kv_type"] == "f16"
    assert "f16 KV" in settings.summary({"kv_type": "f16"}) and "q8_0 KV" in settings.summary({"kv_type": "q8_0"})
    assert "KV" not in settings.summary({"kv_type": "auto"})
