"""Request-body parsing and validation that mimic FastAPI + pydantic v2 (lax mode).

TabbyAPI validates bodies with pydantic; clients see that through 422 bodies of the
shape ``{"detail": [{"type", "loc", "msg", "input", "ctx"?}, ...]}``. This module
reproduces the parts of that behaviour the model routes can trigger: JSON decode
errors (``json_invalid``), missing fields, the lax coercions (``"2048"`` -> 2048,
``1.0`` -> 1, ``"true"`` -> True, ...), unknown keys ignored, and union errors that
list one entry per branch (``rope_alpha: float | "auto"``).

It is deliberately table driven and allocation-light: the emulator validates every
load request of a benchmark with it. The request schemas themselves are elsewhere;
this module is the machinery.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

__all__ = [
    "NO_BODY",
    "BodyError",
    "Field",
    "Schema",
    "check_bool",
    "check_dict",
    "check_float",
    "check_float_or_auto",
    "check_int",
    "check_str",
    "list_of",
    "literal",
    "parse_json_body",
    "union",
    "validate",
]

Loc = tuple[str | int, ...]
ErrorEntry = dict[str, Any]
# A field validator returns (value, errors); errors non-empty means the value is invalid.
Checker = Callable[[Any, Loc], tuple[Any, list[ErrorEntry]]]

_MISSING: Any = object()
#: What :func:`parse_json_body` returns for a request without a body.
NO_BODY: Any = object()


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

    Returns :data:`NO_BODY` for an empty body (a JSON ``null`` is ``None``, which
    pydantic rejects as not-an-object) and the raw text for a non-JSON content
    type (rejected the same way). Raises :class:`BodyError` with a
    ``json_invalid`` entry (``loc ["body", <char offset>]``) for malformed JSON: that
    is the 422 the real server sends *before* checking auth.
    """
    if not body:
        return NO_BODY
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


def literal(*allowed: str) -> Checker:
    """``Literal[...]`` of strings: ``literal_error`` naming the allowed values."""
    quoted = [repr(a) for a in allowed]
    expected = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    message = f"Input should be {expected}"

    def check(value: Any, loc: Loc) -> tuple[Any, list[ErrorEntry]]:
        if isinstance(value, str) and value in allowed:
            return value, []
        return None, [_err("literal_error", loc, message, value, {"expected": expected})]

    return check


def union(*branches: tuple[str, Checker]) -> Checker:
    """``Union[...]``: the first branch that passes; else every branch's errors, each
    under its own label in the ``loc`` (``"str"``, ``"list[ChatCompletionMessage]"``)."""

    def check(value: Any, loc: Loc) -> tuple[Any, list[ErrorEntry]]:
        errors: list[ErrorEntry] = []
        for label, branch in branches:
            converted, errs = branch(value, (*loc, label))
            if not errs:
                return converted, []
            errors.extend(errs)
        return None, errors

    return check


# --------------------------------------------------------------------------- objects


class Field:
    """A :class:`Schema` field beyond ``(name, checker, required)``.

    ``nullable=False`` is a field with a default that refuses ``null`` (a plain
    ``bool = True`` in pydantic: absent means the default, ``null`` fails the
    checker). ``aliases`` are further keys it may come under, tried in order
    after ``name`` (pydantic's ``AliasChoices``); an error's ``loc`` names the
    key that was sent.
    """

    __slots__ = ("aliases", "checker", "default", "name", "nullable", "required")

    def __init__(
        self,
        name: str,
        checker: Checker,
        *,
        required: bool = False,
        nullable: bool = True,
        default: Any = None,
        aliases: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.checker = checker
        self.required = required
        self.nullable = nullable and not required
        self.default = default
        self.aliases = aliases


class Schema:
    """An object with ordered fields; validates to a plain dict of the known fields.

    ``fields`` are ``(name, checker, required)`` tuples, where optional fields
    accept ``null`` and default to ``None``, or :class:`Field` for the rest.
    """

    __slots__ = ("fields",)

    def __init__(self, fields: Sequence[tuple[str, Checker, bool] | Field]) -> None:
        self.fields = tuple(
            spec if isinstance(spec, Field) else Field(spec[0], spec[1], required=spec[2])
            for spec in fields
        )

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
        for field in self.fields:
            name = key = field.name
            raw = value.get(name, _MISSING)
            if raw is _MISSING:
                for key in field.aliases:
                    raw = value.get(key, _MISSING)
                    if raw is not _MISSING:
                        break
                else:
                    if field.required:
                        errors.append(_err("missing", (*loc, name), "Field required", value))
                    out[name] = field.default
                    continue
            if raw is None and field.nullable:
                out[name] = None
                continue
            converted, errs = field.checker(raw, (*loc, key))
            if errs:
                errors.extend(errs)
            else:
                out[name] = converted
        return (None, errors) if errors else (out, [])


def validate(schema: Schema, body: Any) -> dict[str, Any]:
    """Validate a parsed request body against ``schema``; raise :class:`BodyError` on failure.

    A missing body (:data:`NO_BODY`) gives pydantic's ``missing`` error at
    ``loc ["body"]``.
    """
    if body is NO_BODY:
        raise BodyError([_err("missing", ("body",), "Field required", None)])
    out, errors = schema(body, ("body",))
    if errors:
        raise BodyError(errors)
    result: dict[str, Any] = out
    return result
