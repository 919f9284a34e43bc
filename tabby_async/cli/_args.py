"""Argument types for the CLI's parsers: numbers, seconds, lists and names.

Each is an argparse ``type=``: it turns one command-line word into a value
or raises :class:`argparse.ArgumentTypeError`, which argparse turns into a
usage error (exit code 2) naming the option. Every command group uses these,
so that ``--timeout -1`` and ``--node-timeout -1`` are refused alike.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "name_list",
    "non_negative_int",
    "non_negative_seconds",
    "number_list",
    "number_or_auto",
    "positive_int",
    "positive_seconds",
]

N = TypeVar("N", int, float)


def _number(text: str, convert: Callable[[str], N], what: str) -> N:
    try:
        value = convert(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _whole(text: str, minimum: int) -> int:
    value = _number(text, int, "an integer")
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def _seconds(text: str, *, zero: bool) -> float:
    value = _number(text, float, "a number")
    if value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (a count: nodes per batch, modules, concurrency)."""
    return _whole(text, 1)


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (a limit where 0 means "none allowed")."""
    return _whole(text, 0)


def positive_seconds(text: str) -> float:
    """A time bound in seconds: a finite number > 0."""
    return _seconds(text, zero=False)


def non_negative_seconds(text: str) -> float:
    """A time in seconds where 0 is allowed (no delay, or "off")."""
    return _seconds(text, zero=True)


def number_list(text: str) -> list[float]:
    """``20,24`` -> ``[20.0, 24.0]`` (GB or MB per GPU)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts if p]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, such as 20,24; got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def number_or_auto(text: str) -> float | str:
    """A rope alpha: a number, or ``auto`` to let the server compute it."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def name_list(text: str) -> list[str]:
    """``a, b,`` -> ``["a", "b"]``: names separated by commas (empty items dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]
