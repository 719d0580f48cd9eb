"""Tool calls: tools into the prompt, the reply constrained to a valid call, the calls parsed back out.

Three call formats, picked from the chat template (``call_style``):

* ``hermes`` (Qwen2.5/Qwen3, SmolLM3, Hermes): the template takes ``tools``; a call is
  ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``.
* ``llama3`` (Llama 3.1-3.3): the template takes ``tools``; a call is ``{"name": ..., "parameters":
  {...}}``, after ``<|python_tag|>`` or as the whole reply.
* ``generic`` (a template without ``tools``, as llama.cpp's generic handler): the tools are described in
  the system prompt and the whole reply is a JSON object, ``{"tool_calls": [...]}`` or ``{"response": "..."}``.

``tool_choice`` "required" or a named function constrains the reply from its first token to valid
calls whose arguments match the tool's ``parameters`` schema. "auto" with a template that has a call
marker is free text until the marker (``LazyConstraint``: a lazy trigger), then constrained. "none"
renders no tools and parses nothing. A call left malformed (the token limit hit) stays content.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from .constraint import Constraint, ConstraintError, Format, compile_constraint

STYLES = ("hermes", "llama3", "generic")
HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
MAX_PARALLEL = 4        # calls in one reply (a small model repeats calls otherwise)
GENERIC_PROMPT = (
    "You can call these tools:\n{tools}\n\n"
    "Answer with one JSON object and nothing else: either {{\"tool_calls\": [{{\"name\": <tool name>, "
    "\"arguments\": <arguments object>}}]}} to call tools, or {{\"response\": <your answer>}} to answer.")


@dataclass
class ToolCall:
    """One call, as OpenAI returns it (``arguments`` a JSON string)."""

    name: str
    arguments: str
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def openai(self, index: int | None = None) -> dict:
        d = {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}
        return d if index is None else {"index": index, **d}


@dataclass
class Parsed:
    """A reply split into its text and its calls."""

    content: str | None
    calls: list[ToolCall]


def call_style(template_str: str | None) -> str:
    """The call format a chat template speaks: "hermes", "llama3" or "generic" (no ``tools`` in it)."""
    src = template_str or ""
    if not re.search(r"\btools\b", src):
        return "generic"
    if PYTHON_TAG in src or "ipython" in src:
        return "llama3"
    return "hermes"


def _function(tool: dict) -> dict:
    return tool.get("function", tool)


class ToolSet:
    """One request's tools and choice.

    Args:
        tools: OpenAI ``tools`` (``{"type": "function", "function": {"name", "description", "parameters"}}``).
        choice: "auto", "none", "required", or ``{"type": "function", "function": {"name": ...}}``.
        parallel: allow several calls in one reply.
        style: the template's call format (``call_style``).

    Raises:
        ConstraintError: a tool without a name, a named choice that is not among the tools.
    """

    def __init__(self, tools: list[dict], choice="auto", parallel: bool = True, style: str = "generic"):
        self.tools = [t for t in tools or []]
        self.style = style
        self.parallel = parallel
        names = []
        for i, t in enumerate(self.tools):
            fn = _function(t) if isinstance(t, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise ConstraintError(f"tools[{i}]: a function needs a name", "tools")
            names.append(fn["name"])
        self.names = names
        self.mode, self.only = self._choice(choice)

    def _choice(self, choice) -> tuple[str, str | None]:
        if choice in (None, "auto"):
            return ("auto" if self.tools else "none"), None
        if choice in ("none", "required"):
            if choice == "required" and not self.tools:
                raise ConstraintError("tool_choice 'required' needs tools", "tool_choice")
            return choice, None
        name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        if name not in self.names:
            raise ConstraintError(f"tool_choice names a function that is not among the tools: {name!r}",
                                  "tool_choice")
        return "required", name

    @property
    def active(self) -> bool:
        return self.mode != "none" and bool(self.tools)

    # ---- the prompt ---------------------------------------------------------------------------

    def messages(self, messages: list[dict]) -> list[dict]:
        """The messages to render: tool calls and results in the template's terms, and the tools (on
        the first message for a template that takes ``tools``, in the system prompt otherwise)."""
        out = [_history_message(m, self.style) for m in messages]
        if not self.active:
            return out
        if self.style == "generic":
            text = GENERIC_PROMPT.format(tools="\n".join(json.dumps(_function(t)) for t in self._offered()))
            if out and out[0]["role"] == "system":
                out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{text}".strip()}
            else:
                out.insert(0, {"role": "system", "content": text})
            return out
        out[0] = {**out[0], "tools": self._offered()}
        return out

    def _offered(self) -> list[dict]:
        if self.only is None:
            return self.tools
        return [t for t in self.tools if _function(t)["name"] == self.only]

    # ---- the constraint -----------------------------------------------------------------------

    def call_schema(self) -> dict:
        """The JSON schema of one call: the name of an offered tool with arguments matching its parameters."""
        key = "parameters" if self.style == "llama3" else "arguments"
        variants = []
        for t in self._offered():
            fn = _function(t)
            params = fn.get("parameters") or {"type": "object"}
            variants.append({"type": "object", "properties": {"name": {"const": fn["name"]}, key: params},
                             "required": ["name", key], "additionalProperties": False})
        return variants[0] if len(variants) == 1 else {"anyOf": variants}

    def constraint(self, tok) -> Constraint | "LazyConstraint" | None:
        """The reply's constraint: calls from the first token ("required"), free text until a call
        marker then a call ("auto" with a marker), a call or an answer ("auto", generic), or None."""
        if not self.active:
            return None
        call = json.dumps(self.call_schema())
        if self.style == "generic":
            calls = {"type": "array", "items": json.loads(call), "minItems": 1,
                     "maxItems": MAX_PARALLEL if self.parallel else 1}
            with_calls = {"type": "object", "properties": {"tool_calls": calls}, "required": ["tool_calls"],
                          "additionalProperties": False}
            answer = {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"],
                      "additionalProperties": False}
            schema = with_calls if self.mode == "required" else {"anyOf": [with_calls, answer]}
            return compile_constraint(Format("json_schema", schema, "tools"), tok)
        body = self._lark_calls(call)
        if self.mode == "required":
            return compile_constraint(Format("lark", body, "tools"), tok)
        return LazyConstraint(tok, self._triggers(), lambda: compile_constraint(
            Format("lark", self._lark_calls(call, after_trigger=True), "tools"), tok))

    def _lark_calls(self, call_schema: str, after_trigger: bool = False) -> str:
        call_schema = json.dumps({"x-guidance": {"whitespace_flexible": False}, **json.loads(call_schema)})
        if self.style == "hermes":
            first = "" if after_trigger else '"<tool_call>" '
            rest = ""
            for _ in range(MAX_PARALLEL - 1 if self.parallel else 0):   # at most MAX_PARALLEL calls in all
                rest = f"(more {rest})?"
            return (f'start: {first}NL call NL "</tool_call>" {rest}\n'
                    'more: NL "<tool_call>" NL call NL "</tool_call>"\n'
                    f"call: %json {call_schema}\n"
                    'NL: /[ \\n]?/\n')
        # llama3: the JSON call (after the python tag, or the reply's opening brace)
        return f"start: call\ncall: %json {call_schema}\n"

    def _triggers(self) -> list[tuple[str, bool]]:
        """(marker, kept): text that starts a call; a kept marker is part of the call (llama3's "{")."""
        if self.style == "hermes":
            return [(HERMES_OPEN, False)]
        return [(PYTHON_TAG, False), ("{", True)]

    # ---- parsing ------------------------------------------------------------------------------

    def parse(self, text: str) -> Parsed:
        """The reply's calls and remaining text; a malformed call stays text (never dropped)."""
        if not self.active:
            return Parsed(text, [])
        if self.style == "generic":
            return _parse_generic(text)
        if self.style == "hermes":
            return _parse_hermes(text)
        return _parse_llama3(text)


def _history_message(m: dict, style: str) -> dict:
    """A history message for the template: an assistant's calls and a tool's result in its terms."""
    m = dict(m)
    calls = m.get("tool_calls")
    if m.get("role") == "assistant" and calls:
        if style == "generic":
            body = [{"name": c["function"]["name"], "arguments": _args(c["function"].get("arguments"))}
                    for c in calls]
            return {"role": "assistant", "content": json.dumps({"tool_calls": body})}
        m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": _args(c["function"].get("arguments"))}}
                           for c in calls]
        m["content"] = m.get("content") or ""
    if m.get("role") == "tool" and style == "generic":
        return {"role": "user", "content": f"Tool result ({m.get('tool_call_id', '')}): {m.get('content') or ''}"}
    if m.get("content") is None:
        m["content"] = ""
    return m


