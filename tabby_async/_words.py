"""Counts in words, for summaries and messages: ``1 node``, ``2 nodes``."""

from __future__ import annotations

__all__ = ["counted"]


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun``: the plural (``noun + "s"`` unless given) for any count but 1."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {plural if plural is not None else noun + 's'}"
