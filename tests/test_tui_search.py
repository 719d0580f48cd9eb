"""Searching every chat: the store's search (sqlite FTS5, and LIKE where FTS5 is missing) on small
chats and on a generated database of 10,000 messages (the time is printed, not asserted), and the TUI's
search screen (Ctrl+F, /search): results as you type, Enter opens the chat at the message."""
from __future__ import annotations

import random
import sqlite3
import time

import pytest

from edgechat.app import chat_search
from edgechat.app.chat_search import MARK_CLOSE, MARK_OPEN
from edgechat.app.store import open_store
from edgechat.app.tui.app import EdgechatApp
from edgechat.app.tui.screens import SearchScreen
from tui_support import make_args, scripted_engine, wait_until

SIZE = (100, 32)
MESSAGES = 10_000
CHATS = 200
RARE_EVERY = 97               # one message in this many holds the rare word
RUNS = 5                      # searches timed; the best is printed


def search_both(store, text: str) -> tuple[list, list]:
    """The same search through FTS5 and through LIKE."""
    conn = sqlite3.connect(store.path)
    try:
        return chat_search.search(conn, text, fts=True), chat_search.search(conn, text, fts=False)
    finally:
        conn.close()


def test_search_finds_messages_of_every_chat_with_the_match_in_context(db):
    store = open_store(db)
    assert store.fts                                            # this sqlite has FTS5
    sea = store.create_chat("Sea stories")
    store.add_message(sea.id, "user", "Tell me about the old lighthouse on the cape.", created=100.0)
    store.add_message(sea.id, "assistant", "The lighthouse keeper wrote every ship in his log.", created=101.0)
    other = store.create_chat("Dragons")
    store.add_message(other.id, "user", "Do dragons sleep?", created=102.0)
    hits = store.search("lighthouse")
    assert [(h.chat_id, h.role, h.title) for h in hits] == [(sea.id, "assistant", "Sea stories"),
                                                            (sea.id, "user", "Sea stories")]  # newest first
    assert f"The {MARK_OPEN}lighthouse{MARK_CLOSE} keeper" in hits[0].snippet
    assert [h.chat_id for h in store.search("drag")] == [other.id]          # a word's start
    assert store.search("LIGHTHOUSE keeper")[0].message_id == hits[0].message_id   # all words, any case
    assert store.search("   ") == [] and store.search("submarine") == []
    fts, like = search_both(store, "lighthouse")
    assert [h.message_id for h in fts] == [h.message_id for h in like]
    assert like[0].snippet == f"The {MARK_OPEN}lighthouse{MARK_CLOSE} keeper wrote every ship in his log."
    store.delete_chat(sea.id)                                   # the index follows the messages
    assert store.search("lighthouse") == [] and search_both(store, "lighthouse") == ([], [])
    store.close()


def test_a_sqlite_without_fts5_searches_with_like(db, monkeypatch):
    monkeypatch.setattr(chat_search, "INDEX", "CREATE VIRTUAL TABLE messages_fts USING no_such_module(x);")
    store = open_store(db)
    chat = store.create_chat("c")
    store.add_message(chat.id, "user", "50% of the harbour_master's notes")
    assert not store.fts and store.problem is None
    assert [h.snippet for h in store.search("harbour_master")] == [
        f"50% of the {MARK_OPEN}harbour_master{MARK_CLOSE}'s notes"]
    assert store.search("0%") and store.search("x%") == []        # % and _ are literal
    store.close()


def generated(db, rare: str) -> list[int]:
    """A history of ``MESSAGES`` messages in ``CHATS`` chats (ids of those holding ``rare``, newest
    first)."""
    store = open_store(db)
    words = ("harbour storm lantern rope anchor tide gull north winter ship keeper log light fog "
             "bell chart compass sail wave stone").split()
    rng = random.Random(7)
    chats = [store.create_chat(f"Chat {i}").id for i in range(CHATS)]
    store.close()
    conn = sqlite3.connect(db)
    rare_ids = []
    with conn:
        for i in range(MESSAGES):
            text = " ".join(rng.choice(words) for _ in range(40))
            if i % RARE_EVERY == 0:
                text += f" {rare}"
            cur = conn.execute("INSERT INTO messages (chat_id, role, content, created) VALUES (?,?,?,?)",
                               (chats[i % CHATS], ("user", "assistant")[i % 2], text, 1000.0 + i))
            if i % RARE_EVERY == 0:
                rare_ids.append(cur.lastrowid)
    conn.close()
    return rare_ids[::-1]


def test_search_over_ten_thousand_messages(db):
    rare_ids = generated(db, "zeppelin")
    conn = sqlite3.connect(db)
    times = {}
    for fts in (True, False):
        best = float("inf")
        for _ in range(RUNS):
            t0 = time.perf_counter()
            hits = chat_search.search(conn, "zeppelin", fts)
            best = min(best, time.perf_counter() - t0)
        assert [h.message_id for h in hits] == rare_ids[:chat_search.LIMIT]
        times["FTS5" if fts else "LIKE"] = best
    conn.close()
    print(f"search over {MESSAGES:,} messages, {len(rare_ids)} matches: "
          + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in times.items()))


@pytest.fixture(scope="module")
def engine():
    eng = scripted_engine(ctx=2048)
    yield eng
    eng.close()


@pytest.mark.asyncio
async def test_ctrl_f_finds_a_message_and_opens_its_chat_there(engine, db):
    store = open_store(db)
    sea = store.create_chat("Sea stories")
    for i in range(12):
        store.add_message(sea.id, "user", f"Question {i} about the tides.")
        store.add_message(sea.id, "assistant", "The lighthouse keeper knows." if i == 2 else f"Answer {i}.")
    store.create_chat("Later chat")
    app = EdgechatApp(make_args(), store, engine=engine, volatile=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.chat.id != sea.id
        await pilot.press("ctrl+f")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"lighthou")
        await wait_until(pilot, lambda: len(app.screen.hits) == 1, timeout=10)
        results = app.screen.query_one("#search-results")
        assert "Sea stories" in str(results.get_option_at_index(0).prompt)
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: app.chat.id == sea.id, timeout=10)
        await pilot.pause()
        found = app.transcript.query(".-found")
        assert len(found) == 1 and found.first().content == "The lighthouse keeper knows."
        assert app.transcript.scroll_y > 0                       # scrolled to it (not at the top)
        # /search TEXT opens the screen with the results of TEXT
        app.query_one("#prompt").value = "/search tides"
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen), timeout=10)
        assert app.screen.query_one("#search-input").value == "tides" and len(app.screen.hits) == 12
        await pilot.press("escape")
        assert len(app.screen_stack) == 1
    store.close()
