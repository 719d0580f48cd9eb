"""Thinking models in the TUI, with the scripted engine at the generate seam writing a ``<think>``
block (tui_support: a question that asks to think): /think on splits the reasoning off into a dimmed
block above the answer, open while it streams and collapsed once the answer starts, counted in the
status bar; only the answer is stored as the reply's text (the reasoning beside it, shown again after
a restart); the default model's template has no thinking switch, said in one notice; /think off."""
from __future__ import annotations

import pytest

from edgechat.app.tui.app import EdgechatApp
from edgechat.app.tui.widgets.reasoning import ReasoningBlock
from tui_support import THOUGHT, engine_fixture, send, tui_app, wait_reply, wait_until

pytestmark = pytest.mark.asyncio
SIZE = (100, 32)
TOKEN_DELAY_S = 0.02         # the block is seen open while the reasoning streams


engine = engine_fixture(ctx=2048, delay=TOKEN_DELAY_S)


def make_app(engine, db) -> EdgechatApp:
    return tui_app(engine, db, max_tokens=40)


async def test_think_on_shows_the_reasoning_apart_from_the_answer(engine, db):
    app = make_app(engine, db)
    async with app.run_test(size=SIZE) as pilot:
        told = []
        notify = app.notify
        app.notify = lambda message, **kw: (told.append(message), notify(message, **kw))
        await send(app, pilot, "/think on", wait=False)
        await wait_until(pilot, lambda: app.chat.settings.get("think") is True, timeout=10)
        assert sum("has no thinking switch" in m for m in told) == 1
        assert "thinking on" in str(app.query_one("#chat-settings").render())
        await send(app, pilot, "Think, then answer.", wait=False)
        reply = app.reply
        await wait_until(pilot, lambda: reply.view.query(ReasoningBlock), timeout=30)
        block = reply.view.query_one(ReasoningBlock)
        assert not block.collapsed and block.title.startswith("Thinking…")   # open while it streams
        await wait_reply(app, pilot)
        assert block.collapsed and block.text == THOUGHT and block.title == f"Thought ({block.tokens:,} tokens)"
        assert app.status.reasoning_tokens == block.tokens > 0
        assert f"thought {block.tokens}" in str(app.status.render())
        answer = reply.view.content
        assert answer.startswith("You asked: Think, then answer.") and "<think>" not in answer
        stored = app.store.messages(app.chat.id)[-1]
        assert stored.content == answer and stored.stats["reasoning"] == THOUGHT
        chat_id = app.chat.id
    app.store.close()

    app = make_app(engine, db)                                   # after a restart: collapsed, kept
    async with app.run_test(size=SIZE) as pilot:
        await app._switch_to(chat_id)
        await wait_until(pilot, lambda: app.chat.id == chat_id, timeout=10)
        block = app.transcript.views[-1].query_one(ReasoningBlock)
        assert block.collapsed and block.text == THOUGHT
        await send(app, pilot, "/think off", wait=False)
        await wait_until(pilot, lambda: app.chat.settings.get("think") is False, timeout=10)
        await send(app, pilot, "Think again.")                   # not split: the model's own text
        assert app.transcript.views[-1].content.startswith("<think>")
    app.store.close()


async def test_think_switch_reaches_a_template_that_has_one(engine, db):
    """With a Qwen3-style template (enable_thinking), /think on|off reaches the template as its
    enable_thinking variable (tests/test_template_vars.py: off renders the empty <think></think> block
    into the prompt); no 'no thinking switch' notice."""
    from edgechat.runtime.template import ChatTemplate
    from test_template_vars import THINKING_TEMPLATE
    saved = engine.state.conv.template
    engine.state.conv.template = ChatTemplate(THINKING_TEMPLATE, engine.tokenizer)
    try:
        app = make_app(engine, db)
        async with app.run_test(size=SIZE) as pilot:
            told = []
            notify = app.notify
            app.notify = lambda message, **kw: (told.append(message), notify(message, **kw))
            for switch in ("off", "on"):
                await send(app, pilot, f"/think {switch}", wait=False)
                await wait_until(pilot, lambda: app.chat.settings.get("think") is (switch == "on"), timeout=10)
                await send(app, pilot, f"Hello, thinking {switch}.")
                await wait_reply(app, pilot)
                assert engine.conversation.variables == {"enable_thinking": switch == "on"}
            assert not any("no thinking switch" in m for m in told)
        app.store.close()
    finally:
        engine.state.conv.template = saved
