"""Template variables (a Qwen3-style enable_thinking switch) reach the rendering of every turn, and a
change of them renders the conversation again instead of trusting ids rendered without them."""
from __future__ import annotations

import pytest

from edgechat.runtime.conversation import Conversation
from edgechat.runtime.template import ChatTemplate
from edgechat.runtime.tokenizer import Tokenizer

# ChatML with Qwen3's switch: thinking off writes an empty <think> block into the generation prompt
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


@pytest.fixture(scope="module")
def tok(default_model):
    t = Tokenizer(default_model)
    yield t
    t.close()


def tail_text(tok, conv: Conversation, n: int = 12) -> str:
    return tok.detokenize(list(conv.ids[-n:]))


def test_enable_thinking_reaches_the_generation_prompt(tok):
    conv = Conversation(ChatTemplate(THINKING_TEMPLATE, tok))
    msgs = [{"role": "user", "content": "Hi there"}]
    conv.prepare(msgs)
    assert "</think>" not in tail_text(tok, conv)
    conv.prepare(msgs, {"enable_thinking": False})
    assert tail_text(tok, conv).rstrip().endswith("</think>")


def test_a_change_of_variables_renders_again(tok):
    conv = Conversation(ChatTemplate(THINKING_TEMPLATE, tok))
    msgs = [{"role": "user", "content": "Hi there"}]
    conv.prepare(msgs, {"enable_thinking": False})
    conv.add(tok.tokenize("Hello!", special=False)[0])
    conv.finish("Hello!")
    more = msgs + [{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Again?"}]
    assert conv.prepare(more, {"enable_thinking": False}) > 0      # same variables: the prefix is kept
    assert conv.prepare(more, {"enable_thinking": True}) == 0       # changed: nothing is trusted
    whole = ChatTemplate(THINKING_TEMPLATE, tok).render_ids(more, add_generation_prompt=True, enable_thinking=True)
    assert list(conv.ids) == list(whole)


# a template that opens the block itself unless thinking is off (DeepSeek-R1 distills, Qwen3 with it on)
OPENING_TEMPLATE = THINKING_TEMPLATE.replace(
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}",
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}")


def test_engine_chat_passes_the_switch_and_splits_the_block(default_model, tok):
    """Thinking on: the prompt opened <think>, so the reply's text is reasoning until </think> (the
    135M model never writes one: it is all reasoning, the answer empty). Off: the template closed the
    block in the prompt; the reply is all answer."""
    from edgechat.runtime import load
    from edgechat.runtime.events import DoneEvent
    engine = load(default_model, ctx=256, threads=2, speculative="off")
    try:
        engine.state.conv.template = ChatTemplate(OPENING_TEMPLATE, engine.tokenizer)
        msgs = [{"role": "user", "content": "What is 2 + 2?"}]
        for think in (True, False):
            evs = list(engine.chat(msgs, temp=0, max_tokens=12, template_vars={"enable_thinking": think}))
            done = evs[-1]
            assert isinstance(done, DoneEvent)
            kinds = {e.kind for e in evs[:-1] if e.text}
            if think:
                assert kinds == {"reasoning"} and done.reasoning and done.text == ""
            else:
                assert kinds == {"text"} and done.text and done.reasoning == ""
                assert "</think>" in engine.tokenizer.detokenize(list(engine.conversation.ids))
    finally:
        engine.close()


@pytest.mark.parametrize("ctx,max_tokens", [(256, 12), (48, 60)])
def test_the_reasoning_block_leaves_the_cache_after_the_reply(default_model, ctx, max_tokens):
    """After a reply with a <think> block the cache holds the conversation as the template writes it
    in the history (the answer alone), read again from where they differ; when the ring has evicted
    that point (ctx 48, a 60-token reply) the cache keeps the block (-1) and stays consistent."""
    from edgechat.runtime import load
    engine = load(default_model, ctx=ctx, threads=2, speculative="off")
    try:
        engine.state.conv.template = ChatTemplate(OPENING_TEMPLATE, engine.tokenizer)
        msgs = [{"role": "user", "content": "Write a long story about a cat who sails around the world."}]
        done = list(engine.chat(msgs, temp=0, max_tokens=max_tokens, repeat_penalty=1.0))[-1]
        assert done.reasoning and done.stats.completion_tokens >= min(max_tokens, 40)
        conv, cache = engine.conversation, engine.cache
        assert list(cache.fed) == list(conv.ids)
        history = engine.state.conv.template.render_ids(conv.messages, add_generation_prompt=False)
        if done.stats.reasoning_refeed == -1:
            assert cache.info.evicted > 0 and list(conv.ids) != list(history)
        else:
            assert done.stats.reasoning_refeed > 0 and list(conv.ids) == list(history)
            nxt = conv.messages + [{"role": "user", "content": "And 3 + 3?"}]
            again = list(engine.chat(nxt, temp=0, max_tokens=2))[-1]
            want = len(engine.state.conv.template.render_ids(nxt, add_generation_prompt=True)) - len(history)
            assert again.stats.prompt_tokens == want and again.stats.rebuild_tokens == 0
        assert (done.stats.reasoning_refeed == -1) == (ctx == 48)
    finally:
        engine.close()
