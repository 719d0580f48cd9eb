"""Structured output at the runtime level: llguidance's tokenizer from our vocab, the sampler's mask and
consume, forced tokens fed as one batch, speculation under a constraint, bad input. The output is
judged by ``jsonschema`` (format checker on) and ``re``, not by the library that constrained it."""
from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest

from edgechat.runtime import load
from edgechat.runtime.constraint import ConstraintError, Format, compile_constraint, lltokenizer
from edgechat.runtime.events import DoneEvent
from edgechat.runtime.sampler import make_sampler

MAX_TOKENS = 96
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "email", "tags"],
          "properties": {"name": {"type": "string", "maxLength": 40},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "email": {"type": "string", "format": "email"},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 20},
                                  "minItems": 1, "maxItems": 3}}}
ASK = [{"role": "user", "content": "Describe a person as JSON: name, age, email and tags."}]
CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER   # 2020-12 formats ("time": RFC 3339)


@pytest.fixture(scope="module")
def engines(default_model):
    made = {}

    def get(backend: str, speculative: str = "off"):
        key = (backend, speculative)
        if key not in made:
            made[key] = load(default_model, backend=backend, speculative=speculative, ctx=1024)
        return made[key]
    yield get
    for e in made.values():
        e.close()


def reply(engine, fmt: Format | None, temp: float = 0.0, seed: int = 1, messages=ASK,
          max_tokens: int = MAX_TOKENS) -> DoneEvent:
    c = compile_constraint(fmt, engine.tokenizer) if fmt else None
    s = make_sampler(temp=temp, seed=seed, repeat_penalty=1.0, constraint=c)
    return [ev for ev in engine.chat(messages, sampler=s, max_tokens=max_tokens)][-1]


def test_tokenizer_holds_every_token_of_our_vocab(tokenizer):
    """Every token's bytes, the control tokens as specials, the end-of-turn ids as EOS."""
    lt = lltokenizer(tokenizer)
    assert lt.vocab_size == tokenizer.n_vocab
    assert set(lt.eos_tokens) >= set(tokenizer.eot_ids)
    ids = tokenizer.tokenize("Hello, wörld! {\"a\": [1, 2.5e3]} \u4f60\u597d")
    assert lt.decode_bytes(ids) == b"".join(tokenizer.token_bytes(i) for i in ids)
    controls = [i for i in range(tokenizer.n_vocab) if tokenizer.is_control(i)]
    assert controls and all(lt.is_special_token(i) for i in controls)
    assert not lt.is_special_token(ids[0])


def test_llguidance_calls_back_into_the_engines_tokenizer_even_after_it_is_closed(default_model, monkeypatch):
    """llguidance keeps the tokenizer it was built from (no second llama.cpp vocab in memory); a
    tokenizer closed by its owner is replaced by a copy, not called after its vocab was freed."""
    from edgechat.runtime import constraint
    from edgechat.runtime.tokenizer import Tokenizer
    monkeypatch.setattr(constraint, "_tokenizers", {})
    made = []

    class Seen(constraint._Vocab):
        def __init__(self, tok):
            super().__init__(tok)
            made.append(self)
    monkeypatch.setattr(constraint, "_Vocab", Seen)
    tok = Tokenizer(default_model)
    text = "Hello, wörld! {\"a\": [1, 2.5e3]}"
    want = tok.tokenize(text)
    lt = lltokenizer(tok)
    assert lt.tokenize_str(text) == want
    assert [v._tok for v in made] == [tok]          # the same object, not a copy of the vocab
    tok.close()
    assert lt.tokenize_str(text) == want


def test_mask_allows_only_what_the_grammar_allows(tokenizer):
    c = compile_constraint(Format("regex", r"(yes|no)"), tokenizer)
    ok = c.allowed()
    texts = {tokenizer.token_bytes(int(i)) for i in np.flatnonzero(ok)}
    assert texts and all(b"yes".startswith(t) or b"no".startswith(t) for t in texts)
    logits = np.zeros(tokenizer.n_vocab, np.float32)
    masked = c.apply(logits)
    assert np.isneginf(masked[~ok]).all() and (masked[ok] == 0).all()


@pytest.mark.parametrize("temp,seed", [(0.0, 1), (1.0, 1), (1.0, 2)])
def test_schema_reply_validates(engines, temp, seed):
    done = reply(engines("native"), Format("json_schema", PERSON), temp, seed)
    assert done.finish_reason == "stop", done.text
    jsonschema.validate(json.loads(done.text), PERSON, format_checker=CHECKER)
    assert done.text == done.text.strip() and "\n" not in done.text     # compact JSON


