"""Reading a long prompt in the TUI: a progress bar with tokens done / total and the time left in the
reply's place, gone when the reply starts; Esc stops the reading (the reply is kept, empty, with how
much of the prompt was read) and the next message works. The scripted engine reads each 256-token
chunk of a prompt in ``PREFILL_DELAY_S``, so a long prompt takes long enough to show the bar."""
from __future__ import annotations

import pytest

from edgechat.app.prompt_notice import PROGRESS_AFTER_S
from edgechat.app.tui.app import EdgechatApp
from edgechat.app.tui.widgets.prefill_bar import PrefillBar
from edgechat.runtime.prefill import PREFILL_CHUNK
from tui_support import engine_fixture, send, tui_app, wait_reply, wait_until

pytestmark = pytest.mark.asyncio
SIZE = (100, 32)
PREFILL_DELAY_S = 0.25
LONG = " ".join(f"Line {i}: the lighthouse keeper logs the ships that pass the northern cape." for i in range(150))


engine = engine_fixture(ctx=4096, prefill_delay=PREFILL_DELAY_S)


def make_app(engine, db) -> EdgechatApp:
    engine.reset()                        # nothing cached: the whole prompt is read
    return tui_app(engine, db, ctx=4096, max_tokens=8)


async def submit(app, pilot, text: str) -> None:
    """Put ``text`` in the input at once (typing it key by key would take minutes) and submit it."""
    prompt = app.query_one("#prompt")
    prompt.value = text
    await prompt.action_submit()
    await wait_until(pilot, lambda: app.reply is not None, timeout=10)


def bar_of(app) -> PrefillBar | None:
    bars = app.transcript.query(PrefillBar)
    return bars.first() if bars else None


async def test_a_long_prompt_shows_its_progress_until_the_reply_starts(engine, db):
    prompt_tokens = len(engine.tokenize(LONG))
    assert prompt_tokens // PREFILL_CHUNK * PREFILL_DELAY_S > PROGRESS_AFTER_S    # long enough to show
    app = make_app(engine, db)
    seen = []                                       # (done, total) of the bar as it is drawn
    async with app.run_test(size=SIZE) as pilot:
        await submit(app, pilot, LONG)
        reply = app.reply
        while app.reply is not None:
            bar = bar_of(app)
            if bar is not None and bar.query("ProgressBar") and bar.query_one("ProgressBar").total:   # drawn
                pb = bar.query_one("ProgressBar")
                seen.append((int(pb.progress), int(pb.total)))
                assert "tokens, about" in str(bar.query_one(".figures").render())
            await pilot.pause(0.02)
        await wait_reply(app, pilot)
        assert bar_of(app) is None and reply.view.content.startswith("You asked:")
        total = app.last_stats["prompt_tokens"]
    assert seen, "no progress bar was drawn"
    assert {t for _, t in seen} == {total} and total >= prompt_tokens
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and 0 < dones[0] < total and dones[-1] > dones[0]


async def test_esc_stops_reading_the_prompt_and_the_next_message_works(engine, db):
    app = make_app(engine, db)
    async with app.run_test(size=SIZE) as pilot:
        await submit(app, pilot, LONG)
        reply = app.reply
        await wait_until(pilot, lambda: bar_of(app) is not None, timeout=30)
        await pilot.press("escape")
        await wait_reply(app, pilot)
        view = reply.view
        note = str(view.query_one(".note").render())
        assert view.finish == "cancelled" and view.content == "" and bar_of(app) is None
        read, of = reply.prefill.done, reply.prefill.total
        assert 0 < read < of and f"stopped while reading the prompt ({read:,} of {of:,} tokens read)" in note
        await send(app, pilot, "Hello again")
        assert app.transcript.views[-1].content.startswith("You asked: Hello again")
    assert [(m.role, m.finish) for m in app.store.messages(app.chat.id)] == [
        ("user", None), ("assistant", "cancelled"), ("user", None), ("assistant", "length")]
