"""The conversation lives in the cache: Engine.chat appends turns, rolls back, rebuilds, pins the system
prompt. Native backend, default model, small contexts so the ring evicts.

Oracles: a FRESH engine fed the rendered conversation (the chat template's ids, not the engine's
bookkeeping) for the logits the first reply token is sampled from; tokenizing the system turn's literal
text for --pin-system; the backend's own truncate-into-the-sinks (always allowed, since sinks are never
evicted) to read back what the sink region holds after long chatting.

Logits are compared bit for bit (CHAT_LOGIT_ATOL): tests/test_ring.py shows the native engine gives the
same logits however a sequence is split into evals (one chunk, ragged pieces, token by token).
Public API only: ``Engine.chat`` (with a recording sampler), ``cache_info``, ``conversation`` (the ids
the cache represents), ``eval`` on a fresh engine; the chat template is built from the GGUF as any
caller would. The window rendering is tested on a model-free ``Conversation``.
"""
from __future__ import annotations

import numpy as np
import pytest

THREADS = 2
GREEDY = {"temp": 0.0, "repeat_penalty": 1.0}
CHAT_LOGIT_ATOL = 0.0      # measured bit-identical; see the module docstring and CHUNK_LOGIT_ATOL in test_ring
SYSTEM = "You are a concise assistant. Answer in plain English."


@pytest.fixture(scope="module")
def template(default_model):
    """The default model's chat template, bound to its tokenizer (as the engine's)."""
    from edgechat.runtime.template import ChatTemplate
    from edgechat.runtime.tokenizer import Tokenizer
    return ChatTemplate.from_tokenizer(Tokenizer(default_model))


@pytest.fixture(scope="module")
def engine(default_model):
    """engine(ctx, **kw) -> a native Engine on the default model (fresh each call; closed at the end)."""
    from edgechat.runtime import load
    made = []

    def get(ctx, **kw):
        e = load(default_model, backend="native", ctx=ctx, threads=THREADS, **kw)
        made.append(e)
        return e

    yield get
    for e in made:
        e.close()


class Recorder:
    """A list that gets, for each chat() it samples for, the list of logits each token was sampled from."""

    def __init__(self):
        self.calls: list[list[np.ndarray]] = []

    def __getitem__(self, i):
        return self.calls[i]

    def sampler(self):
        from edgechat.runtime.sampler import make_sampler
        s, seen = make_sampler(**GREEDY), []
        self.calls.append(seen)
        orig = s.sample

        def sample(logits, history=()):
            seen.append(np.array(logits, copy=True))
            return orig(logits, history)
        s.sample = sample
        return s


@pytest.fixture
def sampled_logits():
    return Recorder()


def chat(e, messages, rec: Recorder | None = None, **kw):
    """Run one Engine.chat to the end (recording its logits in ``rec``): (DoneEvent, the reply's ids)."""
    from edgechat.runtime.events import DoneEvent
    toks, done = [], None
    if rec is not None:
        kw["sampler"] = rec.sampler()
    for ev in e.chat(messages, **{**GREEDY, **kw}):
        if isinstance(ev, DoneEvent):
            done = ev
        elif ev.token >= 0:
            toks.append(ev.token)
    assert done is not None
    return done, toks


def rendered(template, messages, gen=True) -> list[int]:
    return list(template.render_ids(messages, add_generation_prompt=gen))


def fresh_logits(engine, ctx, ids, **kw) -> np.ndarray:
    """Last-token logits of a brand-new engine fed ``ids`` in one eval."""
    f = engine(ctx, **kw)
    return f.eval(ids)


def check_cache_invariants(info, ctx: int, bytes0: int) -> None:
    assert info.capacity == ctx
    assert info.bytes == bytes0
    assert info.used == min(info.n_past, info.sinks) + info.n_past - info.window_start


# ---- appending turns --------------------------------------------------------------------------------

def test_new_turn_appends_only_new_tokens_and_matches_fresh_render(engine, template, sampled_logits):
    """Turn 2 appends only its own tokens to the cache, and the first reply token is sampled from the
    same logits as a fresh engine fed the whole rendered conversation."""
    ctx = 1024
    e = engine(ctx)
    bytes0 = e.cache_info().bytes
    m1 = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name three colours."}]
    d1, reply_ids = chat(e, m1, max_tokens=48)
    assert d1.finish_reason == "stop", "the reply must end at the template's end of turn for the render check"
    assert e.tokenize(d1.text) == reply_ids, "the reply must re-tokenize to the sampled ids"
    n1 = e.cache_info().n_past
    m2 = m1 + [{"role": "assistant", "content": d1.text}, {"role": "user", "content": "Now three animals."}]
    ids2 = rendered(template, m2)
    # what the cache held after turn 1 is exactly the rendered conversation so far (closing ids included)
    assert rendered(template, m1 + m2[2:3], gen=False) == ids2[:n1] == list(e.conversation.ids)
    d2, _ = chat(e, m2, sampled_logits, max_tokens=4)
    assert d2.stats.rebuild_tokens == 0
    assert d2.stats.prompt_tokens == len(ids2) - n1 < len(ids2) // 2     # only the new turn was fed
    assert d2.cache.evicted == 0
    check_cache_invariants(d2.cache, ctx, bytes0)
    got = sampled_logits[0][0]
    want = fresh_logits(engine, ctx, ids2)
    print(f"turn 2: {d2.stats.prompt_tokens} new tokens of {len(ids2)}; max |dlogit| vs fresh "
          f"{np.abs(got - want).max()}")
    np.testing.assert_allclose(got, want, rtol=0, atol=CHAT_LOGIT_ATOL)


