"""Request bodies, validated with pydantic (strict types; unknown fields ignored, as OpenAI does).

``parse(model, body)`` turns a body into a request or raises a 400 ``APIError`` naming the field.
Parameters OpenAI has and edgechat cannot honour (n > 1, tools, JSON mode, echo, ...) are refused
with a 400 saying so, never silently ignored.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import bad_request

MAX_STOPS = 16          # stop strings per request (OpenAI allows 4)
MAX_TOP_LOGPROBS = 20   # as OpenAI's chat API
MAX_LEGACY_LOGPROBS = 5  # as OpenAI's completions API

Prob = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Count = Annotated[int, Field(ge=1)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

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
    stop: str | Annotated[list[str], Field(max_length=MAX_STOPS)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    # llama.cpp server extensions
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Prob | None = None
    repeat_penalty: Annotated[float, Field(ge=0.0)] | None = None

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return [s for s in stops if s]

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(_Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: Count | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    tools: list | None = None
    response_format: dict | None = None

    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def chat_messages(self) -> list[dict]:
        """The messages as the engine takes them ("developer" is the system role of newer models)."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in self.messages]


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] | \
        Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
    max_tokens: Count | None = 16           # OpenAI's default for completions
    logprobs: Annotated[int, Field(ge=0, le=MAX_LEGACY_LOGPROBS)] | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def limit(self) -> int | None:
        return self.max_tokens


def parse(model: type[_Body], body: bytes):
    """Validate a JSON body; a 400 ``APIError`` naming the first bad field otherwise."""
    try:
        req = model.model_validate_json(body)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        if err["type"] in ("json_invalid", "json_type", "model_type"):
            raise bad_request(f"the body is not a JSON object: {err['msg']}") from None
        param = ".".join(str(x) for x in err["loc"]) or None
        raise bad_request(f"{param}: {err['msg']}" if param else err["msg"], param=param) from None
    _refuse_unsupported(req)
    return req


def _refuse_unsupported(req) -> None:
    if req.n not in (None, 1):
        raise bad_request("n: only n=1 is supported (one choice per request)", param="n")
    if getattr(req, "tools", None):
        raise bad_request("tools: tool calling is not supported by this server", param="tools")
    fmt = getattr(req, "response_format", None)
    if fmt and fmt.get("type") not in (None, "text"):
        raise bad_request("response_format: only {'type': 'text'} is supported", param="response_format")
    if getattr(req, "echo", False):
        raise bad_request("echo: not supported", param="echo")
    if getattr(req, "suffix", None):
        raise bad_request("suffix: insertion is not supported", param="suffix")
    if getattr(req, "best_of", None) not in (None, 1):
        raise bad_request("best_of: only 1 is supported", param="best_of")
    for key in (req.logit_bias or {}):
        if not key.isdigit():
            raise bad_request(f"logit_bias: keys are token ids, got '{key}'", param="logit_bias")
