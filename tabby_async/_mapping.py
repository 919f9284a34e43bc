"""The one boundary where foreign failures become typed errors.

An error answer (status and body) becomes the most specific
:class:`~tabby_async.APIStatusError` (:func:`status_error`); an aiohttp or
asyncio failure becomes a :class:`~tabby_async.TabbyConnectionError` or
:class:`~tabby_async.TabbyTimeoutError` (:func:`translate_exception`); a 2xx
body of the wrong shape becomes a :class:`~tabby_async.ResponseDecodeError`
(:func:`decode`). Nothing else in the SDK maps errors.

Whatever a server's answer puts into an error passes a :class:`Redactor`
first: a proxy's page, a debug endpoint or a plain-text 502 that echoes the
request would otherwise carry the client's keys into ``err.body`` and
``str(err)``.
"""

from __future__ import annotations

import asyncio
import html
import http
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec
from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy

from . import errors as E
from ._checks import redact_url
from ._route import Route
from ._timeouts import Timeout

__all__ = [
    "NO_SECRETS",
    "REDACTED",
    "Redactor",
    "decode",
    "kept_headers",
    "secs",
    "size_text",
    "status_error",
    "translate_exception",
]

T = TypeVar("T")
_Err = TypeVar("_Err", bound=BaseException)

#: What stands in for a secret found in a server's answer.
REDACTED = "<redacted>"
#: Deeper than this, a part of a decoded answer is dropped whole rather than
#: walked (a JSON body nests at most about a thousand levels, past Python's
#: recursion limit); no real error body comes close.
_MAX_DEPTH = 64


class Redactor:
    """Replaces the client's own secrets in what a server's answer puts into an error.

    Built from the keys (and, per call, the Hugging Face token); it never
    shows them, not even in its repr.
    """

    __slots__ = ("_raw", "_secrets")

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first: a key that holds another as a part is replaced whole.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self._raw = tuple(s.encode() for s in self._secrets)

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"

    def adding(self, secret: str | None) -> Redactor:
        """This redactor with one more secret (itself when there is none to add)."""
        if not secret or secret in self._secrets:
            return self
        return Redactor((*self._secrets, secret))

    def may_hold(self, data: bytes, texts: Iterable[str] = ()) -> bool:
        """Whether a secret could come out of ``data`` once decoded, or be in ``texts``.

        False only when no secret's bytes are in ``data`` and nothing there
        could spell one in another form (a JSON ``\\u`` escape, an HTML
        entity): the common error answer then skips the walk over its parts.
        """
        if not self._secrets:
            return False
        # find(), not ``in``: bytes' ``in`` first tries its argument as an int
        # and builds a TypeError to drop, and this runs for every error answer.
        if data.find(b"\\") >= 0 or data.find(b"&") >= 0:
            return True
        for raw in self._raw:
            if data.find(raw) >= 0:
                return True
        for text in texts:
            for secret in self._secrets:
                if secret in text:
                    return True
        return False

    def text(self, text: str) -> str:
        """``text`` with every secret replaced by :data:`REDACTED`."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, value: Any, depth: int = 0) -> Any:
        """A decoded answer (or a part) with every string in it redacted, keys included."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (dict, list, tuple)) and depth >= _MAX_DEPTH:
            return REDACTED
        if isinstance(value, dict):
            return {self.value(k, depth + 1): self.value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, depth + 1) for v in value]
        if isinstance(value, tuple):
            return tuple(self.value(v, depth + 1) for v in value)
        return value

    def error(self, err: _Err) -> _Err:
        """``err`` with its args and every attribute redacted, in place; returns it."""
        if self._secrets:
            for name, value in list(vars(err).items()):
                setattr(err, name, self.value(value))
            err.args = self.value(err.args)
        return err


#: The redactor of a client without keys.
NO_SECRETS = Redactor()

#: The server's texts that decide an error's class.
_NOT_LOADED = {
    "No models are currently loaded.": "model",
    "No embedding models are currently loaded.": "embedding",
}
_MODEL_PATH_MISSING = "Could not find the model path"
_EMBEDDING_PATH_MISSING = "Could not find the embedding model path"
_ALREADY_LOADED = "is already loaded! Aborting."
_PRESET = "Sampler override preset with name "
_NO_TEMPLATE = "Cannot tokenize chat completion message because a prompt template is not set"
_MISSING_KEY = ("Please provide an API key", "Please provide an admin key")
_detail_decoder = msgspec.json.Decoder()


#: The answer headers an APIStatusError keeps, by their canonical names.
_KEPT_HEADERS = (hdrs.RETRY_AFTER, hdrs.LOCATION, hdrs.CONTENT_TYPE)


