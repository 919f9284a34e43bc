"""What the inference routes accept: the completion, chat and embedding request bodies.

Only the fields the emulator acts on are declared (every other key is
ignored, as the server ignores unknown ones), in the server's field order, with
its aliases and bounds: ``max_tokens`` (also ``max_completion_tokens`` and
``max_length``) at least 0, ``n`` at least 1.
"""

from __future__ import annotations

from typing import Any

from ._schemas import CHAT_MESSAGE
from ._validation import (
    Checker,
    Field,
    Schema,
    check_bool,
    check_int,
    check_str,
    list_of,
    union,
)

__all__ = ["ABSENT", "CHAT_SCHEMA", "COMPLETION_SCHEMA", "EMBEDDINGS_SCHEMA"]

#: ``max_tokens`` when the request has none (a sampler override may then give it).
ABSENT: Any = object()


def at_least(checker: Checker, bound: int) -> Checker:
    """``checker`` with pydantic's ``ge`` bound after it (``greater_than_equal``)."""

    def check(value: Any, loc: tuple[str | int, ...]) -> tuple[Any, list[dict[str, Any]]]:
        converted, errors = checker(value, loc)
        if errors or converted >= bound:
            return converted, errors
        return None, [
            {
                "type": "greater_than_equal",
                "loc": list(loc),
                "msg": f"Input should be greater than or equal to {bound}",
                "input": value,
                "ctx": {"ge": bound},
            }
        ]

    return check


_str_or_list = union(("str", check_str), ("list[str]", list_of(check_str)))

#: The sampler and common fields both generation requests share, in the server's order.
_COMMON: list[tuple[str, Checker, bool] | Field] = [
    Field(
        "max_tokens",
        at_least(check_int, 0),
        default=ABSENT,
        aliases=("max_completion_tokens", "max_length"),
    ),
    ("model", check_str, False),
    Field("stream", check_bool, default=False),
    ("stream_options", Schema([Field("include_usage", check_bool, default=False)]), False),
    Field("n", at_least(check_int, 1), default=1),
]

COMPLETION_SCHEMA = Schema(
    [
        _COMMON[0],
        ("add_bos_token", check_bool, False),
        *_COMMON[1:],
        ("prompt", _str_or_list, True),
    ]
)

CHAT_SCHEMA = Schema([*_COMMON, ("messages", list_of(CHAT_MESSAGE), True)])

EMBEDDINGS_SCHEMA = Schema(
    [
        ("input", _str_or_list, True),
        Field("encoding_format", check_str, nullable=False, default="float"),
        ("model", check_str, False),
    ]
)
