"""The per-stream reply object: tokens (or text) in, text events out; end-of-turn, UTF-8 across
tokens, stop strings across token boundaries, the token limit and the reasoning block."""
from __future__ import annotations

import pytest

from edgechat.runtime.reply import ReasoningSplit, Reply
from edgechat.runtime.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok(default_model):
    t = Tokenizer(default_model)
    yield t
    t.close()


def feed_all(reply: Reply, ids) -> tuple[str, str]:
    """(answer, reasoning) from the events of feeding ``ids`` then closing."""
    events = [e for i in ids for e in reply.feed(i)] + reply.close()
    return ("".join(e.text for e in events if e.kind == "text"),
            "".join(e.text for e in events if e.kind == "reasoning"))


def test_text_equals_detokenize_and_eot_ends(tok):
    text = "Héllo, wörld! 日本語のテキスト 🙂 done."
    ids = tok.tokenize(text, special=False)
    reply = Reply(tok)
    answer, _ = feed_all(reply, list(ids) + [next(iter(tok.eot_ids))] + list(ids))
    assert answer == tok.detokenize(list(ids))
    assert reply.finish_reason == "stop" and reply.tokens == list(ids)


def test_a_character_split_across_tokens_is_never_split(tok):
    ids = tok.tokenize("🙂🙂 日本", special=False)
    reply = Reply(tok)
    for i in ids:
        for e in reply.feed(i):
            e.text.encode("utf-8")                      # no lone surrogate / half character
            assert "\ufffd" not in e.text


def test_stop_string_across_tokens_is_cut_and_never_sent(tok):
    text = "one two three STOP four five"
    ids = tok.tokenize(text, special=False)
    reply = Reply(tok, stops=["ST" + "OP"])
    answer, _ = feed_all(reply, ids)
    assert answer == "one two three "
    assert reply.finish_reason == "stop" and reply.stopped
    assert len(reply.tokens) < len(ids)                 # it ended at the stop, not after all tokens


def test_token_limit_gives_length(tok):
    ids = tok.tokenize("a b c d e f g h", special=False)
    reply = Reply(tok, max_tokens=3)
    answer, _ = feed_all(reply, ids)
    assert reply.finish_reason == "length" and len(reply.tokens) == 3
    assert answer == tok.detokenize(list(ids[:3]))


def test_close_without_a_finish_is_cancelled(tok):
    reply = Reply(tok)
    reply.feed(tok.tokenize("hi", special=False)[0])
    reply.close()
    assert reply.finish_reason == "cancelled"


@pytest.mark.parametrize("cuts", [1, 2, 3, 5, 100])
def test_reasoning_block_split_at_any_piece_boundary(cuts):
    text = "  <think>\nlet me see: 2+2</think>\n\nIt is 4."
    split, out = ReasoningSplit(), []
    pieces = [text[i:i + cuts] for i in range(0, len(text), cuts)]
    for p in pieces:
        out += split.feed(p)
    out += split.flush()
    assert "".join(t for k, t in out if k == "reasoning") == "let me see: 2+2"
    assert "".join(t for k, t in out if k == "text") == "It is 4."


def test_no_think_tag_is_all_answer():
    split = ReasoningSplit()
    out = split.feed("<thin") + split.feed("g> is not a tag") + split.flush()
    assert "".join(t for k, t in out if k == "text") == "<thing> is not a tag"
    assert not [t for k, t in out if k == "reasoning" and t]


def test_reasoning_opened_by_the_prompt(tok):
    reply = Reply(tok, in_reasoning=True)
    answer, reasoning = feed_all(reply, tok.tokenize("hmm, fine</think>Yes.", special=False))
    assert (reasoning, answer) == ("hmm, fine", "Yes.")


def test_text_fed_as_text_gets_the_same_stops():
    reply = Reply(None, stops=["\n\n"])
    events = reply.feed_text("abc\n") + reply.feed_text("\ndef")
    assert "".join(e.text for e in events) == "abc" and reply.finish_reason == "stop"
