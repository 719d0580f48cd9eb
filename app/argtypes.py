"""argparse value types shared by the command lines (chat, bench, serve)."""
from __future__ import annotations

import argparse


def _at_least(low, cast, noun: str, above: bool = False):
    """A parser of ``cast(text)`` >= ``low`` (> ``low`` with ``above``; NaN is neither)."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {noun}") from None
        if not (value > low if above else value >= low):
            raise argparse.ArgumentTypeError(f"{value} is {'not above' if above else 'below'} {low}")
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


def float_above(low: float):
    return _at_least(low, float, "a number", above=True)


# the sampling options, name -> (type, lowest value, whether the lowest value itself is refused): the
# command line (chat, serve) and the TUI's settings screen take the same values. A seed may be any int
# (-1: a fresh one each time); a repeat penalty of 0 would divide by zero (serve refuses it too)
SAMPLING_BOUNDS = {"max_tokens": (int, 1, False), "temp": (float, 0.0, False), "top_k": (int, 0, False),
                   "top_p": (float, 0.0, False), "min_p": (float, 0.0, False),
                   "repeat_penalty": (float, 0.0, True), "seed": (int, float("-inf"), False)}


def sampling_value(name: str):
    """The parser of sampling option ``name`` (raises argparse.ArgumentTypeError with a one-line reason)."""
    kind, low, above = SAMPLING_BOUNDS[name]
    if above:
        return float_above(low)
    return (int_at_least if kind is int else float_at_least)(low)
