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


def float_at_least(low: float):
    return _at_least(low, float, "a number")
