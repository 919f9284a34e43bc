"""Checks of what users pass: client settings (URL, keys, headers, limits) and request fields.

Shared by :class:`~tabby_async.AsyncTabbyClient` and the fleet's node specs,
so that both refuse the same things in the same words. Each check raises
:class:`~tabby_async.InvalidInputError` naming the field, and no message
carries a secret: keys and header values are never echoed, and a URL is shown
without its user info, query and fragment (see :func:`redact_url`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import aiohttp
import msgspec
from yarl import URL

from .errors import InvalidInputError

__all__ = [
    "check_bool",
    "check_connection_limit",
    "check_count",
    "check_folder_name",
    "check_gpu_split",
    "check_headers",
    "check_json",
    "check_key",
    "check_max_retries",
    "check_positive_float",
    "check_positive_int",
    "check_seconds",
    "check_str",
    "check_str_list",
    "check_trace_configs",
    "normalise_base_url",
    "redact_url",
]

#: C0 controls and DEL: never valid in a key, and each one either breaks the
#: request line (CR, LF, NUL) or makes aiohttp refuse the header on every call.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: The same, but a tab is allowed inside an HTTP header value.
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: An HTTP header name (RFC 9110 "token").
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Headers that carry keys: the client sets them from api_key/admin_key only.
_KEY_HEADERS = frozenset({"x-api-key", "x-admin-key", "authorization"})


def redact_url(text: str) -> str:
    """``text`` (a URL, or what was meant to be one) fit for a message.

    User info (``user:password@``) becomes ``***@`` and a query or fragment
    becomes ``?***``. A URL without a scheme is handled the same way
    (``admin:pw@10.0.0.1:5000`` gives ``***@10.0.0.1:5000``). When an ``@``
    comes after the first ``?`` or ``#``, a password holding a raw ``?`` cannot
    be told from a query, so only the scheme is shown.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    cut = len(rest)
    for mark in "?#":
        found = rest.find(mark)
        if 0 <= found < cut:
            cut = found
    shown, hidden = rest[:cut], rest[cut:]
    if "@" in hidden:
        return f"{scheme}{sep}***"
    _, at, host = shown.rpartition("@")
    if at:
        shown = f"***@{host}"
    return f"{scheme}{sep}{shown}{'?***' if hidden else ''}"


def normalise_base_url(base_url: object, field: str = "base_url") -> URL:
    """The server's root URL from what the user gave; refuses what cannot work.

    Refused: anything but an ``http``/``https`` URL with a host, a port that
    is not a number from 1 to 65535, a broken IPv6 literal, and user info
    (keys go in ``api_key``/``admin_key``). A trailing ``/v1`` is dropped (the
    server's ``/props`` lives outside it); a path prefix (a reverse proxy's
    ``/tabby``) is kept; the query and fragment are dropped.
    """
    if isinstance(base_url, URL):
        text = str(base_url)
    elif isinstance(base_url, str):
        text = base_url.strip()
    else:
        raise InvalidInputError(field, f"must be a URL string, not {type(base_url).__name__}")
    shown = redact_url(text)
    try:
        url = URL(text)
        host, port = url.host, url.port
    except (ValueError, TypeError) as exc:
        # yarl's reasons ("Port out of range 0-65535", "Invalid IPv6 URL")
        # name no part of the URL, but say them only for a URL with nothing
        # to hide, to be sure.
        reason = f" ({exc})" if shown == text else ""
        raise InvalidInputError(field, f"is not a valid URL{reason}: {shown!r}") from None
    if url.scheme not in ("http", "https") or not host:
        raise InvalidInputError(
            field, f"must be an http(s) URL such as http://127.0.0.1:5000, got {shown!r}"
        )
    if url.user is not None or url.password is not None:
        raise InvalidInputError(
            field, f"must not carry credentials ({shown!r}); use api_key/admin_key"
        )
    if port == 0:
        raise InvalidInputError(field, f"the port must be from 1 to 65535, got {shown!r}")
    path = url.path.rstrip("/")
    if path.endswith("/v1"):  # /props lives outside /v1: keep the server root
        path = path[: -len("/v1")]
    return url.with_path(path or "/").with_query(None).with_fragment(None)


def check_key(name: str, value: object) -> str | None:
    """An api or admin key: None, or a non-empty string that fits in a header.

    The message names the key and never shows it.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidInputError(name, "must be a non-empty string without surrounding spaces")
    if _CONTROL.search(value):
        raise InvalidInputError(
            name, "must not contain control characters (line breaks, NUL, DEL...)"
        )
    return value


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Extra request headers: valid names, string values without control characters.

    Keys may not be passed this way (``x-api-key``, ``x-admin-key``,
    ``Authorization``): the client sends them only where they belong. A
    refused header is named; its value is never shown.
    """
    checked: dict[str, str] = {}
    if headers is None:
        return checked
    if not isinstance(headers, Mapping):
        raise InvalidInputError("headers", "must be a mapping of header names to values")
    for name, value in headers.items():
        where = f"headers[{name!r}]"
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidInputError(where, "is not a valid HTTP header name")
        if name.lower() in _KEY_HEADERS:
            raise InvalidInputError(where, "pass keys as api_key/admin_key")
        if not isinstance(value, str):
            kind = type(value).__name__
            raise InvalidInputError(where, f"the value must be a string, not {kind}")
        if _VALUE_CONTROL.search(value):
            raise InvalidInputError(
                where, "the value must not contain control characters (line breaks, NUL, DEL...)"
            )
        checked[name] = value
    return checked


