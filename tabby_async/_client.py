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
from .types import HealthResponse, PermissionResponse

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncTabbyClient"]

USER_AGENT = f"tabby-async/{__version__}"
_health = msgspec.json.Decoder(HealthResponse)
_permission = msgspec.json.Decoder(PermissionResponse)


def _normalise_base_url(base_url: str | URL, field: str = "base_url") -> URL:
    url = URL(str(base_url).strip())
    if url.scheme not in ("http", "https") or not url.host:
        # Say what is wrong without echoing the value: it may hold a password or token.
        got = f"scheme {url.scheme!r}" if url.scheme else "no scheme"
        raise InvalidInputError(
            field,
            f"must be an http(s) URL such as http://127.0.0.1:5000 "
            f"(got {got}{'' if url.host else ', no host'})",
        )
    if url.user or url.password:
        raise InvalidInputError(field, "must not carry credentials; use api_key/admin_key")
    path = url.path.rstrip("/")
    if path.endswith("/v1"):  # /props lives outside /v1: keep the server root
        path = path[: -len("/v1")]
    return url.with_path(path or "/").with_query(None).with_fragment(None)


def _check_key(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidInputError(name, "must be a non-empty string without surrounding spaces")
    if any(c in value for c in "\r\n\x00"):
        raise InvalidInputError(name, "must not contain line breaks")
    return value


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
        self.base_url = _normalise_base_url(url, url_source)
        api, admin = (
            resolve_key(api_key, "api_key", ENV_API_KEY),
            resolve_key(admin_key, "admin_key", ENV_ADMIN_KEY),
        )
        api_key = _check_key(api.source, api.value)
        admin_key = _check_key(admin.source, admin.value)
        self.timeout: Timeout = resolve_timeout(timeout, DEFAULT_TIMEOUT)
        self.stream_timeout: Timeout = resolve_timeout(stream_timeout, DEFAULT_STREAM_TIMEOUT)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidInputError("max_retries", f"must be an integer >= 0, got {max_retries!r}")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidInputError("session", "must be an aiohttp.ClientSession")
        if ssl is False:
            warnings.warn(
                "AsyncTabbyClient(ssl=False): TLS certificates are not verified",
                stacklevel=2,
            )
        elif not isinstance(ssl, (bool, _ssl.SSLContext)):
            raise InvalidInputError("ssl", "must be True, False or an ssl.SSLContext")
        self._connection_limit = connection_limit
        self._has_api_key = api_key is not None
        self._has_admin_key = admin_key is not None
        merged = {"User-Agent": USER_AGENT}
        for name, value in (headers or {}).items():
            if name.lower() in ("x-api-key", "x-admin-key", "authorization"):
                raise InvalidInputError(f"headers[{name!r}]", "pass keys as api_key/admin_key")
            merged[name] = value
        self._session: aiohttp.ClientSession | None = session
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
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connection_limit),
            )
        elif session.closed:
            raise ClientStateError("the aiohttp session passed to the client is closed")
        self._loop = loop
        return session

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
        if session is not None and self._owns_session:
            await session.close()

    close = aclose

    async def health(self, *, timeout: TimeoutLike = None) -> HealthResponse:
        """``GET /health`` (no key). An "unhealthy" 503 is returned, not raised."""
        return await self._transport.request(
            R.HEALTH, _health, None, resolve_timeout(timeout, self.timeout)
        )

    async def permission(self, *, timeout: TimeoutLike = None) -> PermissionResponse:
        """``GET /v1/auth/permission``: what the client's key may do (api or admin)."""
        return await self._transport.request(
            R.PERMISSION, _permission, None, resolve_timeout(timeout, self.timeout)
        )
