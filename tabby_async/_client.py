"""AsyncTabbyClient: one server, its keys, its session and its defaults."""

from __future__ import annotations

import asyncio
import ssl as _ssl
import warnings
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp
import msgspec
from yarl import URL

from . import _routes as R
from ._checks import (
    check_connection_limit,
    check_headers,
    check_key,
    check_max_retries,
    normalise_base_url,
)
from ._env import ENV_ADMIN_KEY, ENV_API_KEY, FROM_ENV, FromEnv, resolve_key, resolve_url
from ._timeouts import (
    DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TIMEOUT,
    Timeout,
    TimeoutLike,
    resolve_timeout,
)
from ._transport import Transport
from ._version import __version__
from .errors import ClientStateError, InvalidInputError
from .models import AsyncModelsService
from .types import HealthIssue, HealthResponse, PermissionResponse

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncTabbyClient"]

USER_AGENT = f"tabby-async/{__version__}"
_health = msgspec.json.Decoder(HealthResponse)
_permission = msgspec.json.Decoder(PermissionResponse)


class _UnhealthyShape(msgspec.Struct, frozen=True):
    """The server's own 503 on ``/health``: both fields present, ``issues`` a list.

    A proxy's 503 (an HTML page, ``{"detail": ...}``, ``{"status": "error"}``)
    lacks one of them and is an outage, not the server's answer.
    """

    status: str
    issues: list[HealthIssue]


_unhealthy_shape = msgspec.json.Decoder(_UnhealthyShape)