def check_max_retries(value: object) -> int:
    """``max_retries``: an integer >= 0 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError("max_retries", f"must be an integer >= 0, got {value!r}")
    return value


def check_connection_limit(value: object) -> int:
    """``connection_limit``: an integer >= 0, where 0 means no limit (as in aiohttp)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(
            "connection_limit", f"must be an integer >= 0 (0: no limit), got {value!r}"
        )
    return value


def check_trace_configs(value: object) -> tuple[aiohttp.TraceConfig, ...]:
    """``trace_configs``: aiohttp ``TraceConfig`` objects (None: none)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes, aiohttp.TraceConfig)) or not isinstance(value, Iterable):
        raise InvalidInputError("trace_configs", "must be a list of aiohttp.TraceConfig")
    found = tuple(value)
    for config in found:
        if not isinstance(config, aiohttp.TraceConfig):
            raise InvalidInputError(
                "trace_configs", f"must hold aiohttp.TraceConfig, not {type(config).__name__}"
            )
    return found


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """A count such as ``max_concurrency``: an integer >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(name, f"must be an integer >= {minimum}, got {value!r}")
    return value


def check_seconds(name: str, value: object) -> float | None:
    """A bound in seconds: a finite number > 0, or None for no bound (bools refused)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidInputError(name, f"must be seconds > 0 or None, got {value!r}")
    return float(value)


# --- request fields ---------------------------------------------------------------


def check_folder_name(field: str, value: object) -> None:
    """A name the server resolves inside one of its folders (a model, draft, LoRA,
    template or preset): non-empty, relative, no ``..`` segment.

    The server does not sanitise names (``../x`` escapes its model folder), so
    the SDK refuses them. Nested names such as ``org/exl3/4.0bpw`` stay allowed.
    """
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidInputError(field, "must not be empty")
    if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":"):
        raise InvalidInputError(field, f"must be a name relative to the model folder: {value!r}")
    if any(part == ".." for part in value.replace("\\", "/").split("/")):
        raise InvalidInputError(field, f"must not contain a '..' segment: {value!r}")
    if "\x00" in value:
        raise InvalidInputError(field, "must not contain a NUL character")


def check_positive_int(field: str, value: object, *, own: int | None = None) -> None:
    """An optional integer > 0 (bools refused); ``own`` is one more value allowed.

    (``max_seq_len=-1`` asks the server for the model's own context length.)
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(field, f"must be an integer, not {type(value).__name__}")
    if value <= 0 and value != own:
        also = "" if own is None else f" (or {own})"
        raise InvalidInputError(field, f"must be greater than 0{also}, got {value}")


def check_positive_float(field: str, value: object, *, allow_auto: bool = False) -> None:
    """An optional finite number > 0 (or ``"auto"`` where allowed)."""
    if value is None or (allow_auto and value == "auto"):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = ' or "auto"' if allow_auto else ""
        raise InvalidInputError(field, f"must be a number{hint}, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(field, f"must be a finite number greater than 0, got {value}")


def check_gpu_split(
    field: str, value: object, *, unit: str = "GB", negative_ok: bool = False
) -> None:
    """An optional list of amounts per GPU (``unit`` each): finite numbers, >= 0 unless
    ``negative_ok`` (``autosplit_reserve``: a negative reserve leaves that GPU out)."""
    if value is None:
        return
    if not isinstance(value, (list, tuple)):
        raise InvalidInputError(field, f"must be a list of numbers ({unit} per GPU)")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise InvalidInputError(f"{field}[{i}]", f"must be a number, not {item!r}")
        if item < 0 and not negative_ok:
            raise InvalidInputError(f"{field}[{i}]", f"must not be negative, got {item}")


def check_str(field: str, value: object) -> None:
    """An optional string."""
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}")


def check_bool(field: str, value: object) -> None:
    """An optional bool (``1`` and ``"true"`` refused)."""
    if value is not None and not isinstance(value, bool):
        raise InvalidInputError(field, f"must be true or false, not {value!r}")


def check_str_list(field: str, value: object) -> None:
    """An optional list of strings (a bare string refused)."""
    if value is None:
        return
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise InvalidInputError(field, "must be a list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidInputError(f"{field}[{i}]", f"must be a string, not {item!r}")


def check_json(field: str, value: object) -> None:
    """Data sent on as given (sampler overrides, template variables): JSON can carry it.

    Checked when the request is built, so that an object JSON cannot hold
    is refused naming the field, not found by the encoder while sending.
    """
    try:
        msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidInputError(field, f"must be JSON data: {exc}") from None
