"""The one-shot CLI's reply formats: stdout is the constrained text, --json adds ``parsed``, a bad schema,
regex or grammar is one line naming the flag with exit code 2 (never a traceback)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jsonschema
import pytest

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "population"],
          "properties": {"city": {"type": "string", "maxLength": 30},
                         "population": {"type": "integer", "minimum": 0}}}
BASE = ["--temp", "0", "--max-tokens", "64", "--speculative", "lookup"]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "edgechat.app.cli", *args], capture_output=True, text=True,
                          input=stdin, timeout=300, env=env)


def test_json_schema_flag_and_file(tmp_path):
    r = cli("-p", "The largest city of France, as JSON.", "--json-schema", json.dumps(SCHEMA), *BASE)
    assert r.returncode == 0, r.stderr
    jsonschema.validate(json.loads(r.stdout), SCHEMA)
    f = tmp_path / "schema.json"
    f.write_text(json.dumps(SCHEMA))
    r2 = cli("-p", "The largest city of France, as JSON.", "--json-schema-file", str(f), *BASE)
    assert r2.returncode == 0 and r2.stdout == r.stdout       # greedy: the same text


def test_json_envelope_has_parsed():
    r = cli("-p", "Any JSON object about cats.", "--format", "json", "--json", *BASE)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    if out["finish_reason"] == "stop":
        assert out["parsed"] == json.loads(out["text"]) and isinstance(out["parsed"], dict)
    else:
        assert out["parsed"] is None


def test_regex_and_grammar_file(tmp_path):
    r = cli("-p", "When did the Berlin wall fall? Give the date.", "--regex", r"[0-9]{4}-[0-9]{2}-[0-9]{2}", *BASE)
    assert r.returncode == 0 and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\n", r.stdout), r.stdout
    g = tmp_path / "yesno.lark"
    g.write_text('start: "Verdict: " ("guilty" | "not guilty")\n')
    r = cli("-p", "Is the butler guilty?", "--grammar-file", str(g), *BASE)
    assert r.returncode == 0 and r.stdout.strip() in ("Verdict: guilty", "Verdict: not guilty")


@pytest.mark.parametrize("args,flag", [
    (["--json-schema", "{not json"], "--json-schema"),
    (["--json-schema", '{"type": "strng"}'], "--json-schema"),
    (["--json-schema-file", "/no/such/schema.json"], "--json-schema-file"),
    (["--regex", "(unclosed"], "--regex"),
    (["--regex", "a", "--format", "json"], "--format"),
])
def test_bad_format_is_one_line_exit_2(args, flag):
    r = cli("-p", "hi", *args, *BASE)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in r.stderr