def _args(arguments):
    """Arguments as an object for a template (OpenAI sends a JSON string)."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments if arguments is not None else {}


def _call(obj, key: str = "arguments") -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get(key, obj.get("arguments", obj.get("parameters", {})))
    return ToolCall(obj["name"], args if isinstance(args, str) else json.dumps(args))


def _parse_generic(text: str) -> Parsed:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return Parsed(text, [])
    if isinstance(obj, dict) and isinstance(obj.get("tool_calls"), list):
        calls = [_call(c) for c in obj["tool_calls"]]
        if calls and all(calls):
            return Parsed(None, calls)
    if isinstance(obj, dict) and isinstance(obj.get("response"), str):
        return Parsed(obj["response"], [])
    return Parsed(text, [])


_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def _parse_hermes(text: str) -> Parsed:
    calls, rest, pos = [], [], 0
    for m in _HERMES.finditer(text):
        try:
            call = _call(json.loads(m.group(1)))
        except json.JSONDecodeError:
            call = None
        if call is None:
            continue
        calls.append(call)
        rest.append(text[pos:m.start()])
        pos = m.end()
    rest.append(text[pos:])
    content = "".join(rest).strip()
    return Parsed(content or None if calls else text, calls)


def _parse_llama3(text: str) -> Parsed:
    before, tag, after = text.partition(PYTHON_TAG)
    body = after if tag else text.lstrip()
    if not body.startswith("{"):
        return Parsed(text, [])
    try:
        obj, end = json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError:
        return Parsed(text, [])
    call = _call(obj, "parameters")
    if call is None:
        return Parsed(text, [])
    content = (before + body[end:]).strip() if tag else body[end:].strip()
    return Parsed(content or None, [call])


class LazyConstraint:
    """Free text until a call marker, then the call grammar (a lazy trigger), behind the sampler as a
    ``Constraint``. The text so far is watched token by token; at the marker the grammar is compiled and
    told the bytes already written after it.

    Args:
        tok: the engine's tokenizer.
        triggers: (marker, kept) pairs; a kept marker's own text is the start of the call.
        build: makes the grammar's ``Constraint`` (called once, at the marker).
    """

    def __init__(self, tok, triggers: list[tuple[str, bool]], build):
        self._tok, self._build = tok, build
        self._triggers = [(m.encode(), kept) for m, kept in triggers]
        self._bytes = b""                 # the reply so far
        self._lens: list[int] = []        # bytes of each consumed token
        self._inner: Constraint | None = None
        self._at = 0                      # tokens consumed when the inner constraint started
        self.broken = False               # the call's first bytes did not fit the grammar: free text
        self.consumed = 0
        self.mask_s: list[float] = []

    @property
    def triggered(self) -> bool:
        return self._inner is not None

    def apply(self, logits):
        return self._inner.apply(logits) if self._inner is not None else logits

    def consume(self, tok: int) -> None:
        self.consumed += 1
        if self._inner is not None:
            self._inner.consume(tok)
            self.mask_s = self._inner.mask_s
            return
        piece = self._tok.token_bytes(int(tok), special=True)
        self._bytes += piece
        self._lens.append(len(piece))
        if not self.broken:
            self._check_trigger()

    def _check_trigger(self) -> None:
        text = self._bytes
        for marker, kept in self._triggers:
            at = text.find(marker)
            if kept:                      # a kept marker counts only at the reply's start ("{" of a call)
                stripped = len(text) - len(text.lstrip())
                at = stripped if text[stripped:stripped + len(marker)] == marker else -1
            if at < 0:
                continue
            tail = text[at if kept else at + len(marker):]
            inner = self._build()
            ids = self._tok.tokenize(tail.decode("utf-8", "replace"), special=False) if tail else []
            if ids and inner.valid_prefix(ids) < len(ids):
                self.broken = True        # already off the grammar: the reply stays free text
                return
            for t in ids:
                inner.consume(t)
            self._inner, self._at = inner, self.consumed
            self.mask_s = inner.mask_s
            return

    def forced(self, limit: int) -> list[int]:
        if self._inner is None:
            return []
        ff = self._inner.forced(limit)
        self.consumed += len(ff)
        return ff

    def valid_prefix(self, tokens: list[int]) -> int:
        return self._inner.valid_prefix(tokens) if self._inner is not None else len(tokens)

    def rollback(self, n: int) -> None:
        if n <= 0:
            return
        if self._inner is not None:
            inner_n = min(n, self.consumed - self._at)
            self._inner.rollback(inner_n)
            if self.consumed - n < self._at:
                self._inner = None
        self.consumed -= n
        keep = max(0, min(len(self._lens), self.consumed))
        self._bytes = self._bytes[:sum(self._lens[:keep])]
        del self._lens[keep:]

    def is_stopped(self) -> bool:
        return self._inner is not None and self._inner.is_stopped()

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
