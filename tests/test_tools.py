"""Tool calls at the runtime level: the call format read from the chat template, tools and tool messages
rendered by the template, calls constrained (from the first token, or after a lazy trigger) and parsed
back. Families whose templates take ``tools`` run on synthetic GGUFs carrying those templates (random
weights: only the constraint can make their output a valid call)."""
from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from edgechat.runtime import load, synth
from edgechat.runtime.reply import Reply
from edgechat.runtime.sampler import make_sampler
from edgechat.runtime.template import ChatTemplate
from edgechat.runtime.tools import LazyConstraint, ToolSet, call_style

from tool_templates import FAMILIES

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                   "properties": {"city": {"type": "string", "maxLength": 20},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "additionalProperties": False, "required": ["zone"],
                                       "properties": {"zone": {"type": "string", "pattern": "^[A-Z]{3}$"}}}}}
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def check_call(call) -> None:
    jsonschema.validate(json.loads(call.arguments), PARAMS[call.name])


def test_call_style_from_the_template(tokenizer):
    for name, (src, style) in FAMILIES.items():
        assert call_style(src) == style, name
    assert call_style(tokenizer.metadata("tokenizer.chat_template")) == "generic"     # the default model
    assert call_style(None) == "generic"


def test_tools_and_tool_messages_render_through_the_template(tokenizer):
    tpl = ChatTemplate(FAMILIES["qwen2.5"][0], tokenizer)
    ts = ToolSet(TOOLS, "auto", style="hermes")
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                              "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}]
    text = tpl.render_text(ts.messages(history))
    assert '"name": "get_weather"' in text and "<tools>" in text                # the tools, by the template
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}' in text
    assert "<tool_response>\n18 C, sunny\n</tool_response>" in text
    llama = ChatTemplate(FAMILIES["llama3.1"][0], tokenizer)
    text = llama.render_text(ToolSet(TOOLS, "auto", style="llama3").messages(ASK))
    assert "Environment: ipython" in text and '"get_time"' in text


def test_generic_format_describes_tools_in_the_system_prompt():
    ts = ToolSet(TOOLS, "required", style="generic")
    msgs = ts.messages([{"role": "system", "content": "Be brief."}] + ASK)
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("Be brief.")
    assert '"get_weather"' in msgs[0]["content"] and "tool_calls" in msgs[0]["content"]
    assert ToolSet(TOOLS, "none", style="generic").messages(ASK) == ASK      # none: no tools rendered


@pytest.mark.parametrize("style,text,names,content", [
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>',
     ["get_time"], "Let me check."),
    ("hermes", '<tool_call>{"name": "get_time", "arguments": {"zone": "UTC"}}</tool_call>\n<tool_call>'
               '{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}</tool_call>',
     ["get_time", "get_weather"], None),
    ("llama3", '{"name": "get_time", "parameters": {"zone": "PST"}}', ["get_time"], None),
    ("llama3", '<|python_tag|>{"name": "get_time", "parameters": {"zone": "EST"}}', ["get_time"], None),
    ("generic", '{"tool_calls": [{"name": "get_time", "arguments": {"zone": "JST"}}]}', ["get_time"], None),
    ("generic", '{"response": "It is sunny."}', [], "It is sunny."),
])
def test_parse(style, text, names, content):
    p = ToolSet(TOOLS, "auto", style=style).parse(text)
    assert [c.name for c in p.calls] == names and p.content == content
    for c in p.calls:
        check_call(c)
        assert c.id.startswith("call_")


@pytest.mark.parametrize("style,text", [
    ("hermes", '<tool_call>\n{"name": "get_time", "arguments": {"zo'),      # cut by the token limit
    ("llama3", '{"name": "get_time", "param'),
    ("generic", '{"tool_calls": [{"name": "get_ti'),
    ("hermes", "Just text, no call."),
])
def test_malformed_call_stays_content(style, text):
    p = ToolSet(TOOLS, "auto", style=style).parse(text)
    assert p.calls == [] and p.content == text


def test_bad_tool_choice_and_tools():
    from edgechat.runtime.constraint import ConstraintError
    with pytest.raises(ConstraintError) as e:
        ToolSet(TOOLS, {"type": "function", "function": {"name": "nope"}})
    assert e.value.param == "tool_choice"
    with pytest.raises(ConstraintError) as e:
        ToolSet([{"type": "function", "function": {"description": "no name"}}])
    assert e.value.param == "tools"


def _drive(c, tokenizer, rng, steps: int = 200) -> list[int]:
    """Sample from random logits through the constraint's mask until it is complete."""
    s = make_sampler(temp=1.0, seed=int(rng.integers(1 << 30)), top_k=0, top_p=1.0, min_p=0.0, constraint=c)
    out = []
    for _ in range(steps):
        if c.is_stopped():
            return out
        tok = s.sample(rng.normal(size=tokenizer.n_vocab).astype(np.float32) * 3)
        if tok in tokenizer.eot_ids:
            return out
        out.append(tok)
    raise AssertionError("the grammar did not complete")