def test_editing_an_earlier_message_rolls_back_to_the_edit(engine, template, sampled_logits):
    """Changing the first user message after a reply: the cache rolls back to the common prefix (no
    rebuild, nothing evicted) and the logits equal a fresh engine's on the new rendering."""
    ctx = 1024
    e = engine(ctx)
    m1 = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name three colours."}]
    chat(e, m1, max_tokens=24)
    m1b = [m1[0], {"role": "user", "content": "Name three rivers."}]
    ids = rendered(template, m1b)
    common = next(i for i, (a, b) in enumerate(zip(ids, rendered(template, m1))) if a != b)
    d, _ = chat(e, m1b, sampled_logits, max_tokens=2)
    assert d.stats.rebuild_tokens == 0
    assert d.stats.prompt_tokens == len(ids) - common
    np.testing.assert_allclose(sampled_logits[0][0], fresh_logits(engine, ctx, ids), rtol=0,
                               atol=CHAT_LOGIT_ATOL)


# ---- regenerate -------------------------------------------------------------------------------------------

def test_regenerate_without_eviction_rolls_back(engine, sampled_logits):
    """chat(messages without the last reply) after a reply: truncate, no rebuild, the same logits and
    (greedy) the same reply."""
    e = engine(1024)
    m = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is a prime number?"}]
    d1, _ = chat(e, m, sampled_logits, max_tokens=32)
    d2, _ = chat(e, m, sampled_logits, max_tokens=32)
    assert d2.stats.rebuild_tokens == 0
    assert d2.stats.prompt_tokens == 1          # the last prompt token is re-fed to get its logits
    np.testing.assert_allclose(sampled_logits[1][0], sampled_logits[0][0], rtol=0, atol=CHAT_LOGIT_ATOL)
    assert d2.text == d1.text
    assert d2.cache == d1.cache


def test_regenerate_after_eviction_rebuilds(engine, template, sampled_logits, natural_text):
    """The ring evicted past the regenerate point during the reply: the cache is rebuilt (sinks + the
    tail of the conversation), rebuild_tokens > 0, and the logits equal a fresh engine fed exactly what
    cache_info says the cache now holds."""
    ctx = 128
    e = engine(ctx)
    bytes0, sinks = e.cache_info().bytes, e.cache_info().sinks
    user = "Summarize this text:\n" + e.detokenize(e.tokenize(natural_text[:2000])[:88])
    m = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    target = rendered(template, m)
    assert ctx - 10 < len(target) < ctx        # a reply of a few tokens (or the closing ids) evicts
    d1, _ = chat(e, m, max_tokens=96)
    assert d1.cache.evicted > 0, "the reply must wrap the ring for this test"
    d2, _ = chat(e, m, sampled_logits, max_tokens=8)
    info = d2.cache
    assert d2.stats.rebuild_tokens > 0
    check_cache_invariants(info, ctx, bytes0)
    ws = info.window_start                     # logical index of the oldest window token held
    assert sinks < ws < len(target)
    assert info.evicted == ws - sinks
    assert d2.stats.rebuild_tokens == sinks + len(target) - ws
    held = target[:sinks] + target[ws:]
    np.testing.assert_allclose(sampled_logits[0][0], fresh_logits(engine, ctx, held), rtol=0,
                               atol=CHAT_LOGIT_ATOL)
    # the conversation goes on from the rebuilt cache: the next turn appends
    m3 = m + [{"role": "assistant", "content": d2.text}, {"role": "user", "content": "Thanks."}]
    d3, _ = chat(e, m3, max_tokens=4)
    assert d3.stats.rebuild_tokens == 0
    check_cache_invariants(d3.cache, ctx, bytes0)


# ---- long chats: counters, pinned system prompt -------------------------------------------------------------

