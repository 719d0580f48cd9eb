"""A chat's settings: sampling parameters, reply length, --pin-system and --kv-type, kept per chat."""
from __future__ import annotations

import argparse

from ...runtime.sampler import DEFAULTS
from ..argtypes import SAMPLING_BOUNDS, sampling_value

# name -> label; types and bounds are the command line's (argtypes.SAMPLING_BOUNDS); the values a chat does
# not set come from SamplingParams' defaults
FIELDS = {
    "temp": "Temperature",
    "top_k": "Top-k",
    "top_p": "Top-p",
    "min_p": "Min-p",
    "repeat_penalty": "Repeat penalty",
    "seed": "Seed",
    "max_tokens": "Max reply tokens",
}


def is_integer(key: str) -> bool:
    return SAMPLING_BOUNDS[key][0] is int


def parse(key: str, text: str):
    """A field's value from the settings screen's text; ValueError with a one-line message (the command
    line's parser and bound)."""
    try:
        return sampling_value(key)(text)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"{FIELDS[key]}: {e}") from None


MAX_TOKENS = DEFAULTS.max_tokens


def defaults() -> dict:
    """``SamplingParams``' defaults for every field (``seed`` None: a fresh one each reply)."""
    return {k: getattr(DEFAULTS, k) for k in FIELDS}


def from_args(args) -> dict:
    """The settings given on the command line (those not given are left out)."""
    settings = {k: getattr(args, k, None) for k in FIELDS}
    settings = {k: v for k, v in settings.items() if v is not None}
    settings["pin_system"] = bool(getattr(args, "pin_system", False))
    if getattr(args, "kv_type", None) not in (None, "auto"):
        settings["kv_type"] = args.kv_type
    if getattr(args, "base_url", None):            # --base-url: the chat runs on that server
        from .remote import REMOTE, from_args as remote_from_args
        settings[REMOTE] = remote_from_args(args)
    return settings


def chat_kwargs(settings: dict) -> dict:
    """Keyword arguments for ``Engine.chat``: what the chat sets, the engine's defaults otherwise (and
    the "reply format", which ``replies.stream_reply`` turns into a constrained sampler)."""
    kwargs = {k: settings[k] for k in FIELDS if settings.get(k) is not None}
    if settings.get("reply_format"):
        kwargs["reply_format"] = settings["reply_format"]
    if settings.get("think") is True:          # split a <think> block off the answer
        kwargs["reasoning"] = True
    if settings.get("think") is not None:      # the template's own switch (Qwen3, SmolLM3, ...)
        kwargs["template_vars"] = {"enable_thinking": bool(settings["think"])}
    return kwargs


def summary(settings: dict) -> str:
    """A short line such as ``temp 0.7 · top-p 0.9 · seed 1 · pinned system``."""
    shown = {**defaults(), **chat_kwargs(settings)}
    parts = [f"temp {shown['temp']:g}", f"top-k {shown['top_k']}", f"top-p {shown['top_p']:g}"]
    if shown.get("seed") is not None:
        parts.append(f"seed {shown['seed']}")
    parts.append(f"max {shown['max_tokens']}")
    if settings.get("pin_system"):
        parts.append("pinned system")
    if settings.get("reply_format"):
        parts.append("JSON reply" if settings["reply_format"] == "json" else "schema reply")
    if settings.get("kv_type") in ("f16", "q8_0"):
        parts.append(f"{settings['kv_type']} KV")
    if settings.get("think") is not None:
        parts.append(f"thinking {'on' if settings['think'] else 'off'}")
    return " · ".join(parts)