class AsyncTabbyClient:
    """A client for one TabbyAPI server.

    ``api_key`` is for the read-only routes, ``admin_key`` for loads,
    unloads and downloads (the admin key works on both, so an operator may
    pass just that). Use it as ``async with AsyncTabbyClient(...) as client:``
    or call :meth:`aclose` when done.

    Not given, ``base_url``, ``api_key`` and ``admin_key`` come from the
    environment variables ``TABBY_URL``, ``TABBY_API_KEY`` and
    ``TABBY_ADMIN_KEY`` (unset or empty: ``http://127.0.0.1:5000`` and no
    keys). An argument always wins, ``None`` included: ``api_key=None`` means
    "send no api key" and does not read the environment. A bad value from a
    variable raises :class:`InvalidInputError` naming the variable.

    The client creates its aiohttp session on first use, in the running event
    loop, and closes it in :meth:`aclose`. Pass ``session=`` to use your own
    session instead: the client then never closes it. A client belongs to the
    event loop it was first used in.

    ``timeout`` bounds the control calls (default 30 s total);
    ``stream_timeout`` bounds loads, downloads and embedding loads (default:
    no total; for the load stream at most 60 s of silence, while downloads
    and embedding loads, silent until done, get no idle bound). Either may be
    overridden per call with ``timeout=``.
    ``max_retries`` (default 2) applies to read-only calls only.

    ``connection_limit`` (default 100; 0 means no limit) bounds each of the
    client's two connection pools: one for control calls, one for loads,
    downloads and embedding loads, so that long calls never take every
    connection a ``list()`` needs. A ``session=`` of your own is used for
    both kinds, and its connector's limit applies.

    Every argument is checked here, before anything is sent: a bad value
    raises :class:`InvalidInputError` naming it (and never showing a key or
    a header value).
    """

    def __init__(
        self,
        base_url: str | URL | None = None,
        *,
        api_key: str | FromEnv | None = FROM_ENV,
        admin_key: str | FromEnv | None = FROM_ENV,
        timeout: TimeoutLike = None,
        stream_timeout: TimeoutLike = None,
        headers: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        max_retries: int = 2,
        ssl: _ssl.SSLContext | bool = True,
        connection_limit: int = 100,
    ) -> None:
        # Not given: from TABBY_URL / TABBY_API_KEY / TABBY_ADMIN_KEY (see _env).
        url, url_source = resolve_url(base_url)
        self.base_url = normalise_base_url(url, url_source)
        api, admin = (
            resolve_key(api_key, "api_key", ENV_API_KEY),
            resolve_key(admin_key, "admin_key", ENV_ADMIN_KEY),
        )
        api_key = check_key(api.source, api.value)
        admin_key = check_key(admin.source, admin.value)
        self.timeout: Timeout = resolve_timeout(timeout, DEFAULT_TIMEOUT)
        self.stream_timeout: Timeout = resolve_timeout(stream_timeout, DEFAULT_STREAM_TIMEOUT)
        max_retries = check_max_retries(max_retries)
        self._connection_limit = check_connection_limit(connection_limit)
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidInputError("session", "must be an aiohttp.ClientSession")
        if ssl is False:
            warnings.warn(
                "AsyncTabbyClient(ssl=False): TLS certificates are not verified",
                stacklevel=2,
            )
        elif not isinstance(ssl, (bool, _ssl.SSLContext)):
            raise InvalidInputError("ssl", "must be True, False or an ssl.SSLContext")
        self._has_api_key = api_key is not None
        self._has_admin_key = admin_key is not None
        merged = {"User-Agent": USER_AGENT, **check_headers(headers)}
        self._session: aiohttp.ClientSession | None = session
        #: The second pool, for loads and downloads (own session only).
        self._long_session: aiohttp.ClientSession | None = None
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._transport = Transport(
            base_url=self.base_url,
            api_key=api_key,
            admin_key=admin_key,
            headers=merged,
            session=self._get_session,
            max_retries=max_retries,
            ssl=ssl,
            long_session=self._get_long_session,
        )
        self.models = AsyncModelsService(self)

    def __repr__(self) -> str:
        # Keys are secrets: say only whether each is set.
        return (
            f"AsyncTabbyClient(base_url={str(self.base_url)!r}, "
            f"api_key={'<set>' if self._has_api_key else None}, "
            f"admin_key={'<set>' if self._has_admin_key else None}"
            f"{', closed' if self._closed else ''})"
        )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def max_retries(self) -> int:
        return self._transport.max_retries

    def _get_session(self) -> aiohttp.ClientSession:
        """The session for a request now, in the running loop."""
        loop = asyncio.get_running_loop()
        session = self._session
        if self._closed:
            raise ClientStateError("the client is closed")
        if session is not None and self._loop is loop:
            return session
        if self._loop is not None and self._loop is not loop:
            raise ClientStateError(
                "this client was first used in another event loop; "
                "create one AsyncTabbyClient per event loop"
            )
        if session is None:
            session = self._session = self._new_session()
        elif session.closed:
            raise ClientStateError("the aiohttp session passed to the client is closed")
        elif _session_loop(session) not in (None, loop):
            raise ClientStateError(
                "the aiohttp session passed to the client belongs to another event loop; "
                "create the session in the loop that uses the client"
            )
        self._loop = loop
        return session

    def _get_long_session(self) -> aiohttp.ClientSession:
        """The session for loads and downloads: a second pool of connections.

        Long calls hold their connection for minutes; in the control calls'
        pool, enough of them would leave no connection for a ``list()``.
        A session passed in by the user is used for both.
        """
        session = self._get_session()
        if not self._owns_session:
            return session
        long_session = self._long_session
        if long_session is None:
            long_session = self._long_session = self._new_session()
        return long_session

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connection_limit),
        )

    async def __aenter__(self) -> Self:
        if self._closed:
            raise ClientStateError("the client is closed")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's own session (a session passed in stays open)."""
        if self._closed:
            return
        self._closed = True
        session, self._session = self._session, None
        long_session, self._long_session = self._long_session, None
        if self._owns_session:
            for own in (session, long_session):
                if own is not None:
                    await own.close()

    close = aclose

    async def health(self, *, timeout: TimeoutLike = None) -> HealthResponse:
        """The server's own view of its health (``GET /health``, no key needed).

        "healthy" says the server runs, not that a model is loaded. Once the
        server has recorded an error it answers 503 "unhealthy" with the
        ``issues`` it recorded, and keeps doing so until it is restarted: that
        answer is returned (``healthy`` is False), not raised. Only a 503 with
        that shape (``status`` and an ``issues`` list) counts: any other 503,
        such as a proxy's page, is a :class:`~tabby_async.ServerError`,
        retried like any read.
        """
        return await self._transport.request(
            R.HEALTH,
            _health,
            None,
            resolve_timeout(timeout, self.timeout),
            answer_shape=_unhealthy_shape,
        )

    async def permission(self, *, timeout: TimeoutLike = None) -> PermissionResponse:
        """``GET /v1/auth/permission``: what the client's key may do (api or admin)."""
        return await self._transport.request(
            R.PERMISSION, _permission, None, resolve_timeout(timeout, self.timeout)
        )


def _session_loop(session: aiohttp.ClientSession) -> asyncio.AbstractEventLoop | None:
    """The event loop ``session`` was made in; None when aiohttp does not say."""
    # ClientSession.loop is public but deprecated (a DeprecationWarning on
    # every read); it is read once per client, on first use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = getattr(session, "loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None