def long_chat(e, natural_text, turns, system=SYSTEM, user_tokens=48, max_tokens=16, msgs=None):
    """Turns of natural-text user messages with greedy replies; yields each turn's DoneEvent. ``msgs``
    (a list, filled in place) gets the conversation."""
    words = e.tokenize(natural_text[:4 * user_tokens * turns * 2])   # ~4 characters a token, twice over
    msgs = [] if msgs is None else msgs
    msgs.append({"role": "system", "content": system})
    for i in range(turns):
        msgs.append({"role": "user", "content": e.detokenize(words[i * user_tokens:(i + 1) * user_tokens])})
        d, _ = chat(e, msgs, max_tokens=max_tokens)
        msgs.append({"role": "assistant", "content": d.text})
        yield d


def test_long_chat_keeps_capacity_and_counts_evictions(engine, natural_text):
    ctx = 128
    e = engine(ctx)
    info0 = e.cache_info()
    evicted = []
    for d in long_chat(e, natural_text, turns=6):
        check_cache_invariants(d.cache, ctx, info0.bytes)
        assert d.stats.rebuild_tokens == 0
        assert d.cache.evicted == max(0, d.cache.n_past - ctx)
        assert d.cache.used == min(d.cache.n_past, ctx)
        assert d.cache.n_past == len(e.conversation.ids)
        evicted.append(d.cache.evicted)
    assert evicted[-1] > 2 * ctx


def test_pin_system_keeps_the_system_prompt_in_the_sinks(engine, template, sampled_logits, natural_text):
    """--pin-system: sinks = BOS + the system turn; after chatting far past the window, the next token
    is sampled from the logits of a fresh cache whose sinks are exactly the system prompt and whose
    window is the conversation's tail."""
    ctx = 160
    e = engine(ctx, pin_system=True)
    system = "You are Captain Zed, a pirate. Answer every question in one short rhyme."
    # the SmolLM2 template's system turn, written out; its first special token is the GGUF's BOS
    tok = template.tokenizer
    sys_ids = list(tok.tokenize(f"<|im_start|>system\n{system}<|im_end|>\n", special=True))
    assert sys_ids[0] == tok.bos_id
    assert sys_ids == rendered(template, [{"role": "system", "content": system}], gen=False)
    bytes0 = e.cache_info().bytes
    msgs: list[dict] = []
    for d in long_chat(e, natural_text, turns=7, system=system, msgs=msgs):
        assert d.cache.sinks == len(sys_ids)
        check_cache_invariants(d.cache, ctx, bytes0)
        assert d.cache.evicted == max(0, d.cache.n_past - ctx)
    assert d.cache.evicted > 2 * ctx
    # the cache now is a ring whose sinks are the system prompt: the same as a plain ring with that many
    # sinks fed the conversation's ids (one eval, chunked at the window: the same logits as any split)
    n0 = len(e.conversation.ids)
    d, _ = chat(e, msgs + [{"role": "user", "content": "Who are you?"}], sampled_logits, max_tokens=1)
    assert d.stats.rebuild_tokens == 0
    ids = list(e.conversation.ids)
    n = n0 + d.stats.prompt_tokens                # the prompt's end: the cache held ids[:n] then
    assert ids[:len(sys_ids)] == sys_ids and n > 2 * ctx
    want = fresh_logits(engine, ctx, ids[:n], sinks=len(sys_ids))
    np.testing.assert_allclose(sampled_logits[0][0], want, rtol=0, atol=CHAT_LOGIT_ATOL)


@pytest.mark.parametrize("pin_system", [False, True])
def test_editing_an_evicted_message_rebuilds_only_the_tail(engine, template, sampled_logits, natural_text,
                                                           pin_system):
    """After a rebuild, editing a message that lies in the part of the conversation the cache no longer
    holds rebuilds from the sinks and the tail (as any rollback past an eviction does): only the new
    tokens are fed as prompt, never the whole conversation, and the cache holds what cache_info says."""
    ctx = 160
    e = engine(ctx, pin_system=pin_system)
    msgs: list[dict] = []
    for d in long_chat(e, natural_text, turns=6, msgs=msgs):
        pass
    assert d.cache.evicted > ctx
    sinks = d.cache.sinks
    # 1. edit the third user message (evicted long ago): a rebuild, after which part of the
    #    conversation is skipped (logically evicted)
    d1, _ = chat(e, msgs[:5] + [{"role": "user", "content": "Edited third question?"}], max_tokens=4)
    assert d1.stats.rebuild_tokens > 0
    assert d1.cache.n_past == len(e.conversation.ids)
    assert d1.cache.used < min(d1.cache.n_past, ctx)      # the rebuild left room in the window
    # 2. now edit the first user message, inside the skipped part
    edited = msgs[:1] + [{"role": "user", "content": "Edited first question?"}]
    target = rendered(template, edited)
    common = next(i for i, (a, b) in enumerate(zip(target, rendered(template, msgs[:2]))) if a != b)
    assert sinks <= common < d1.cache.window_start
    d2, _ = chat(e, edited, sampled_logits, max_tokens=2)
    assert d2.cache.sinks == sinks
    assert d2.stats.prompt_tokens == len(target) - common
    assert 0 < d2.stats.rebuild_tokens <= common
    ws = d2.cache.window_start
    held = target[:sinks] + target[ws:]
    np.testing.assert_allclose(sampled_logits[0][0], fresh_logits(engine, ctx, held, sinks=sinks),
                               rtol=0, atol=CHAT_LOGIT_ATOL)