def test_json_object_and_regex_and_lark(engines):
    eng = engines("native")
    obj = json.loads(reply(eng, Format("json_object")).text)
    assert isinstance(obj, dict)
    date = reply(eng, Format("regex", r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
                 messages=[{"role": "user", "content": "When did the Berlin wall fall?"}]).text
    assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", date)
    lark = 'start: "The answer is " ANSWER "."\nANSWER: "yes" | "no"\n'
    text = reply(eng, Format("lark", lark), temp=1.0,
                 messages=[{"role": "user", "content": "Is the sky blue?"}]).text
    assert text in ("The answer is yes.", "The answer is no.")


def test_gbnf_through_llguidance_converter(engines):
    eng = engines("native")
    text = reply(eng, Format("gbnf", 'root ::= "color: " ("red" | "green" | "blue")')).text
    assert text in ("color: red", "color: green", "color: blue")


def test_llama_cpp_backend_constrained(engines):
    done = reply(engines("llama.cpp"), Format("json_schema", PERSON), 1.0, 3)
    assert done.finish_reason == "stop", done.text
    jsonschema.validate(json.loads(done.text), PERSON, format_checker=CHECKER)


def test_greedy_text_is_the_same_with_and_without_prompt_lookup(engines):
    """Constrained and unconstrained greedy runs, prompt lookup on and off: identical text. The prompt
    repeats a JSON record so lookup drafts are found (some of them off the grammar: validated, cut)."""
    record = json.dumps({"name": "Ada Lovelace", "age": 36, "email": "ada@example.org", "tags": ["math"]})
    msgs = [{"role": "user", "content": f"Copy this record exactly: {record}\nAgain: {record}\nOnce more:"}]
    for fmt in (None, Format("json_schema", PERSON)):
        on = reply(engines("native", "lookup"), fmt, messages=msgs)
        off = reply(engines("native", "off"), fmt, messages=msgs)
        assert on.text == off.text
        if fmt:
            assert on.stats.draft_tokens > 0          # drafts were tried under the constraint
            jsonschema.validate(json.loads(on.text), PERSON, format_checker=CHECKER)


def test_sampled_reply_with_lookup_stays_valid(engines):
    """temp 1.0 with drafts: accepted drafts and the residual draw are consumed by the matcher."""
    record = json.dumps({"name": "Ada", "age": 36, "email": "ada@example.org", "tags": ["math", "poetry"]})
    msgs = [{"role": "user", "content": f"Repeat: {record}\n{record}\n"}]
    for seed in (1, 2, 3):
        done = reply(engines("native", "lookup"), Format("json_schema", PERSON), 1.0, seed, messages=msgs)
        assert done.finish_reason == "stop", done.text
        jsonschema.validate(json.loads(done.text), PERSON, format_checker=CHECKER)


def test_forced_tokens_are_fed_as_one_batch(engines, monkeypatch):
    """A schema with long fixed keys: the keys are forced; the backend sees batches of more than one token."""
    eng = engines("native", "off")
    schema = {"type": "object", "required": ["customer_identification_number", "shipping_address_line"],
              "additionalProperties": False,
              "properties": {"customer_identification_number": {"type": "integer"},
                             "shipping_address_line": {"type": "string", "maxLength": 30}}}
    sizes = []
    inner = eng._b.eval

    def spy(ids, all_logits=False):
        sizes.append(len(ids))
        return inner(ids, all_logits)
    monkeypatch.setattr(eng._b, "eval", spy)
    done = reply(eng, Format("json_schema", schema))
    jsonschema.validate(json.loads(done.text), schema)
    decode = sizes[1:-1]                       # after the prompt, before the closing tokens
    assert max(decode) > 1 and len(decode) < done.stats.completion_tokens


def test_max_tokens_cuts_mid_object_as_is(engines):
    done = reply(engines("native"), Format("json_schema", PERSON), max_tokens=5)
    assert done.finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(done.text)


@pytest.mark.parametrize("fmt,words", [
    (Format("json_schema", "{not json", "response_format"), "not valid JSON"),
    (Format("json_schema", {"type": "strng"}, "response_format"), "strng"),
    (Format("json_schema", {"type": "string", "format": "no-such-format"}, "response_format"), "format"),
    (Format("json_schema", {"type": "array", "uniqueItems": True}, "response_format"), "uniqueItems"),
    (Format("regex", "(ab", "regex"), "regex"),
    (Format("lark", "start: missing_rule", "grammar"), "missing_rule"),
    (Format("gbnf", 'root ::= undefined', "grammar"), "undefined"),
    (Format("json_schema", {"type": "object", "description": "x" * 300_000}, "response_format"), "KiB"),
    (Format("json_schema", '{"type": "object", "properties": {"a": ' * 80 + '{"type": "string"}' + "}}" * 80,
            "response_format"), "recursion"),                  # bounded: refused, not compiled forever
])
def test_bad_input_is_one_line_naming_it(tokenizer, fmt, words):
    with pytest.raises(ConstraintError) as e:
        compile_constraint(fmt, tokenizer)
    msg = str(e.value)
    assert "\n" not in msg and words in msg and e.value.param == fmt.param


@pytest.mark.parametrize("fmt,bad,good", [
    ("time", '"23:59:60Z"', '"23:59:59Z"'),              # a leap second: RFC 3339 parsers refuse it
    ("date", '"2023-02-30"', '"2023-02-28"'),
    ("date-time", '"2023-04-31T10:00:00Z"', '"2023-04-30T10:00:00Z"'),
    ("ipv4", '"10.01.0.1"', '"10.1.0.1"'),                # a leading zero: Python's ipaddress refuses it
])
def test_formats_are_held_to_what_a_strict_validator_accepts(tokenizer, fmt, bad, good):
    schema = {"type": "string", "format": fmt}
    for text, ok in ((bad, False), (good, True)):
        c = compile_constraint(Format("json_schema", schema), tokenizer)
        ids = tokenizer.tokenize(text)
        assert (c.valid_prefix(ids) == len(ids)) == ok, text
        assert CHECKER.conforms(json.loads(text), fmt) == ok       # the oracle agrees