def test_lazy_trigger_is_free_until_the_marker_then_a_valid_call(tokenizer):
    rng = np.random.default_rng(0)
    for trial in range(5):
        ts = ToolSet(TOOLS, "auto", parallel=False, style="hermes")
        c = ts.constraint(tokenizer)
        assert isinstance(c, LazyConstraint)
        logits = rng.normal(size=tokenizer.n_vocab).astype(np.float32)
        assert c.apply(logits) is logits                  # free text: no mask
        prefix = tokenizer.tokenize("I will look that up. <tool_call>")
        for t in prefix:
            c.consume(t)
        assert c.triggered
        rest = _drive(c, tokenizer, rng)
        text = tokenizer.detokenize(prefix + rest)
        parsed = ts.parse(text)
        assert len(parsed.calls) == 1 and parsed.content == "I will look that up.", text
        check_call(parsed.calls[0])


def test_hermes_parallel_calls_stop_at_the_cap(tokenizer):
    """A reply that would go on calling (its end of turn held back while anything else is allowed) gets
    4 calls (the cap the README states), then only the end."""
    rng = np.random.default_rng(2)
    ts = ToolSet(TOOLS, "required", parallel=True, style="hermes")
    c = ts.constraint(tokenizer)
    eot = sorted(tokenizer.eot_ids)
    out = []
    for _ in range(3000):
        if c.is_stopped():
            break
        ok = c.allowed()
        logits = rng.normal(size=tokenizer.n_vocab).astype(np.float32) * 3
        if ok.sum() > ok[eot].sum():
            logits[eot] = -np.inf
        tok = int(np.argmax(np.where(ok, logits, -np.inf)))
        if tok in tokenizer.eot_ids:
            break
        c.consume(tok)
        out.append(tok)
    else:
        raise AssertionError("the calls did not end")
    calls = ts.parse(tokenizer.detokenize(out)).calls
    assert len(calls) == 4
    for call in calls:
        check_call(call)


def test_lazy_trigger_llama3_reply_starting_with_a_brace(tokenizer):
    rng = np.random.default_rng(1)
    ts = ToolSet(TOOLS, "auto", style="llama3")
    c = ts.constraint(tokenizer)
    first = tokenizer.tokenize('{"')
    for t in first:
        c.consume(t)
    assert c.triggered
    text = tokenizer.detokenize(first + _drive(c, tokenizer, rng))
    parsed = ts.parse(text)
    assert len(parsed.calls) == 1, text
    check_call(parsed.calls[0])


@pytest.fixture(scope="module")
def family_gguf(tmp_path_factory, default_model):
    """family -> a tiny random-weight GGUF with the default model's vocab and that family's template."""
    made = {}

    def get(family: str):
        if family not in made:
            base = synth.read_tokenizer(default_model)
            tokenizer = [(k, FAMILIES[family][0] if k == "tokenizer.chat_template" else v, t, e)
                         for k, v, t, e in base]
            path = tmp_path_factory.mktemp("tools") / f"tiny-{family}.gguf"
            orig = synth.read_tokenizer
            synth.read_tokenizer = lambda src: tokenizer
            try:
                synth.write_gguf(path, synth.SynthConfig(arch="llama", name=f"tiny-{family}"), default_model)
            finally:
                synth.read_tokenizer = orig
            made[family] = path
        return made[family]
    return get


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("backend", ["native", "llama.cpp"])
def test_required_call_on_a_family_template(family_gguf, family, backend):
    """A random-weight model whose template takes tools: 'required' and a named function give a valid
    call every time (only the constraint makes it so), rendered and parsed in the family's format."""
    eng = load(family_gguf(family), backend=backend, speculative="off", ctx=512)
    try:
        style = call_style(eng.conversation.template.template_str)
        assert style == FAMILIES[family][1]
        for seed, choice in [(1, "required"), (2, "required"), (3, {"type": "function", "function": {"name": "get_time"}})]:
            ts = ToolSet(TOOLS, choice, parallel=False, style=style)
            reply = Reply(eng.tokenizer, max_tokens=96, tools=ts)
            sampler = make_sampler(temp=1.0, seed=seed, constraint=ts.constraint(eng.tokenizer))
            list(eng.chat(ts.messages(ASK), sampler=sampler, reply=reply))
            assert reply.finish_reason == "tool_calls", reply.text
            assert len(reply.tool_calls) == 1
            check_call(reply.tool_calls[0])
            if isinstance(choice, dict):
                assert reply.tool_calls[0].name == "get_time"
    finally:
        eng.close()
