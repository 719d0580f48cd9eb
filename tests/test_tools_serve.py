"""Tool calls through a real ``edgechat serve`` and the real openai client, on the default model (its
template takes no ``tools``: the generic format), streamed and not, on both backends."""
from __future__ import annotations

import json

import jsonschema
import pytest
from openai import OpenAI

from serve_support import Server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                   "properties": {"city": {"type": "string", "maxLength": 24},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
CONVERT = {"type": "function", "function": {
    "name": "convert_currency", "description": "Convert an amount between currencies",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["amount", "from", "to"],
                   "properties": {"amount": {"type": "number", "minimum": 0, "maximum": 1e6},
                                  "from": {"type": "string", "pattern": "^[A-Z]{3}$"},
                                  "to": {"type": "string", "pattern": "^[A-Z]{3}$"}}}}}
TOOLS = [WEATHER, CONVERT]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What's the weather like in Paris today?"}]
MAX_TOKENS = 96
REQUIRED_RUNS = 100         # the bar: 'required' gives a valid call 100 times of 100 at temp 1.0


@pytest.fixture(scope="module")
def native():
    with Server("--backend", "native") as srv:
        client = OpenAI(base_url=srv.url, api_key="none")
        yield client, client.models.list().data[0].id


def valid_calls(calls) -> None:
    assert calls
    for c in calls:
        assert c.id and c.type == "function"
        jsonschema.validate(json.loads(c.function.arguments), PARAMS[c.function.name])


def test_required_gives_a_valid_call_every_time(native):
    client, model = native
    for seed in range(REQUIRED_RUNS):
        r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="required",
                                           temperature=1.0, seed=seed, max_tokens=MAX_TOKENS,
                                           parallel_tool_calls=seed % 2 == 0)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls", choice.message
        valid_calls(choice.message.tool_calls)
        assert choice.message.content is None
        if seed % 2:
            assert len(choice.message.tool_calls) == 1


def test_named_function_streamed(native):
    client, model = native
    for seed in (1, 2, 3):
        stream = client.chat.completions.create(
            model=model, messages=ASK, tools=TOOLS, stream=True, temperature=1.0, seed=seed,
            tool_choice={"type": "function", "function": {"name": "convert_currency"}}, max_tokens=MAX_TOKENS)
        calls, finish = {}, None
        for chunk in stream:
            if not chunk.choices:
                continue
            d = chunk.choices[0].delta
            for tc in d.tool_calls or []:          # accumulate as OpenAI's clients do
                entry = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = tc.id or entry["id"]
                entry["name"] += tc.function.name or ""
                entry["arguments"] += tc.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        assert finish == "tool_calls" and calls
        for entry in calls.values():
            assert entry["id"] and entry["name"] == "convert_currency"
            jsonschema.validate(json.loads(entry["arguments"]), PARAMS["convert_currency"])


def test_tool_result_goes_back_and_the_model_answers(native):
    client, model = native
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="required",
                                       temperature=0, max_tokens=MAX_TOKENS, parallel_tool_calls=False)
    msg = r.choices[0].message
    call = msg.tool_calls[0]
    history = ASK + [msg.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "18 degrees celsius, sunny"}]
    r = client.chat.completions.create(model=model, messages=history, tools=TOOLS, tool_choice="none",
                                       temperature=0, max_tokens=MAX_TOKENS)
    answer = r.choices[0].message
    assert answer.tool_calls is None and answer.content and r.choices[0].finish_reason in ("stop", "length")


def test_none_never_calls(native):
    client, model = native
    for seed in range(5):
        r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="none",
                                           temperature=1.0, seed=seed, max_tokens=48)
        assert r.choices[0].message.tool_calls is None
        assert r.choices[0].finish_reason in ("stop", "length")


def test_auto_answers_or_calls_and_never_loses_a_call(native):
    """auto with the generic format: a call or an answer, each well-formed; a reply cut by the token
    limit comes back as content (finish 'length'), never silently dropped."""
    client, model = native
    for seed in range(6):
        r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, temperature=1.0, seed=seed,
                                           max_tokens=MAX_TOKENS)
        c = r.choices[0]
        if c.finish_reason == "tool_calls":
            valid_calls(c.message.tool_calls)
        elif c.finish_reason == "stop":        # {"response": ...} unwrapped: the answer's text
            assert c.message.tool_calls is None and not c.message.content.startswith('{"response"')
        else:
            assert c.message.content.startswith("{")   # cut: as is
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="required",
                                       max_tokens=5)
    c = r.choices[0]
    assert c.finish_reason == "length" and c.message.tool_calls is None and c.message.content


def test_llama_cpp_backend_calls():
    with Server("--backend", "llama.cpp") as srv:
        client = OpenAI(base_url=srv.url, api_key="none")
        model = client.models.list().data[0].id
        for seed in range(10):
            r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="required",
                                               temperature=1.0, seed=seed, max_tokens=MAX_TOKENS)
            assert r.choices[0].finish_reason == "tool_calls"
            valid_calls(r.choices[0].message.tool_calls)
