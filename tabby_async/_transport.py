"""The one request path: send, retry what is safe, map errors, decode.

Every call of the SDK goes through :meth:`Transport.call` (read and decode
the whole answer) or, for the load stream, :meth:`Transport.send` (the
answer left open); both take the same tries. It knows each route's key kind (api or admin) and
whether the route may be retried, and turns every aiohttp failure and every
error status into a :class:`~tabby_async.TabbyError` (through the mapping
functions of ``_mapping``, the one place that does).

No answer is read without bound: a body is read whole at once only when its
``Content-Length`` (uncompressed) is within ``max_response_bytes``; any
other is read in chunks and counted after decompression, and the count
passing the cap raises :class:`~tabby_async.ResponseTooLargeError` and
closes the connection. An endless body or a gzip bomb costs at most about
the cap in memory.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import aiohttp
import msgspec
from yarl import URL

from . import errors as E
from ._body import CONTENT_ENCODING, CONTENT_LENGTH, read_body
from ._log import log_extra, logger
from ._mapping import (
    Redactor,
    decode,
    kept_headers,
    secs,
    status_error,
    translate_exception,
)
from ._route import AuthKind, Route
from ._session import Sessions
from ._timeouts import Timeout
from .types import DownloadRequest

__all__ = ["RETRY_STATUSES", "Transport"]

T = TypeVar("T")

#: Statuses worth another try on a read-only route (503 only when it is not
#: the server's "no model loaded" answer, which is a result).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: The longest wait between two tries, and the most a Retry-After is obeyed.
MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 30.0
BACKOFF_BASE = 0.25


class Transport:
    """Sends requests for one client; shares nothing mutable between calls."""

    def __init__(
        self,
        *,
        base_url: URL,
        api_key: str | None,
        admin_key: str | None,
        headers: Mapping[str, str],
        sessions: Sessions,
        ssl: Any,
        max_response_bytes: int | None,
    ) -> None:
        self._base_url = base_url
        self.sessions = sessions
        self._ssl = ssl
        #: The most bytes of one answer read (decompressed); None: no bound.
        self.max_response_bytes = max_response_bytes
        self._cap_digits = 0 if max_response_bytes is None else len(str(max_response_bytes))
        #: Takes the client's keys out of what an answer puts into an error.
        self.redact = Redactor((api_key, admin_key))
        self._urls: dict[str, URL] = {}
        base = dict(headers)
        api: dict[str, str] = dict(base)
        admin: dict[str, str] = dict(base)
        # The server's key rules: api routes take x-api-key with an api key or the admin
        # key; admin routes take only x-admin-key (x-api-key holding the admin
        # key is refused there). The admin key is preferred on api routes
        # too: TabbyAPI lists every model folder only to admin permission.
        # With no key, send none: a server with auth off treats every request
        # as admin.
        if api_key or admin_key:
            api["x-api-key"] = admin_key or api_key or ""
        if admin_key:
            admin["x-admin-key"] = admin_key
        # The api view: only the plain api key (an api-key route of a client
        # without one is never called; see ``has_api_key``).
        api_key_only = {**base, "x-api-key": api_key} if api_key else dict(base)
        #: True when the client holds a plain api key (for ``api_key`` routes).
        self.has_api_key = bool(api_key)
        self._headers: dict[tuple[AuthKind, bool], dict[str, str]] = {}
        for kind, h in (("api", api), ("admin", admin), ("none", base), ("api_key", api_key_only)):
            self._headers[(kind, False)] = h  # type: ignore[index]
            self._headers[(kind, True)] = {**h, "Content-Type": "application/json"}  # type: ignore[index]
        self._has_admin_key = bool(admin_key)

    @property
    def base_url(self) -> URL:
        """The server's base URL."""
        return self._base_url

    def url(self, route: Route[Any]) -> URL:
        """The route's URL on this server (built once per route)."""
        url = self._urls.get(route.path)
        if url is None:
            # Concatenate, so that a base URL with a path prefix (a reverse
            # proxy's /tabby) keeps it.
            url = URL(str(self._base_url).rstrip("/") + route.path, encoded=True)
            self._urls[route.path] = url
        return url

    async def call(
        self, route: Route[T], body: msgspec.Struct | None, timeout: Timeout, retries: int
    ) -> T:
        """Send, read the whole answer and decode it with the route's decoder.

        A route without a decoder returns None (its answer is ``null``).
        """
        payload = msgspec.json.encode(body) if body is not None else None
        redact = self.redact if body is None else self._redactor(body)
        started = time.monotonic()
        try:
            # The first try is awaited here, not through send(): one coroutine
            # less on every resume of the hottest path.
            _, data = await self._attempt(route, payload, timeout, None, True, redact)
        except E.TabbyError as err:
            deadline = _deadline(timeout, started)
            delay = self._next_delay(route, err, 0, retries, deadline)
            if delay is None:
                raise
            # Retried after the except: the next error must not carry this one.
        else:
            delay = None
        if delay is not None:
            _, data = await self._retry(
                route, payload, timeout, retries, True, deadline, delay, redact
            )
        decoder = route.decoder
        if decoder is None or data is None:  # a null answer, or an absent one
            return cast(T, None)
        return decode(route, decoder, data, redact)

    async def send(
        self,
        route: Route[Any],
        body: msgspec.Struct | None,
        timeout: Timeout,
        retries: int,
        *,
        read: bool,
    ) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """Send with retries; return the response and, if ``read``, its body.

        With ``read=False`` the response is returned open (for streams) and
        the caller must close it. Error statuses never come back: they raise,
        except a status in ``route.ok_statuses`` whose body the route's
        ``answer_shape`` decodes (any other body with that status is an error
        like the rest), and the route's ``absent`` answer, whose body is
        returned as None. ``retries`` (read-only routes only) was checked by
        the caller, before anything is sent.
        """
        payload = msgspec.json.encode(body) if body is not None else None
        redact = self.redact if body is None else self._redactor(body)
        started = time.monotonic()
        try:
            return await self._attempt(route, payload, timeout, None, read, redact)
        except E.TabbyError as err:
            deadline = _deadline(timeout, started)
            delay = self._next_delay(route, err, 0, retries, deadline)
            if delay is None:
                raise
        return await self._retry(route, payload, timeout, retries, read, deadline, delay, redact)

    async def open(
        self, route: Route[Any], payload: bytes, timeout: Timeout
    ) -> aiohttp.ClientResponse:
        """Send ``payload`` as it is, once, and return the answer open (a 2xx only).

        The pass-through of a raw request body: never retried (the caller
        decides where it goes next after a failure that did not reach the
        server, ``sent=False``). An error status raises as in :meth:`send`.
        """
        response, _ = await self._attempt(route, payload, timeout, None, False, self.redact)
        return response

    def _redactor(self, body: msgspec.Struct | None) -> Redactor:
        """The call's redactor: the keys, and the Hugging Face token a download carries."""
        if isinstance(body, DownloadRequest):
            return self.redact.adding(body.token)
        return self.redact

    async def _retry(
        self,
        route: Route[Any],
        payload: bytes | None,
        timeout: Timeout,
        retries: int,
        read: bool,
        deadline: float | None,
        delay: float,
        redact: Redactor,
    ) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """The tries after a first one that failed, the first after ``delay`` seconds.

        The first try got the whole total (and the cached timeout); each
        later one gets what is left of it. Each error is raised inside its
        own ``except``, so that it carries no other as its context.
        """
        attempt = 1
        while True:
            await asyncio.sleep(delay)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:  # the wait overran what was left
                late = E.TabbyTimeoutError(
                    f"{route.method} {route.path}: the total timeout of "
                    f"{secs(timeout.total)} passed",
                    kind="total",
                )
                _say_tries(late, attempt)
                try:
                    raise late
                finally:
                    del late  # or it and this frame (its traceback) hold each other
            try:
                return await self._attempt(route, payload, timeout, left, read, redact)
            except E.TabbyError as err:
                next_delay = self._next_delay(route, err, attempt, retries, deadline)
                if next_delay is None:
                    _say_tries(err, attempt + 1)
                    raise
                delay = next_delay
            attempt += 1

    def _next_delay(
        self,
        route: Route[Any],
        err: E.TabbyError,
        attempt: int,
        retries: int,
        deadline: float | None,
    ) -> float | None:
        """Seconds before try ``attempt + 2`` after ``err`` (logged), or None to give up."""
        delay = self._retry_delay(route, err, attempt, retries)
        if delay is None or (deadline is not None and time.monotonic() + delay >= deadline):
            return None
        logger.debug(
            "retry %d/%d of %s %s in %.2f s after %s",
            attempt + 1,
            retries,
            route.method,
            route.path,
            delay,
            err.code,
            extra=log_extra(),
        )
        return delay

    async def _attempt(
        self,
        route: Route[Any],
        payload: bytes | None,
        timeout: Timeout,
        total_left: float | None,
        read: bool,
        redact: Redactor,
    ) -> tuple[aiohttp.ClientResponse, bytes | None]:
        sessions = self.sessions
        limit = self.max_response_bytes
        session = sessions.long() if route.long_running else sessions.control()
        started = time.monotonic()
        response: aiohttp.ClientResponse | None = None
        mapped: E.TabbyError | None = None
        data: bytes | None
        try:
            # ``answer`` is ``response`` typed as set, for the return below.
            response = answer = await session.request(
                route.method,
                self.url(route),
                # A large body goes in chunks, which yield to the loop between them
                # (aiohttp warns of raw bytes past 1 MiB); inline: the hot path.
                data=payload
                if payload is None or len(payload) <= _LARGE_BODY
                else io.BytesIO(payload),
                headers=self._headers[(route.auth, payload is not None)],
                timeout=timeout.to_aiohttp(total_left),
                allow_redirects=False,
                ssl=self._ssl,
            )
            status = response.status
            headers = response.headers
            if not read and status < 300:
                data = b""
            elif limit is None or (
                # The hot path: a plain body of known size within the cap is read whole.
                (length := headers.get(CONTENT_LENGTH)) is not None
                and length.isdecimal()  # what int() reads, nothing else
                # Fewer digits than the cap is within it, without parsing.
                and (len(length) < self._cap_digits or int(length) <= limit)
                and CONTENT_ENCODING not in headers
            ):
                data = await response.read()
            else:
                data = await read_body(response, limit, route)
            if status >= 300 and (
                status not in route.ok_statuses or not _has_shape(route.answer_shape, data)
            ):
                absent = route.absent
                if absent is None or status != absent[0] or not _has_shape(absent[1], data):
                    raise self._status_error(route, response, data, redact)
                data = None  # the server says there is none: no error to build
        except E.TabbyError:
            if response is not None:
                # Read to its end (an error answer): the connection may be reused.
                if response.content.at_eof():
                    response.release()
                else:
                    response.close()
            raise
        except BaseException as exc:
            if response is not None:
                response.close()
            mapped = translate_exception(exc, route, timeout, response is not None, redact)
            if mapped is None:
                raise
        if mapped is not None:
            # Raised outside the except block, so that aiohttp's exception
            # (whose request record holds the key headers) is neither the
            # cause nor the context of what the caller gets; and let go of
            # here, or the error and this frame (its traceback) hold each
            # other until the next garbage collection.
            try:
                raise mapped
            finally:
                del mapped
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %d in %.1f ms",
                route.method,
                route.path,
                status,
                (time.monotonic() - started) * 1000,
                extra=log_extra(),
            )
        return answer, data

    def _retry_delay(
        self, route: Route[Any], err: E.TabbyError, attempt: int, retries: int
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
        self,
        route: Route[Any],
        response: aiohttp.ClientResponse,
        data: bytes,
        redact: Redactor,
    ) -> E.APIStatusError:
        return status_error(
            response.status,
            data,
            route,
            has_admin_key=self._has_admin_key,
            headers=kept_headers(response.headers),
            redact=redact,
        )


#: A body above this goes as a stream of chunks (aiohttp warns of raw bytes past it).
_LARGE_BODY = 1 << 20


def _deadline(timeout: Timeout, started: float) -> float | None:
    """When the total bound of a call started at ``started`` runs out (None: no total)."""
    return None if timeout.total is None else started + timeout.total


def _has_shape(shape: msgspec.json.Decoder[Any] | None, data: bytes) -> bool:
    """True when an error status's body is the route's answer after all."""
    if shape is None:
        return False
    try:
        shape.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return False
    return True


def _say_tries(err: E.TabbyError, tries: int) -> None:
    """Add to a retried call's last error how often it was tried."""
    err.message = f"{err.message} (tried {'once' if tries == 1 else f'{tries} times'})"
    err.args = (err.message,)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from TabbyAPI's proxies; use backoff
    return seconds if seconds >= 0 else None
