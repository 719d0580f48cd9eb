"""A request's structured output: ``response_format`` (json_object, json_schema), the ``grammar`` and
``regex`` extension fields, and ``tools`` / ``tool_choice`` / ``parallel_tool_calls``.

``prepare`` runs in the engine thread (it compiles against the engine's tokenizer) and turns a bad
schema, regex, grammar or tool list into a 400 with ``param`` set; nothing here reaches the model.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...runtime.constraint import ConstraintError, Format, compile_constraint, lltokenizer
from ...runtime.tools import ToolCall, ToolSet, call_style
from .errors import bad_request


@dataclass
class Structured:
    """What a request asks of the reply's shape."""

    constraint: object = None          # a runtime Constraint (or LazyConstraint) for the sampler
    tools: ToolSet | None = None       # the request's tools (rendering and parsing)


def warm(engine) -> None:
    """Build llguidance's tokenizer of the engine's vocab (~0.25 s, once), so that the first request with
    a schema pays only its compile (about a millisecond for the test corpus' median schema)."""
    lltokenizer(engine.tokenizer)


def request_format(req) -> Format | None:
    """The one format a request asks for (``response_format``, ``grammar`` or ``regex``), or None."""
    given = [name for name in ("response_format", "grammar", "regex") if _asked(req, name)]
    if len(given) > 1:
        raise bad_request(f"{given[1]}: give one of response_format, grammar and regex", param=given[1])
    if not given:
        return None
    if given[0] == "grammar":
        text = req.grammar
        kind = "gbnf" if "::=" in text else "lark"     # llama-server takes GBNF; llguidance's syntax is Lark
        return Format(kind, text, "grammar")
    if given[0] == "regex":
        return Format("regex", req.regex, "regex")
    return _response_format(req.response_format)


def _asked(req, name: str) -> bool:
    value = getattr(req, name, None)
    if name == "response_format":
        return bool(value) and value.get("type") not in (None, "text")
    return value is not None


def _response_format(rf: dict) -> Format:
    kind = rf.get("type")
    if kind == "json_object":
        return Format("json_object", "", "response_format")
    if kind != "json_schema":
        raise bad_request(f"response_format.type: should be 'text', 'json_object' or 'json_schema', not {kind!r}",
                          param="response_format.type")
    spec = rf.get("json_schema")
    if not isinstance(spec, dict) or "schema" not in spec:
        raise bad_request("response_format.json_schema: should be an object with 'name' and 'schema'",
                          param="response_format.json_schema")
    schema = spec["schema"]
    if not isinstance(schema, (dict, bool)):
        raise bad_request("response_format.json_schema.schema: should be a JSON schema object",
                          param="response_format.json_schema.schema")
    return Format("json_schema", schema, "response_format.json_schema.schema")


def prepare(engine, req) -> Structured:
    """The request's constraint and tools, compiled for this engine's vocab.

    Raises:
        APIError: 400 naming the field for an invalid or unsupported schema, regex, grammar or tool list.
    """
    try:
        tools = _tools(engine, req)
        fmt = request_format(req)
        if tools is not None and tools.active and fmt is not None:
            raise bad_request(f"{fmt.param}: not with tools (a reply is either a tool call or the format)",
                              param=fmt.param)
        if tools is not None and tools.active:
            return Structured(tools.constraint(engine.tokenizer), tools)
        return Structured(compile_constraint(fmt, engine.tokenizer) if fmt else None, tools)
    except ConstraintError as e:
        raise bad_request(f"{e.param}: {e}" if e.param else str(e), param=e.param) from None


def _tools(engine, req) -> ToolSet | None:
    tools = getattr(req, "tools", None)
    if not tools and getattr(req, "tool_choice", None) in (None, "none", "auto"):
        return None
    template = engine.conversation.template
    choice = req.tool_choice if req.tool_choice is not None else "auto"
    parallel = req.parallel_tool_calls is not False
    return ToolSet(tools or [], choice, parallel, call_style(template.template_str))


def stream_calls(calls: list[ToolCall]) -> list[list[dict]]:
    """Tool calls as OpenAI streams them: per call a chunk with its id, type and name (arguments ""),
    then one with the arguments."""
    out = []
    for i, c in enumerate(calls):
        out.append([{"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}])
        out.append([{"index": i, "function": {"arguments": c.arguments}}])
    return out
