"""Request bodies, validated with pydantic (strict types; unknown fields ignored, as OpenAI does).

``parse(model, body)`` turns a body into a request or raises a 400 ``APIError`` naming the field and
what was wrong with it. Every number must be finite (``Infinity``/``NaN`` are refused) and in range.
A field that takes one of several shapes (``stop``: a string or a list; ``content``: a string or a
list of parts; ``prompt``: text or token ids) is validated against the shape of the value sent, so
its error is about that shape. Parameters OpenAI has and edgechat cannot honour (n > 1, echo, ...) are
refused with a 400 saying so, never silently ignored.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from .errors import bad_request

MAX_STOPS = 16          # stop strings per request (OpenAI allows 4)
MAX_TOP_LOGPROBS = 20   # as OpenAI's chat API
MAX_LEGACY_LOGPROBS = 5  # as OpenAI's completions API
MAX_INT = 2**31 - 1     # top_k and token ids: what the engines' int32 token ids hold
TOKEN_ID = re.compile(r"[0-9]+")       # a logit_bias key: a decimal token id (ASCII digits only)

Prob = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Count = Annotated[int, Field(ge=1)]
TokenId = Annotated[int, Field(ge=0, le=MAX_INT)]


def _shape(value) -> str | None:
    """The JSON shape of a union field's value: which branch validates it (None: no branch)."""
    if value is None:
        return "<none>"
    if isinstance(value, str):
        return "<text>"
    if isinstance(value, list):
        return "<ids>" if value and isinstance(value[0], int) else "<list>"
    return None


def _union(message: str, *branches):
    """A union chosen by the value's shape (``_shape``); ``message`` says what fits when nothing does."""
    return Annotated[Union[branches], Discriminator(_shape, custom_error_type="invalid_shape",
                                                    custom_error_message=message)]


UNION_TAGS = {"<none>", "<text>", "<list>", "<ids>"}      # stripped from error locations


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class FunctionCall(_Body):
    name: str
    arguments: str


class ToolCallIn(_Body):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: _union("should be a string, a list of text parts or null",
                    Annotated[str, Tag("<text>")], Annotated[list[TextPart], Tag("<list>")],
                    Annotated[None, Tag("<none>")]) = None
    tool_calls: list[ToolCallIn] | None = None      # an assistant's calls (history)
    tool_call_id: str | None = None                 # a tool message: the call it answers

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    """What chat and completions share."""

    model: str | None = None
    max_tokens: Count | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Prob | None = None
    seed: int | None = None
    stop: _union(f"should be a string or a list of at most {MAX_STOPS} strings",
                 Annotated[str, Tag("<text>")], Annotated[list[str], Field(max_length=MAX_STOPS), Tag("<list>")],
                 Annotated[None, Tag("<none>")]) = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    # llama.cpp server extensions
    top_k: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None
    min_p: Prob | None = None
    repeat_penalty: Annotated[float, Field(gt=0.0)] | None = None      # 1: none; 0 would divide by zero
    # structured output (app/serve/structured.py): OpenAI's response_format; grammar (Lark, or GBNF as
    # llama-server takes it) and regex are extensions
    response_format: dict | None = None
    grammar: str | None = None
    regex: str | None = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, bias: dict | None) -> dict | None:
        for key in bias or {}:
            if not TOKEN_ID.fullmatch(key):
                raise PydanticCustomError("token_id", "keys are token ids (decimal integers), got '{key}'",
                                          {"key": key[:40]})
            if int(key) > MAX_INT:
                raise PydanticCustomError("token_id", "token id {key} is out of range", {"key": key[:40]})
        return bias

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return [s for s in stops if s]

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def bias_ids(self) -> list[int]:
        return [int(k) for k in self.logit_bias or {}]


class ChatRequest(_Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: Count | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None
    # vLLM's and llama-server's extension: the chat template's variables (e.g. enable_thinking)
    chat_template_kwargs: dict[str, bool | int | float | str] | None = None

    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def limit_param(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens else "max_tokens"

    def chat_messages(self) -> list[dict]:
        """The messages as the engine takes them ("developer" is the system role of newer models)."""
        out = []
        for m in self.messages:
            d = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            if m.tool_calls:
                d["tool_calls"] = [c.model_dump() for c in m.tool_calls]
            if m.tool_call_id is not None:
                d["tool_call_id"] = m.tool_call_id
            out.append(d)
        return out


class CompletionRequest(_Sampling):
    prompt: _union("should be a string, a list of one string, or a list of token ids",
                   Annotated[str, Tag("<text>")],
                   Annotated[list[str], Field(min_length=1, max_length=1), Tag("<list>")],
                   Annotated[list[TokenId], Field(min_length=1), Tag("<ids>")])
    max_tokens: Count | None = 16           # OpenAI's default for completions
    logprobs: Annotated[int, Field(ge=0, le=MAX_LEGACY_LOGPROBS)] | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def limit(self) -> int | None:
        return self.max_tokens

    def limit_param(self) -> str:
        return "max_tokens"


def parse(model: type[_Body], body: bytes):
    """Validate a JSON body; a 400 ``APIError`` naming the first bad field otherwise."""
    try:
        req = model.model_validate_json(body)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        if err["type"] in ("json_invalid", "json_type", "model_type"):
            raise bad_request(f"the body is not a JSON object: {err['msg']}") from None
        param = ".".join(str(x) for x in err["loc"] if x not in UNION_TAGS) or None
        message = _message(err)
        raise bad_request(f"{param}: {message}" if param else message, param=param) from None
    _refuse_unsupported(req)
    return req


def _message(err: dict) -> str:
    """pydantic's message, saying what was sent where that helps (a literal: which value came)."""
    message = err["msg"].replace(" after validation", "")
    if err["type"] in ("literal_error", "enum") and isinstance(err.get("input"), (str, int, float)):
        message += f", not {str(err['input'])[:40]!r}"
    return message


def _refuse_unsupported(req) -> None:
    if req.n not in (None, 1):
        raise bad_request("n: only n=1 is supported (one choice per request)", param="n")
    if getattr(req, "echo", False):
        raise bad_request("echo: not supported", param="echo")
    if getattr(req, "suffix", None):
        raise bad_request("suffix: insertion is not supported", param="suffix")
    if getattr(req, "best_of", None) not in (None, 1):
        raise bad_request("best_of: only 1 is supported", param="best_of")
