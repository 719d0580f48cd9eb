"""Structured output through a real ``edgechat serve`` and the real openai client, on the default model.

The schema corpus (tests/schema_corpus.py, 100+ real-world shapes) runs at temp 0 and at temp 1.0 with
2 seeds on the native backend: at least 90% of the replies finish within the token cap, and every reply
that finished parses and validates with ``jsonschema`` (format checker on, its format extras installed),
not with the library that constrained it. The llama.cpp backend runs a smaller sample.
"""
from __future__ import annotations

import json

import jsonschema
import pytest
from openai import OpenAI
from pydantic import BaseModel

from schema_corpus import corpus
from serve_support import Server

MAX_TOKENS = 128            # the corpus' token cap: the shapes are small; keeps the suite's time bounded
FINISH_RATE = 0.90          # the bar: replies that finish (the rest hit the cap, e.g. long numbers)
LLAMA_SAMPLE = 12           # corpus schemas run on the llama.cpp backend
CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER   # 2020-12's formats ("time" per RFC 3339)
RUNS = [(0.0, 0), (1.0, 1), (1.0, 2)]


def ask(name: str, schema: dict) -> list[dict]:
    topic = name.split(".")[0].replace("_", " ")
    return [{"role": "system", "content": "Reply with JSON that matches this schema: " + json.dumps(schema)},
            {"role": "user", "content": f"Give an example of a {topic}."}]


def run_corpus(srv: Server, names: list[str], runs) -> tuple[int, int, list[str]]:
    """(replies, finished, problems): every finished reply must validate; a schema llguidance refuses is
    listed with its reason (printed) and must be a 400 naming the schema."""
    schemas, total, finished, problems, refused = corpus(), 0, 0, [], []
    for name in names:
        schema = schemas[name]
        for temp, seed in runs:
            r = srv.post("/chat/completions", {
                "messages": ask(name, schema), "temperature": temp, "seed": seed, "max_tokens": MAX_TOKENS,
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema,
                                                                          "strict": True}}})
            if r.status_code == 400 and r.json()["error"]["param"] == "response_format.json_schema.schema":
                refused.append(f"{name}: {r.json()['error']['message']}")
                break
            assert r.status_code == 200, (name, r.text)
            choice = r.json()["choices"][0]
            total += 1
            if choice["finish_reason"] != "stop":
                assert choice["finish_reason"] == "length"
                continue
            finished += 1
            try:
                jsonschema.validate(json.loads(choice["message"]["content"]), schema, format_checker=CHECKER)
            except (json.JSONDecodeError, jsonschema.ValidationError) as e:
                problems.append(f"{name} temp={temp} seed={seed}: {str(e).splitlines()[0]}")
    print("refused by llguidance:", refused or "none")
    return total, finished, problems


@pytest.fixture(scope="module")
def native():
    with Server("--backend", "native", "--temp", "0") as srv:
        yield srv


def test_corpus_native(native):
    names = list(corpus())
    assert len(names) >= 100
    total, finished, problems = run_corpus(native, names, RUNS)
    print(f"corpus native: {finished}/{total} finished")
    assert not problems, problems
    assert finished >= FINISH_RATE * total, f"{finished}/{total} finished"


def test_corpus_llama_cpp_sample():
    names = list(corpus())[::len(corpus()) // LLAMA_SAMPLE][:LLAMA_SAMPLE]
    with Server("--backend", "llama.cpp") as srv:
        total, finished, problems = run_corpus(srv, names, [(0.0, 0), (1.0, 1)])
    assert not problems, problems
    assert finished >= FINISH_RATE * total, f"{finished}/{total} finished"


class Person(BaseModel):
    name: str
    age: int
    city: str


def test_openai_parse_returns_the_model(native):
    client = OpenAI(base_url=native.url, api_key="none")
    model = client.models.list().data[0].id
    for seed in (1, 2):
        r = client.chat.completions.parse(model=model, response_format=Person, temperature=1.0, seed=seed,
                                          max_tokens=MAX_TOKENS,
                                          messages=[{"role": "user", "content": "Describe a person."}])
        choice = r.choices[0]
        assert choice.finish_reason == "stop"
        assert isinstance(choice.message.parsed, Person)


def test_json_object_regex_grammar_on_both_endpoints(native):
    r = native.post("/chat/completions", {"messages": [{"role": "user", "content": "Some JSON please"}],
                                          "response_format": {"type": "json_object"}, "max_tokens": MAX_TOKENS})
    assert isinstance(json.loads(r.json()["choices"][0]["message"]["content"]), dict)
    r = native.post("/completions", {"prompt": "The year the war ended:", "regex": "[12][0-9]{3}",
                                     "max_tokens": 8})
    text = r.json()["choices"][0]["text"]
    assert len(text) == 4 and text.isdigit() and r.json()["choices"][0]["finish_reason"] == "stop"
    lark = 'start: "Answer: " ("yes" | "no")'
    r = native.post("/chat/completions", {"messages": [{"role": "user", "content": "Is water wet?"}],
                                          "grammar": lark, "temperature": 1.0, "max_tokens": 16})
    assert r.json()["choices"][0]["message"]["content"] in ("Answer: yes", "Answer: no")
    gbnf = 'root ::= "Answer: " ("yes" | "no")'
    r = native.post("/completions", {"prompt": "Is water wet?", "grammar": gbnf, "max_tokens": 16})
    assert r.json()["choices"][0]["text"] in ("Answer: yes", "Answer: no")


def test_streamed_schema_reply_is_the_same_text(native):
    schema = corpus()["person"]
    body = {"messages": ask("person", schema), "temperature": 0, "max_tokens": MAX_TOKENS,
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}}
    whole = native.post("/chat/completions", body).json()["choices"][0]["message"]["content"]
    client = OpenAI(base_url=native.url, api_key="none")
    model = client.models.list().data[0].id
    parts = [c.choices[0].delta.content or "" for c in
             client.chat.completions.create(model=model, stream=True, **body) if c.choices]
    assert "".join(parts) == whole
    jsonschema.validate(json.loads(whole), schema, format_checker=CHECKER)


def test_cut_by_max_tokens_comes_back_as_is(native):
    schema = corpus()["invoice"]
    r = native.post("/chat/completions", {"messages": ask("invoice", schema), "max_tokens": 6,
                                          "response_format": {"type": "json_schema",
                                                              "json_schema": {"name": "i", "schema": schema}}})
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"].startswith("{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice["message"]["content"])


@pytest.mark.parametrize("extra,param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strng"}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x",
                                                                "schema": {"type": "array", "uniqueItems": True}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format.json_schema"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"regex": "(unclosed"}, "regex"),
    ({"grammar": "start: nowhere"}, "grammar"),
    ({"grammar": "root ::= undefined-rule"}, "grammar"),
    ({"regex": "a+", "grammar": 'start: "a"'}, "regex"),
])
def test_bad_format_is_a_400_with_param(native, extra, param):
    r = native.post("/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                                          **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and "\n" not in err["message"]
    assert native.health()["status"] == "ok"      # the server goes on
