"""The one request path: send, retry what is safe, map errors, decode.

Every call of the SDK, the load stream included, goes through
:meth:`Transport.send`. It knows each route's key kind (api or admin) and
whether the route may be retried, and turns every aiohttp failure and every
error status into a :class:`~tabby_async.TabbyError`.
"""

from __future__ import annotations

import asyncio
import html
import http
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
import msgspec
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import errors as E
from ._checks import check_max_retries, redact_url
from ._timeouts import Timeout

__all__ = ["Route", "Transport"]

logger = logging.getLogger("tabby_async")

T = TypeVar("T")
AuthKind = Literal["api", "admin", "none"]

#: Statuses worth another try on a read-only route (503 only when it is not
#: the server's "no model loaded" answer, which is a result).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: The longest wait between two tries, and the most a Retry-After is obeyed.
MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 30.0
BACKOFF_BASE = 0.25

_NOT_LOADED = ("No models are currently loaded.", "No embedding models are currently loaded.")
_MODEL_PATH_MISSING = "Could not find the model path"
_EMBEDDING_PATH_MISSING = "Could not find the embedding model path"
_detail_decoder = msgspec.json.Decoder()


@dataclass(frozen=True)
class Route:
    """One server route: where it is, which key it needs, if it may be retried."""

    name: str
    method: str
    path: str
    auth: AuthKind
    #: Read-only: safe to send again after it may have reached the server.
    idempotent: bool
    #: Error statuses whose body is still the answer when it has the
    #: answer's shape (``/health``'s 503); see ``answer_shape`` in ``send``.
    ok_statuses: frozenset[int] = field(default_factory=frozenset)
    #: Runs for minutes (a load, a download): sent on the client's second
    #: connection pool, so that many of them never starve the control calls.
    long_running: bool = False