def kept_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """The answer headers an error keeps, under canonical names whatever their case.

    aiohttp's C parser gives known names canonically, its pure-Python parser
    (``AIOHTTP_NO_EXTENSIONS``, PyPy) as sent: the lookup is the
    case-insensitive multidict's own, so ``retry-after`` still counts.
    """
    kept: dict[str, str] = {}
    for name in _KEPT_HEADERS:
        value = headers.get(name)
        if value is not None:
            kept[str(name)] = value  # a plain str key: the error is a plain record
    return kept


def decode(
    route: Route[Any],
    decoder: msgspec.json.Decoder[T],
    data: bytes,
    redact: Redactor = NO_SECRETS,
) -> T:
    """Decode an answer; a body of the wrong shape is a ResponseDecodeError.

    msgspec's message may quote a value of the answer (an enum's), hence ``redact``.
    """
    try:
        return decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    # Raised outside the except: msgspec's error (which may quote the answer)
    # must not be its context either.
    raise redact.error(
        E.ResponseDecodeError(
            f"{route.method} {route.path}: unexpected answer from the server: {problem}"
        )
    )


def status_error(
    status: int,
    data: bytes,
    route: Route[Any],
    *,
    has_admin_key: bool,
    headers: dict[str, str] | None = None,
    redact: Redactor = NO_SECRETS,
) -> E.APIStatusError:
    """The typed error for an error answer, from its status and body.

    The message is the server's ``detail``. An answer not from TabbyAPI (a
    proxy's HTML page, other JSON, plain text, nothing) gets a short message:
    an HTML page is summed up by its title and size, never pasted. The body
    and the kept headers are redacted before anything is cut from them, so
    no part of a secret is left at a cut either.
    """
    try:
        body: Any = _detail_decoder.decode(data) if data else None
    except (msgspec.DecodeError, RecursionError):
        body = data.decode("utf-8", "replace")
    if not redact.may_hold(data, headers.values() if headers else ()):
        redact = NO_SECRETS  # nothing of the client's is in this answer
    body = redact.value(body)
    if headers:
        headers = redact.value(headers)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        message = detail
    elif isinstance(detail, list):
        message = "; ".join(_field_error(e) for e in detail) or "validation failed"
        # A validation entry's "input" echoes what was sent, which for a
        # download holds the HF token: the caller has its input anyway.
        body["detail"] = [_without_input(e) for e in detail]
    else:
        message = _foreign_message(status, body, len(data), headers, redact)
    kwargs: dict[str, Any] = {
        "status": status,
        "body": body,
        "method": route.method,
        "path": route.path,
        "headers": headers,
    }
    cls: type[E.APIStatusError]
    # What the server's words say, set on the error as a structured field.
    fields: dict[str, Any] = {}
    if status == 401:
        fields["reason"] = "missing" if message in _MISSING_KEY else "invalid"
        if "admin key" in message:
            cls = E.PermissionDeniedError
            hint = "" if has_admin_key else " (the client has no admin_key)"
            message = f"{message}: {route.name} needs the admin key{hint}"
        else:
            cls = E.AuthenticationError
    elif status == 403:
        cls = E.PermissionDeniedError
    elif status == 400:
        if message.startswith(_MODEL_PATH_MISSING):
            cls = E.ModelNotFoundError
        elif message.startswith(_EMBEDDING_PATH_MISSING):
            cls = E.ModelNotFoundError
            fields["kind"] = "embedding"
        elif message.endswith(_ALREADY_LOADED):
            cls = E.AlreadyLoadedError
        elif message.startswith(_PRESET) and "does not exist" in message:
            cls = E.PresetNotFoundError
        else:
            cls = E.BadRequestError
    elif status == 404:
        cls = E.NotFoundError
    elif status == 422:
        no_template = isinstance(detail, str) and detail.startswith(_NO_TEMPLATE)
        cls = E.NoTemplateError if no_template else E.UnprocessableEntityError
    elif status == 429:
        cls = E.RateLimitError
    elif status == 503 and message in _NOT_LOADED:
        cls = E.ModelNotLoadedError
        fields["kind"] = _NOT_LOADED[message]
    elif status >= 500:
        cls = E.ServerError
    elif 300 <= status < 400:
        cls = E.APIStatusError
        where = redact_url((headers or {}).get("Location", "?"))
        message = f"unexpected redirect to {where} (not followed: keys stay with the origin)"
    else:
        cls = E.APIStatusError
    err = cls(message, **kwargs, **fields)
    return redact.error(err)  # the message too: an unescaped HTML title, say