# ---- rendering by window (model-free: a Conversation and the chat template) ----------------------------------

class CountingTemplate:
    """The template, counting the length of every message list rendered to ids."""

    def __init__(self, template):
        self.template, self.tokenizer, self.rendered = template, template.tokenizer, []

    def render_ids(self, messages, *a, **kw):
        self.rendered.append(len(messages))
        return self.template.render_ids(messages, *a, **kw)

    def render_text(self, *a, **kw):
        return self.template.render_text(*a, **kw)


def converse(conv, words: list[str], turns: int) -> list[dict]:
    """``turns`` turns on a Conversation, the reply tokens being those of its text; returns the messages."""
    msgs = [{"role": "system", "content": SYSTEM}]
    tok = conv.template.tokenizer
    for t in range(turns):
        msgs.append({"role": "user", "content": " ".join(words[20 * t:20 * t + 12])})
        conv.prepare(msgs)
        reply = " ".join(words[20 * t + 12:20 * t + 20])
        for i in tok.tokenize(reply):
            conv.add(i)
        conv.finish(reply)
        msgs.append({"role": "assistant", "content": reply})
    return msgs


def test_a_long_chat_renders_only_a_window_and_it_equals_the_whole(template, natural_text):
    """A turn renders the first message, the last cached one and the new ones, not the whole history
    (so a turn's cost does not grow with the chat); the ids and message ends equal whole renderings."""
    from edgechat.runtime.conversation import Conversation
    counting = CountingTemplate(template)
    conv = Conversation(counting)
    msgs = converse(conv, natural_text.split(), 30)
    counting.rendered.clear()
    msgs.append({"role": "user", "content": "And then?"})
    assert conv.prepare(msgs) == conv.ends[-2]           # everything before the new message is kept
    assert counting.rendered and max(counting.rendered) <= 4, counting.rendered
    assert list(conv.ids) == rendered(template, msgs)
    assert conv.ends == [len(rendered(template, msgs[:i + 1], gen=False)) for i in range(len(msgs))]


def test_a_template_that_numbers_messages_is_rendered_whole(template, natural_text):
    """A template whose output for a message depends on its place in the list (here: a running number)
    fails the window check; every turn renders the whole conversation, and the new ids are exactly what
    that rendering adds (the cached ones stay as fed: this template's generation prompt has no number)."""
    from edgechat.runtime.conversation import Conversation
    from edgechat.runtime.template import ChatTemplate
    numbered = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {{ loop.index }}\n{{ m['content'] }}"
                "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    plain = ChatTemplate(numbered, template.tokenizer)
    counting = CountingTemplate(plain)
    conv = Conversation(counting)
    msgs = converse(conv, natural_text.split(), 8)
    counting.rendered.clear()
    msgs.append({"role": "user", "content": "And then?"})
    keep = conv.prepare(msgs)
    assert max(counting.rendered) == len(msgs)             # the whole list
    before = rendered(plain, msgs[:-1], gen=False)
    whole = rendered(plain, msgs)
    assert keep == conv.ends[-2] and list(conv.ids[keep:]) == whole[len(before):]
    assert conv.ends[-1] - keep == len(rendered(plain, msgs, gen=False)) - len(before)


def test_a_long_conversation_given_at_once_gets_the_same_message_ends(template, natural_text):
    """A long saved chat opened on a fresh engine (nothing cached): its message ends are computed
    message by message, by window; they equal the lengths of whole renderings."""
    from edgechat.runtime.conversation import Conversation
    words = natural_text.split()
    msgs = [{"role": "system", "content": SYSTEM}]
    for t in range(30):
        msgs += [{"role": "user", "content": " ".join(words[20 * t:20 * t + 12])},
                 {"role": "assistant", "content": " ".join(words[20 * t + 12:20 * t + 20])}]
    msgs.append({"role": "user", "content": "And then?"})
    counting = CountingTemplate(template)
    conv = Conversation(counting)
    assert conv.prepare(msgs) == 0
    assert list(conv.ids) == rendered(template, msgs)
    assert conv.ends == [len(rendered(template, msgs[:i + 1], gen=False)) for i in range(len(msgs))]
    assert sorted(counting.rendered)[-2] <= 4, "more than one whole rendering"