class Transport:
    """Sends requests for one client; shares nothing mutable between calls."""

    def __init__(
        self,
        *,
        base_url: URL,
        api_key: str | None,
        admin_key: str | None,
        headers: Mapping[str, str],
        session: Callable[[], aiohttp.ClientSession],
        max_retries: int,
        ssl: Any,
        long_session: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        self._base_url = base_url
        self._session = session
        self._long_session = session if long_session is None else long_session
        self.max_retries = max_retries
        self._ssl = ssl
        self._urls: dict[str, URL] = {}
        base = dict(headers)
        api: dict[str, str] = dict(base)
        admin: dict[str, str] = dict(base)
        # PROTOCOL.md: api routes take x-api-key with an api key or the admin
        # key; admin routes take only x-admin-key (x-api-key holding the admin
        # key is refused there). The admin key is preferred on api routes
        # too: TabbyAPI lists every model folder only to admin permission.
        # With no key, send none: a server with auth off treats every request
        # as admin.
        if api_key or admin_key:
            api["x-api-key"] = admin_key or api_key or ""
        if admin_key:
            admin["x-admin-key"] = admin_key
        self._headers: dict[tuple[AuthKind, bool], dict[str, str]] = {}
        for kind, h in (("api", api), ("admin", admin), ("none", base)):
            self._headers[(kind, False)] = h  # type: ignore[index]
            self._headers[(kind, True)] = {**h, "Content-Type": "application/json"}  # type: ignore[index]
        self._has_admin_key = bool(admin_key)

    def session(self) -> aiohttp.ClientSession:
        """The client's session (created on first use in the running loop)."""
        return self._session()

    def url(self, route: Route) -> URL:
        url = self._urls.get(route.path)
        if url is None:
            # Concatenate, so that a base URL with a path prefix (a reverse
            # proxy's /tabby) keeps it.
            url = URL(str(self._base_url).rstrip("/") + route.path, encoded=True)
            self._urls[route.path] = url
        return url

    async def request(
        self,
        route: Route,
        decoder: msgspec.json.Decoder[T],
        body: msgspec.Struct | None,
        timeout: Timeout,
        max_retries: int | None = None,
        *,
        answer_shape: msgspec.json.Decoder[Any] | None = None,
    ) -> T:
        """Send, read the whole answer and decode it."""
        _, data = await self.send(
            route, body, timeout, max_retries, read=True, answer_shape=answer_shape
        )
        return decode(route, decoder, data)

    async def send(
        self,
        route: Route,
        body: msgspec.Struct | None,
        timeout: Timeout,
        max_retries: int | None = None,
        *,
        read: bool,
        answer_shape: msgspec.json.Decoder[Any] | None = None,
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """Send with retries; return the response and, if ``read``, its body.

        With ``read=False`` the response is returned open (for streams) and
        the caller must close it. Error statuses never come back: they raise,
        except a status in ``route.ok_statuses`` whose body ``answer_shape``
        decodes (any other body with that status is an error like the rest).
        """
        # Checked before anything is sent: a bad value must not fail mid-call.
        retries = self.max_retries if max_retries is None else check_max_retries(max_retries)
        payload = msgspec.json.encode(body) if body is not None else None
        started = time.monotonic()
        deadline = None if timeout.total is None else started + timeout.total
        attempt = 0
        while True:
            try:
                # The first try gets the whole total (and the cached timeout).
                left = None if deadline is None or not attempt else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise E.TabbyTimeoutError(
                        f"{route.method} {route.path}: the total timeout of "
                        f"{_secs(timeout.total)} passed",
                        kind="total",
                    )
                return await self._attempt(route, payload, timeout, left, read, answer_shape)
            except E.TabbyError as err:
                delay = self._retry_delay(route, err, attempt, retries)
                if delay is None or (deadline is not None and time.monotonic() + delay >= deadline):
                    if attempt:
                        _say_tries(err, attempt + 1)
                    raise
                attempt += 1
                logger.debug(
                    "retry %d/%d of %s %s in %.2f s after %s",
                    attempt,
                    retries,
                    route.method,
                    route.path,
                    delay,
                    err.code,
                )
                await asyncio.sleep(delay)

    async def _attempt(
        self,
        route: Route,
        payload: bytes | None,
        timeout: Timeout,
        total_left: float | None,
        read: bool,
        answer_shape: msgspec.json.Decoder[Any] | None,
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        session = self._long_session() if route.long_running else self._session()
        started = time.monotonic()
        response: aiohttp.ClientResponse | None = None
        mapped: E.TabbyError | None = None
        try:
            # ``answer`` is ``response`` typed as set, for the return below.
            response = answer = await session.request(
                route.method,
                self.url(route),
                data=payload,
                headers=self._headers[(route.auth, payload is not None)],
                timeout=timeout.to_aiohttp(total_left),
                allow_redirects=False,
                ssl=self._ssl,
            )
            status = response.status
            if status >= 300:
                data = await response.read()
                if status not in route.ok_statuses or not _has_shape(answer_shape, data):
                    raise self._status_error(route, response, data)
            else:
                data = await response.read() if read else b""
        except E.TabbyError:
            if response is not None:
                response.release()
            raise
        except BaseException as exc:
            if response is not None:
                response.close()
            mapped = translate_exception(exc, route, timeout, response is not None)
            if mapped is None:
                raise
        if mapped is not None:
            # Raised outside the except block, so that aiohttp's exception
            # (whose request record holds the key headers) is neither the
            # cause nor the context of what the caller gets.
            raise mapped
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %d in %.1f ms",
                route.method,
                route.path,
                status,
                (time.monotonic() - started) * 1000,
            )
        return answer, data

    def _retry_delay(
        self, route: Route, err: E.TabbyError, attempt: int, retries: int
    ) -> float | None:
        """Seconds to wait before the next try, or None when not to retry."""
        if attempt >= retries:
            return None
        retry_after: float | None = None
        if isinstance(err, (E.TabbyConnectionError, E.TabbyTimeoutError)):
            if err.sent and not route.idempotent:
                return None  # it may have reached the server: never twice
            if isinstance(err, E.TabbyTimeoutError) and err.kind != "connect":
                return None  # slow, not broken: another try only waits again
        elif isinstance(err, E.APIStatusError):
            if not route.idempotent or err.status not in RETRY_STATUSES:
                return None
            if isinstance(err, E.ModelNotLoadedError):
                return None
            retry_after = _retry_after(err.headers.get("Retry-After"))
        else:
            return None
        backoff = random.uniform(0, min(MAX_BACKOFF, BACKOFF_BASE * 2**attempt))
        if retry_after is not None:
            return max(min(retry_after, MAX_RETRY_AFTER), backoff)
        return backoff

    def _status_error(
        self, route: Route, response: aiohttp.ClientResponse, data: bytes
    ) -> E.APIStatusError:
        return status_error(
            response.status,
            data,
            route,
            has_admin_key=self._has_admin_key,
            headers=kept_headers(response.headers),
        )


#: The answer headers an APIStatusError keeps, by their canonical names.
_KEPT_HEADERS = {
    "retry-after": "Retry-After",
    "location": "Location",
    "content-type": "Content-Type",
}


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The answer headers an error keeps, under canonical names whatever their case.

    aiohttp's C parser gives known names canonically, its pure-Python parser
    (``AIOHTTP_NO_EXTENSIONS``, PyPy) as sent: ``retry-after`` must still count.
    """
    kept: dict[str, str] = {}
    for name, value in headers.items():
        canonical = _KEPT_HEADERS.get(name.lower())
        if canonical is not None:
            kept[canonical] = value
    return kept


def _has_shape(shape: msgspec.json.Decoder[Any] | None, data: bytes) -> bool:
    """True when an error status's body is the route's answer after all."""
    if shape is None:
        return False
    try:
        shape.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    return True


def _say_tries(err: E.TabbyError, tries: int) -> None:
    """Add to a retried call's last error how often it was tried."""
    err.message = f"{err.message} (tried {tries} times)"
    err.args = (err.message,)


def decode(route: Route, decoder: msgspec.json.Decoder[T], data: bytes) -> T:
    """Decode an answer; a body of the wrong shape is a ResponseDecodeError."""
    try:
        return decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise E.ResponseDecodeError(
            f"{route.method} {route.path}: unexpected answer from the server: {exc}"
        ) from None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from TabbyAPI's proxies; use backoff
    return seconds if seconds >= 0 else None


def status_error(
    status: int,
    data: bytes,
    route: Route,
    *,
    has_admin_key: bool,
    headers: dict[str, str] | None = None,
) -> E.APIStatusError:
    """The typed error for an error answer, from its status and body.

    The message is the server's ``detail``. An answer not from TabbyAPI (a
    proxy's HTML page, other JSON, plain text, nothing) gets a short message:
    an HTML page is summed up by its title and size, never pasted.
    """
    try:
        body: Any = _detail_decoder.decode(data) if data else None
    except msgspec.DecodeError:
        body = data.decode("utf-8", "replace")
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        message = detail
    elif isinstance(detail, list):
        message = "; ".join(_field_error(e) for e in detail) or "validation failed"
        # A validation entry's "input" echoes what was sent, which for a
        # download holds the HF token: the caller has its input anyway.
        body["detail"] = [_without_input(e) for e in detail]
    else:
        message = _foreign_message(status, body, len(data), headers)
    kwargs: dict[str, Any] = {
        "status": status,
        "body": body,
        "method": route.method,
        "path": route.path,
        "headers": headers,
    }
    cls: type[E.APIStatusError]
    if status == 401:
        if "admin key" in message:
            cls = E.PermissionDeniedError
            hint = "" if has_admin_key else " (the client has no admin_key)"
            message = f"{message}: {route.name} needs the admin key{hint}"
        else:
            cls = E.AuthenticationError
    elif status == 403:
        cls = E.PermissionDeniedError
    elif status == 400:
        missing = message.startswith((_MODEL_PATH_MISSING, _EMBEDDING_PATH_MISSING))
        cls = E.ModelNotFoundError if missing else E.BadRequestError
    elif status == 404:
        cls = E.NotFoundError
    elif status == 422:
        cls = E.UnprocessableEntityError
    elif status == 429:
        cls = E.RateLimitError
    elif status == 503 and message in _NOT_LOADED:
        cls = E.ModelNotLoadedError
    elif status >= 500:
        cls = E.ServerError
    elif 300 <= status < 400:
        cls = E.APIStatusError
        where = redact_url((headers or {}).get("Location", "?"))
        message = f"unexpected redirect to {where} (not followed: keys stay with the origin)"
    else:
        cls = E.APIStatusError
    return cls(message, **kwargs)


_TITLE = re.compile(r"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_HTML_START = ("<!doctype html", "<html", "<head", "<body", "<center", "<h1")


def _foreign_message(
    status: int, body: Any, size: int, headers: Mapping[str, str] | None
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
        title = " ".join(html.unescape(match.group(1)).split())[:100] if match else ""
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
    exc: BaseException, route: Route, timeout: Timeout, got_head: bool
) -> E.TabbyError | None:
    """The TabbyError for an aiohttp or asyncio failure; None to let it through.

    Cancellation and non-network errors pass through unchanged. The TabbyError
    keeps no reference to ``exc``; raise it outside the ``except`` block that
    caught ``exc`` (or ``from None`` and clear its context) so that it is not
    chained either. ``exc`` itself is scrubbed: an aiohttp error that records
    the request loses the request's headers (the keys), in case the caller
    keeps it anyway.
    """
    _scrub(exc)
    what = f"{route.method} {route.path}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return E.TabbyTimeoutError(
            f"{what}: no connection within the connect timeout of {_secs(timeout.connect)}",
            kind="connect",
            sent=False,
        )
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return E.TabbyTimeoutError(
            f"{what}: the server sent nothing for the read timeout of {_secs(timeout.read)}",
            kind="read",
        )
    if isinstance(exc, asyncio.TimeoutError):
        return E.TabbyTimeoutError(
            f"{what}: the total timeout of {_secs(timeout.total)} passed", kind="total"
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


def _secs(value: float | None) -> str:
    return "(none)" if value is None else f"{value:g} s"
