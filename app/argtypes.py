"""argparse value types shared by the command lines (chat, bench, serve)."""
from __future__ import annotations

import argparse


def _at_least(low, cast, noun: str):
    """A parser of ``cast(text)`` >= ``low`` (NaN is not: ``not value >= low``)."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {noun}") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value
    return parse


def int_at_least(low: int):
    return _at_least(low, int, "a whole number")


def int_between(low: int, high: int, noun: str = "a whole number"):
    """A parser of an int in [low, high]."""
    at_least = _at_least(low, int, noun)

    def parse(text: str) -> int:
        value = at_least(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"{value} is above {high}")
        return value
    return parse


def float_at_least(low: float):
    return _at_least(low, float, "a number")


# the sampling options, name -> (type, lowest value): the command line (chat, serve) and the TUI's settings
# screen take the same values. A seed may be any int (-1: a fresh one each time)
SAMPLING_BOUNDS = {"max_tokens": (int, 1), "temp": (float, 0.0), "top_k": (int, 0), "top_p": (float, 0.0),
                   "min_p": (float, 0.0), "repeat_penalty": (float, 0.0), "seed": (int, float("-inf"))}


def sampling_value(name: str):
    """The parser of sampling option ``name`` (raises argparse.ArgumentTypeError with a one-line reason)."""
    kind, low = SAMPLING_BOUNDS[name]
    return (int_at_least if kind is int else float_at_least)(low)
