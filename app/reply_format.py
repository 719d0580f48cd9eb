"""The one-shot CLI's reply formats: ``--json-schema``, ``--json-schema-file``, ``--regex``,
``--grammar-file`` (Lark; GBNF as llama.cpp's, converted) and ``--format json`` (any JSON object).

Stdout is the constrained text; ``--json`` adds ``parsed`` (the reply as JSON, for the JSON formats).
A bad schema, regex or grammar is one line naming the flag, exit 2, before the model is loaded.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..runtime.constraint import ConstraintError, Format, check, compile_constraint

FLAGS = ("json_schema", "json_schema_file", "regex", "grammar_file", "format")


def add_format_options(p: argparse.ArgumentParser) -> None:
    """The reply-format flags (one-shot)."""
    g = p.add_argument_group("reply format (one-shot: stdout is the constrained text)")
    g.add_argument("--json-schema", metavar="JSON", help="the reply is JSON valid against this schema")
    g.add_argument("--json-schema-file", metavar="FILE", help="as --json-schema, the schema read from FILE")
    g.add_argument("--regex", metavar="RE", help="the reply matches this regular expression")
    g.add_argument("--grammar-file", metavar="FILE",
                   help="the reply follows this grammar (llguidance's Lark syntax; GBNF is converted)")
    g.add_argument("--format", choices=["json"], help="json: the reply is one JSON object (as ollama's)")


def format_of(args) -> Format | None:
    """The format the flags ask for, checked without a model (a bad one raises ``ConstraintError``)."""
    given = [f for f in FLAGS if getattr(args, f, None) is not None]
    if len(given) > 1:
        raise ConstraintError(f"--{given[0].replace('_', '-')} and --{given[1].replace('_', '-')}: give one "
                              "reply format", given[1])
    if not given:
        return None
    flag = given[0]
    value = getattr(args, flag)
    param = "--" + flag.replace("_", "-")
    if flag == "json_schema":
        fmt = Format("json_schema", value, param)
    elif flag == "json_schema_file":
        fmt = Format("json_schema", _read(value, param), param)
    elif flag == "regex":
        fmt = Format("regex", value, param)
    elif flag == "grammar_file":
        text = _read(value, param)
        fmt = Format("gbnf" if "::=" in text else "lark", text, param)
    else:
        fmt = Format("json_object", "", param)
    try:
        check(fmt)                        # the schema, regex or grammar, before loading the model
    except ConstraintError as e:
        raise ConstraintError(f"{param}: {e}", param) from None
    return fmt


def _read(path: str, param: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConstraintError(f"{param}: cannot read {path}: {e.strerror if isinstance(e, OSError) else e}",
                              param) from None


def constraint(engine, fmt: Format | None):
    """The reply's constraint for this engine's vocab (None without a format)."""
    if fmt is None:
        return None
    try:
        return compile_constraint(fmt, engine.tokenizer)
    except ConstraintError as e:
        raise ConstraintError(f"{fmt.param}: {e}", fmt.param) from None


def parsed(fmt: Format | None, text: str, finish: str | None):
    """``--json``'s ``parsed``: the reply as JSON for the JSON formats when it finished, else None."""
    if fmt is None or fmt.kind not in ("json_schema", "json_object") or finish != "stop":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def sampler(engine, fmt: Format | None, sampling: dict):
    """The one-shot's sampler with the format's constraint first in its chain (None without a format:
    the engine makes its own)."""
    c = constraint(engine, fmt)
    if c is None:
        return None
    from ..runtime.sampler import SamplingParams, make_sampler
    return make_sampler(**SamplingParams.of(**sampling).sampler_kwargs(), constraint=c)


# ---- the TUI's "reply format" setting: "json", a JSON schema file's path, or none ----------------

SETTING = "reply format"


def setting_format(value: str | None) -> Format | None:
    """The format a chat's "reply format" setting names (None for none); a bad one raises
    ``ConstraintError`` in one line."""
    if not value or value.strip().lower() in ("", "none"):
        return None
    if value.strip().lower() == "json":
        return Format("json_object", "", SETTING)
    path = str(Path(value.strip()).expanduser())
    fmt = Format("json_schema", _read(path, SETTING), SETTING)
    try:
        check(fmt)
    except ConstraintError as e:
        raise ConstraintError(f"{SETTING}: {e}", SETTING) from None
    return fmt


def chat_format_kwargs(engine, fmt: Format | None, sampling: dict) -> dict:
    """``chat``'s extra arguments for a format: a local engine's constrained sampler, or a server's
    ``response_format`` (OpenAI's JSON shapes) for a remote chat."""
    if fmt is None:
        return {}
    if getattr(engine, "tokenizer", None) is None:            # a chat on a server (RemoteChat)
        if fmt.kind == "json_object":
            return {"response_format": {"type": "json_object"}}
        schema = json.loads(fmt.source) if isinstance(fmt.source, str) else fmt.source
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}}
    return {"sampler": sampler(engine, fmt, sampling)}