_TITLE = re.compile(r"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_HTML_START = ("<!doctype html", "<html", "<head", "<body", "<center", "<h1")


def _foreign_message(
    status: int, body: Any, size: int, headers: Mapping[str, str] | None, redact: Redactor
) -> str:
    """A message for an error answer without TabbyAPI's ``detail``."""
    if isinstance(body, dict):
        # Other JSON: proxies and gateways often say why in one of these.
        for key in ("message", "error", "title"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:500]
    reason = _reason(status)
    if not isinstance(body, str) or not body.strip():
        return reason
    text = body.strip()
    content_type = (headers or {}).get("Content-Type", "")
    if "html" in content_type.lower() or text[:20].lower().startswith(_HTML_START):
        match = _TITLE.search(text)
        title = " ".join(redact.text(html.unescape(match.group(1))).split())[:100] if match else ""
        named = f" {title!r}" if title else ""
        return f"{reason}: an HTML page{named} ({size} bytes), not TabbyAPI's answer"
    return text[:500]


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _without_input(entry: object) -> object:
    if isinstance(entry, dict) and "input" in entry:
        return {k: v for k, v in entry.items() if k != "input"}
    return entry


def _field_error(entry: object) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    loc = entry.get("loc")
    where = ".".join(str(p) for p in loc if p != "body") if isinstance(loc, list) else "?"
    return f"{where}: {entry.get('msg', 'invalid')}"


def translate_exception(
    exc: BaseException,
    route: Route[Any],
    timeout: Timeout,
    got_head: bool,
    redact: Redactor = NO_SECRETS,
) -> E.TabbyError | None:
    """The TabbyError for an aiohttp or asyncio failure; None to let it through.

    Cancellation and non-network errors pass through unchanged. The TabbyError
    keeps no reference to ``exc``; raise it outside the ``except`` block that
    caught ``exc`` (or ``from None`` and clear its context) so that it is not
    chained either. ``exc`` itself is scrubbed: an aiohttp error that records
    the request loses the request's headers (the keys), in case the caller
    keeps it anyway. The message is redacted: aiohttp's parser errors quote
    what the server sent.
    """
    _scrub(exc)
    mapped = _translated(exc, route, timeout, got_head)
    return None if mapped is None else redact.error(mapped)


def _translated(
    exc: BaseException, route: Route[Any], timeout: Timeout, got_head: bool
) -> E.TabbyError | None:
    what = f"{route.method} {route.path}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return E.TabbyTimeoutError(
            f"{what}: no connection within the connect timeout of {secs(timeout.connect)}",
            kind="connect",
            sent=False,
        )
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return E.TabbyTimeoutError(
            f"{what}: the server sent nothing for the read timeout of {secs(timeout.read)}",
            kind="read",
        )
    if isinstance(exc, asyncio.TimeoutError):
        return E.TabbyTimeoutError(
            f"{what}: the total timeout of {secs(timeout.total)} passed", kind="total"
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return E.TabbyConnectionError(f"{what}: cannot connect: {exc.os_error}", sent=False)
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        stage = "while reading the answer" if got_head else "before the answer"
        return E.TabbyConnectionError(f"{what}: connection lost {stage}: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        # Not HTTP at all (an SSH banner, the wrong port, a broken proxy):
        # aiohttp's parser message spans several lines, with a caret.
        reason = " ".join(w for w in str(exc.message).split() if w != "^")
        return E.TabbyConnectionError(f"{what}: the server's answer is not valid HTTP: {reason}")
    if isinstance(exc, aiohttp.ClientError):
        return E.TabbyConnectionError(f"{what}: {exc}")
    return None


def _scrub(exc: BaseException) -> None:
    """Drop the request headers (the keys) that aiohttp keeps on some errors."""
    info = getattr(exc, "request_info", None)
    if isinstance(exc, aiohttp.ClientResponseError) and info is not None:
        clean = aiohttp.RequestInfo(
            info.url, info.method, CIMultiDictProxy(CIMultiDict()), info.real_url
        )
        exc.request_info = clean
        exc.history = ()
        exc.args = (clean, ())  # its repr shows the args, which hold the originals


def secs(value: float | None) -> str:
    """Seconds for a message: ``30 s``, or ``(none)`` for no bound."""
    return "(none)" if value is None else f"{value:g} s"


def size_text(limit: int) -> str:
    """A byte count for a message: ``16 MiB``, or ``1000 bytes`` when not whole MiB."""
    return f"{limit >> 20} MiB" if limit and limit % (1 << 20) == 0 else f"{limit} bytes"
