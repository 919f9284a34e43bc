"""Request-body parsing and validation that mimic FastAPI + pydantic v2 (lax mode).

TabbyAPI validates bodies with pydantic; clients see that through 422 bodies of the
shape ``{"detail": [{"type", "loc", "msg", "input", "ctx"?}, ...]}``. This module
reproduces the parts of that behaviour the model routes can trigger: JSON decode
errors (``json_invalid``), missing fields, the lax coercions (``"2048"`` -> 2048,
``1.0`` -> 1, ``"true"`` -> True, ...), unknown keys ignored, and union errors that
list one entry per branch (``rope_alpha: float | "auto"``).

It is deliberately table driven and allocation-light: the emulator validates every
load request of a benchmark with it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

__all__ = [
    "DOWNLOAD_SCHEMA",
    "EMBEDDING_LOAD_SCHEMA",
    "LOAD_SCHEMA",
    "BodyError",
    "Schema",
    "parse_json_body",
    "validate",
]

Loc = tuple[str | int, ...]
ErrorEntry = dict[str, Any]
# A field validator returns (value, errors); errors non-empty means the value is invalid.
Checker = Callable[[Any, Loc], tuple[Any, list[ErrorEntry]]]

_MISSING: Any = object()


class BodyError(Exception):
    """A body that cannot be validated at all; ``errors`` is the 422 ``detail`` list."""

    def __init__(self, errors: list[ErrorEntry]) -> None:
        super().__init__("invalid body")
        self.errors = errors


def _err(
    type_: str, loc: Loc, msg: str, value: Any, ctx: dict[str, Any] | None = None
) -> ErrorEntry:
    entry: ErrorEntry = {"type": type_, "loc": list(loc), "msg": msg, "input": value}
    if ctx is not None:
        entry["ctx"] = ctx
    return entry


def parse_json_body(body: bytes, content_type: str | None) -> Any:
    """Decode a request body the way FastAPI does before any dependency runs.

    Returns ``None`` for an empty body and the raw text for a non-JSON content type
    (pydantic then rejects it as not-an-object). Raises :class:`BodyError` with a
    ``json_invalid`` entry (``loc ["body", <char offset>]``) for malformed JSON: that
    is the 422 the real server sends *before* checking auth.
    """
    if not body:
        return None
    if content_type:
        main = content_type.split(";", 1)[0].strip().lower()
        is_json = main == "application/json" or (
            main.startswith("application/") and main.endswith("+json")
        )
        if not is_json:
            return body.decode("utf-8", "replace")
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        pass
    # Slow path only for bad input: the stdlib gives the exact message and offset
    # that FastAPI reports (and accepts NaN/Infinity, which msgspec rejects).
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise BodyError(
            [
                _err(
                    "json_invalid",
                    ("body", exc.pos),
                    "JSON decode error",
                    {},
                    {"error": exc.msg},
                )
            ]
        ) from None
    except UnicodeDecodeError as exc:
        raise BodyError(
            [_err("json_invalid", ("body", 0), "JSON decode error", {}, {"error": str(exc)})]
        ) from None


# --------------------------------------------------------------------------- scalars

_INT_RE = re.compile(r"[+-]?\d+(?:\.0*)?")
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def check_str(value: Any, loc: Loc) -> tuple[Any, list[ErrorEntry]]:
    """``str``: only strings pass (pydantic v2 does not turn numbers into strings)."""
    if isinstance(value, str):
        return value, []
    return None, [_err("string_type", loc, "Input should be a valid string", value)]


def check_int(value: Any, loc: Loc) -> tuple[Any, list[ErrorEntry]]:
    """``int`` in lax mode: ints, bools, integral floats and numeric strings."""
    if isinstance(value, int):
        return int(value), []
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value), []
        return None, [
            _err(
                "int_from_float",
                loc,
                "Input should be a valid integer, got a number with a fractional part",
                value,
            )
        ]
    if isinstance(value, str):
        text = value.strip()
        if _INT_RE.fullmatch(text):
            return int(text.split(".", 1)[0]), []
        return None, [
            _err(
                "int_parsing",
                loc,
                "Input should be a valid integer, unable to parse string as an integer",
                value,
            )
        ]
    return None, [_err("int_type", loc, "Input should be a valid integer", value)]


def check_float(value: Any, loc: Loc) -> tuple[Any, list[ErrorEntry]]:
    """``float`` in lax mode: numbers, bools and numeric strings."""
    if isinstance(value, (int, float)):
        return float(value), []
    if isinstance(value, str):
        text = value.strip()
        if "_" not in text:
            try:
                return float(text), []
            except ValueError:
                pass
        return None, [
            _err(
                "float_parsing",
                loc,
                "Input should be a valid number, unable to parse string as a number",
                value,
            )
        ]
    return None, [_err("float_type", loc, "Input should be a valid number", value)]


def check_bool(value: Any, loc: Loc) -> tuple[Any, list[ErrorEntry]]:
    """``bool`` in lax mode: bools, 0/1 and the usual yes/no strings."""
    if isinstance(value, bool):
        return value, []
    if isinstance(value, (int, float)):
        if value == 1:
            return True, []
        if value == 0:
            return False, []
    elif isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True, []
        if low in _FALSE:
            return False, []
    else:
        return None, [_err("bool_type", loc, "Input should be a valid boolean", value)]
    return None, [
        _err(
            "bool_parsing",
            loc,
            "Input should be a valid boolean, unable to interpret input",
            value,
        )
    ]


def check_dict(value: Any, loc: Loc) -> tuple[Any, list[ErrorEntry]]:
    """``dict``: any JSON object."""
    if isinstance(value, dict):
        return value, []
    return None, [_err("dict_type", loc, "Input should be a valid dictionary", value)]


def list_of(item: Checker) -> Checker:
    """``List[item]``: a JSON array whose members each pass ``item`` (errors per index)."""

    def check(value: Any, loc: Loc) -> tuple[Any, list[ErrorEntry]]:
        if not isinstance(value, list):
            return None, [_err("list_type", loc, "Input should be a valid list", value)]
        out: list[Any] = []
        errors: list[ErrorEntry] = []
        for index, member in enumerate(value):
            converted, errs = item(member, (*loc, index))
            if errs:
                errors.extend(errs)
            else:
                out.append(converted)
        return (None, errors) if errors else (out, [])

    return check


def check_float_or_auto(value: Any, loc: Loc) -> tuple[Any, list[ErrorEntry]]:
    """``Union[float, Literal["auto"]]``: one error per branch when both fail."""
    converted, float_errors = check_float(value, (*loc, "float"))
    if not float_errors:
        return converted, []
    if value == "auto":
        return "auto", []
    return None, [
        *float_errors,
        _err(
            "literal_error",
            (*loc, "literal['auto']"),
            "Input should be 'auto'",
            value,
            {"expected": "'auto'"},
        ),
    ]


# --------------------------------------------------------------------------- objects


class Schema:
    """An object with ordered fields; validates to a plain dict of the known fields.

    ``fields`` is a sequence of ``(name, checker, required)``; optional fields accept
    ``null`` and default to ``None``.
    """

    __slots__ = ("fields",)

    def __init__(self, fields: Sequence[tuple[str, Checker, bool]]) -> None:
        self.fields = tuple(fields)

    def __call__(self, value: Any, loc: Loc) -> tuple[Any, list[ErrorEntry]]:
        """Validate ``value`` found at ``loc``; usable as a nested field checker."""
        if not isinstance(value, dict):
            return None, [
                _err(
                    "model_attributes_type",
                    loc,
                    "Input should be a valid dictionary or object to extract fields from",
                    value,
                )
            ]
        out: dict[str, Any] = {}
        errors: list[ErrorEntry] = []
        for name, checker, required in self.fields:
            raw = value.get(name, _MISSING)
            if raw is _MISSING:
                if required:
                    errors.append(_err("missing", (*loc, name), "Field required", value))
                out[name] = None
                continue
            if raw is None and not required:
                out[name] = None
                continue
            converted, errs = checker(raw, (*loc, name))
            if errs:
                errors.extend(errs)
            else:
                out[name] = converted
        return (None, errors) if errors else (out, [])


def validate(schema: Schema, body: Any) -> dict[str, Any]:
    """Validate a parsed request body against ``schema``; raise :class:`BodyError` on failure.

    A missing body gives pydantic's ``missing`` error at ``loc ["body"]``.
    """
    if body is None:
        raise BodyError([_err("missing", ("body",), "Field required", None)])
    out, errors = schema(body, ("body",))
    if errors:
        raise BodyError(errors)
    result: dict[str, Any] = out
    return result


_float_list = list_of(check_float)

DRAFT_SCHEMA = Schema(
    [
        ("draft_model_name", check_str, False),
        ("draft_rope_scale", check_float, False),
        ("draft_rope_alpha", check_float_or_auto, False),
        ("draft_gpu_split", _float_list, False),
    ]
)

LOAD_SCHEMA = Schema(
    [
        ("model_name", check_str, True),
        ("backend", check_str, False),
        ("max_seq_len", check_int, False),
        ("cache_size", check_int, False),
        ("cache_mode", check_str, False),
        ("tensor_parallel", check_bool, False),
        ("tensor_parallel_backend", check_str, False),
        ("gpu_split_auto", check_bool, False),
        ("autosplit_reserve", _float_list, False),
        ("gpu_split", _float_list, False),
        ("rope_scale", check_float, False),
        ("rope_alpha", check_float_or_auto, False),
        ("chunk_size", check_int, False),
        ("output_chunking", check_bool, False),
        ("max_batch_size", check_int, False),
        ("prompt_template", check_str, False),
        ("vision", check_bool, False),
        ("draft_model", DRAFT_SCHEMA, False),
        ("skip_queue", check_bool, False),
    ]
)

EMBEDDING_LOAD_SCHEMA = Schema(
    [
        ("embedding_model_name", check_str, True),
        ("embeddings_device", check_str, False),
    ]
)

DOWNLOAD_SCHEMA = Schema(
    [
        ("repo_id", check_str, True),
        ("repo_type", check_str, False),
        ("folder_name", check_str, False),
        ("revision", check_str, False),
        ("token", check_str, False),
        ("include", list_of(check_str), False),
        ("exclude", list_of(check_str), False),
        ("chunk_limit", check_int, False),
        ("timeout", check_int, False),
    ]
)
