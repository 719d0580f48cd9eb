"""Screenshots of the TUI at fixed sizes, compared with the SVGs in tests/__snapshots__.

Deterministic: the scripted engine (tui_support: the real Engine, tokenizer and chat template, with
scripted replies at the generate seam, so the pictures do not change when a kernel's rounding does),
fixed prompts, a fresh cache per test, an in-memory store, and ``volatile=False`` (timings and RSS
drawn as dashes). The real model is exercised by the smoke test in test_tui.py. Regenerate after an
intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the report.
"""
from __future__ import annotations

import pytest

from edgechat.app.store import Store
from edgechat.app.tui.app import EdgechatApp
from tui_support import check_context_map, make_args, scripted_engine, send, wait_reply


@pytest.fixture(scope="module")
def engine():
    eng = scripted_engine(ctx=2048)
    yield eng
    eng.close()


def make_app(engine, store=None, **args) -> EdgechatApp:
    engine.reset()
    return EdgechatApp(make_args(ctx=engine.info.ctx, **args), store or Store(None),
                       engine=engine, volatile=False)


def test_first_start_80x24(engine, snap_compare):
    """A new, empty chat at 80x24.

    Reviewer: the sidebar lists one chat, "● New chat"; the header says "New chat" and the model's
    settings (temp 0); the transcript shows the two-line welcome hint; the input shows its
    placeholder; the status bar says the model is ready, its backend, "– tok/s", "RSS –" and an
    empty KV gauge 0/2,048 with sinks 4 and 0 evicted (shortened to fit); the footer lists the keys.
    """
    assert snap_compare(make_app(engine), terminal_size=(80, 24))


def test_reply_80x24(engine, snap_compare):
    """One greedy exchange at 80x24.

    Reviewer: "You" (accent bar) with the question, "Assistant" (green bar) with the scripted reply
    ("You asked: ..." then a paragraph with bold and italic words, cut at 24 tokens) rendered as Markdown; the chat is titled after the question in the sidebar and the header;
    the KV gauge counts the tokens of the exchange; nothing is dimmed (no eviction).
    """
    async def run_before(pilot):
        await send(pilot.app, pilot, "Hi! What is your name?")

    assert snap_compare(make_app(engine, max_tokens=24), terminal_size=(80, 24), run_before=run_before)


def test_help_80x24(engine, snap_compare):
    """The help screen (F1) at 80x24.

    Reviewer: a dialog over the dimmed chat lists the keys (Enter, Up/Down, Esc/Ctrl+C stop, Ctrl+N,
    ...) in two aligned columns, then the slash commands; it scrolls for the rest.
    """
    assert snap_compare(make_app(engine), terminal_size=(80, 24), press=["f1"])


@pytest.fixture
def small_engine():
    eng = scripted_engine(ctx=256)
    yield eng
    eng.close()


def test_context_map_200x60(small_engine, snap_compare):
    """A long chat in a 256-token cache at 200x60: the context map.

    Reviewer: the sidebar lists three chats (this one first, current and bold, then two older); the
    system prompt and the first turns are dimmed with notes ("left the context window ...";
    the system prompt keeps only its first tokens as attention sinks); an orange dashed divider
    says how many tokens left the 256-token window and that the first 4 tokens stay as attention
    sinks; the turns below it are drawn normally; the status bar, wide enough here, gives the
    backend's reason and a full KV gauge 256/256 with the evicted count in yellow.
    """
    store = Store(None)
    for title, question in (("Trip to Lisbon", "What should I see in Lisbon?"),
                            ("Rust lifetimes", "Explain lifetimes in Rust.")):
        chat = store.create_chat(title)
        store.add_message(chat.id, "user", question)

    async def run_before(pilot):
        app = pilot.app
        for topic in ("the sun", "the moon", "Mars", "Jupiter", "Saturn"):
            await send(app, pilot, f"Tell me about {topic}.")
            if any(v.window == "evicted" for v in app.transcript.views):
                break
        check_context_map(app, [m.content for m in app.store.messages(app.chat.id)])
        app.transcript.scroll_home(animate=False)

    app = make_app(small_engine, store, max_tokens=48, system="You are a helpful astronomy tutor.")
    assert snap_compare(app, terminal_size=(200, 60), run_before=run_before)


def test_branch_thinking_and_attachment_100x32(engine, snap_compare, tmp_path):
    """A chat with an edited message, a reply with a reasoning block, and a file attached, at 100x32.

    Reviewer: the first user message "Think about the sea." was edited to "Think about the sky."; it is
    focused (tinted, role line underlined) and its role line says "You  ‹ 2/2 ›"; the reply below it
    has a collapsed, dimmed "▶ Thought (N tokens)" line above its answer "You asked: Think about the
    sky. ..."; the header ends with "thinking on"; above the input one chip reads "📎 notes.md · 3
    lines ✕"; the status bar counts the reasoning ("thought N").
    """
    (tmp_path / "notes.md").write_text("# Notes\n\n- the tide turns at six\n")

    async def run_before(pilot):
        app = pilot.app
        await send(app, pilot, "/think on", wait=False)
        await send(app, pilot, "Think about the sea.")
        await app.edit_message(None, "Think about the sky.")
        await wait_reply(app, pilot)
        await app.attach(str(tmp_path / "notes.md"))
        app.transcript.views[0].focus()
        app.clear_notifications()
        await pilot.pause()

    assert snap_compare(make_app(engine, max_tokens=40), terminal_size=(100, 32), run_before=run_before)


def test_search_and_prefill_progress_100x32(engine, snap_compare, monkeypatch):
    """The search screen (Ctrl+F) over two chats, with a reply reading a long prompt behind it.

    Reviewer: a dialog "Search all chats" with "lighthouse" typed, "2 messages", and two results,
    each "title · 2026-01-02 03:04" then "you: …" / "assistant: …" with "lighthouse" highlighted;
    behind the dimmed dialog the chat shows an assistant reply in progress whose place holds the
    progress bar "Reading the prompt" at 25% with "1,024/4,096 tokens, about 6 s left · Esc stops".
    """
    import time as _time

    from edgechat.app.prompt_notice import Progress
    from edgechat.app.tui.widgets import MessageView
    monkeypatch.setenv("TZ", "UTC")
    _time.tzset()
    store = Store(None)
    when = 1767323040.0                                    # 2026-01-02 03:04 UTC
    for title, role, text in (("Sea stories", "user", "Tell me about the old lighthouse on the cape."),
                              ("Harbour log", "assistant", "The lighthouse keeper wrote every ship in his log.")):
        chat = store.create_chat(title)
        store.add_message(chat.id, role, text, created=when)

    async def run_before(pilot):
        app = pilot.app
        view = await app.transcript.add(MessageView("assistant", pending=True))
        await view.show_prefill(Progress(done=1024, total=4096, elapsed_s=2.0, left_s=6.0))
        await pilot.press("ctrl+f")
        await pilot.press(*"lighthouse")
        await pilot.pause()

    assert snap_compare(make_app(engine, store), terminal_size=(100, 32), run_before=run_before)
