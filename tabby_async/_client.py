"""AsyncTabbyClient: one server, its keys, its session and its defaults."""

from __future__ import annotations

import ssl as _ssl
import warnings
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from ._checks import (
    check_connection_limit,
    check_headers,
    check_key,
    check_max_retries,
    check_trace_configs,
    normalise_base_url,
)
from ._defaults import (
    DEFAULT_MAX_RESPONSE_BYTES,
    USE_CLIENT_DEFAULT,
    ClientDefaults,
    RetriesArg,
    TimeoutArg,
    UseClientDefault,
    check_max_response_bytes,
)
from ._env import ENV_ADMIN_KEY, ENV_API_KEY, FROM_ENV, FromEnv, resolve_key, resolve_url
from ._inference import AsyncInferenceService
from ._lora import AsyncLoraService
from ._models import AsyncModelsService, ProgressCallback
from ._sampling import AsyncSamplingService
from ._server import AsyncServerService
from ._session import Sessions
from ._state_apply import ensure_state
from ._state_plan import DesiredState, StateResult
from ._templates import AsyncTemplatesService
from ._timeouts import (
    DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TIMEOUT,
    Timeout,
    TimeoutLike,
    resolve_timeout,
)
from ._tokens import AsyncTokensService
from ._transport import Transport
from ._version import __version__
from .errors import ClientStateError, InvalidInputError
from .types import HealthResponse, PermissionResponse, ServiceInfo

if TYPE_CHECKING:
    from typing import Self

__all__ = ["AsyncTabbyClient"]

USER_AGENT = f"tabby-async/{__version__}"


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

    The client creates its aiohttp sessions on first use, in the running
    event loop, and closes them in :meth:`aclose`. Pass ``session=`` to use
    your own session instead: the client then never closes it. A client
    belongs to the event loop it was first used in.

    ``timeout`` bounds the control calls (default 30 s total, 10 s to
    connect); ``stream_timeout`` bounds loads, downloads and embedding loads
    (default: no total, 10 s to connect; for the load stream at most 60 s of
    silence, while downloads and embedding loads, silent until done, get no
    idle bound). Each is seconds (the total), a :class:`Timeout`, or ``None``
    for no bound at all. Every call's ``timeout=`` overrides them; its
    default, :data:`~tabby_async.USE_CLIENT_DEFAULT`, means these.
    ``max_retries`` (default 2) applies to read-only calls only.

    ``connection_limit`` (default 100; 0 means no limit) bounds each of the
    client's two connection pools: one for control calls, one for loads,
    downloads and embedding loads, so that long calls never take every
    connection a ``list()`` needs. A ``session=`` of your own is used for
    both kinds, and its connector's limit applies.

    ``trace_configs`` (aiohttp ``TraceConfig`` objects, such as
    ``opentelemetry-instrumentation-aiohttp-client``'s
    ``create_trace_config()``) are given to the sessions the client makes,
    so that every request it sends is traced. A ``session=`` of your own
    keeps its own trace configs: give them to that session, not here (both
    at once is an :class:`InvalidInputError`).

    ``max_response_bytes`` (default 16 MiB, counted after decompression) is
    the most the client reads of one answer: a JSON answer, an error body,
    or one event of a load stream (which also has its own 1 MiB bound per
    event; the stream as a whole may run as long as the load). Past it the
    call raises :class:`~tabby_async.ResponseTooLargeError` and the
    connection is closed, so a broken or hostile server cannot exhaust the
    client's memory. ``None`` means no bound at all.

    Every argument is checked here, before anything is sent: a bad value
    raises :class:`InvalidInputError` naming it (and never showing a key or
    a header value).

    Errors any call may raise, besides those each method's ``Raises`` names
    (all are :class:`~tabby_async.TabbyError`, with a stable ``code``):
    :class:`~tabby_async.TabbyConnectionError` (the server cannot be
    reached, or the connection broke), :class:`~tabby_async.TabbyTimeoutError`
    (a bound fired), :class:`~tabby_async.AuthenticationError` (the api key
    is missing or wrong), :class:`~tabby_async.PermissionDeniedError` (the
    call needs the admin key), :class:`~tabby_async.RateLimitError`,
    :class:`~tabby_async.ServerError` and the other
    :class:`~tabby_async.APIStatusError` answers,
    :class:`~tabby_async.ResponseDecodeError` (an answer of the wrong shape;
    :class:`~tabby_async.ResponseTooLargeError` for one over ``max_response_bytes``),
    :class:`~tabby_async.InvalidInputError` (a bad argument, refused before
    sending) and :class:`~tabby_async.ClientStateError` (a closed client, or
    one used from another event loop). Reads are retried first where that
    is safe; writes never are.
    """

    def __init__(
        self,
        base_url: str | URL | None = None,
        *,
        api_key: str | FromEnv | None = FROM_ENV,
        admin_key: str | FromEnv | None = FROM_ENV,
        timeout: TimeoutLike = DEFAULT_TIMEOUT,
        stream_timeout: TimeoutLike = DEFAULT_STREAM_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        max_retries: int = 2,
        ssl: _ssl.SSLContext | bool = True,
        connection_limit: int = 100,
        trace_configs: Iterable[aiohttp.TraceConfig] | None = None,
        max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        # Not given: from TABBY_URL / TABBY_API_KEY / TABBY_ADMIN_KEY.
        url, url_source = resolve_url(base_url)
        self.base_url = normalise_base_url(url, url_source)
        api, admin = (
            resolve_key(api_key, "api_key", ENV_API_KEY),
            resolve_key(admin_key, "admin_key", ENV_ADMIN_KEY),
        )
        api_key = check_key(api.source, api.value)
        admin_key = check_key(admin.source, admin.value)
        self._defaults = ClientDefaults.build(
            resolve_timeout(timeout, DEFAULT_TIMEOUT),
            resolve_timeout(stream_timeout, DEFAULT_STREAM_TIMEOUT, "stream_timeout"),
            check_max_retries(max_retries),
        )
        limit = check_connection_limit(connection_limit)
        max_bytes = check_max_response_bytes(max_response_bytes)
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidInputError("session", "must be an aiohttp.ClientSession")
        traces = check_trace_configs(trace_configs)
        if session is not None and traces:
            raise InvalidInputError(
                "trace_configs",
                "apply to the sessions the client makes; a session passed in keeps its own "
                "(aiohttp.ClientSession(trace_configs=...))",
            )
        if ssl is False:
            warnings.warn(
                "AsyncTabbyClient(ssl=False): TLS certificates are not verified",
                stacklevel=2,
            )
        elif not isinstance(ssl, (bool, _ssl.SSLContext)):
            raise InvalidInputError("ssl", "must be True, False or an ssl.SSLContext")
        self._has_api_key = api_key is not None
        self._has_admin_key = admin_key is not None
        self._sessions = Sessions(session, connection_limit=limit, trace_configs=traces)
        self._transport = Transport(
            base_url=self.base_url,
            api_key=api_key,
            admin_key=admin_key,
            headers={"User-Agent": USER_AGENT, **check_headers(headers)},
            sessions=self._sessions,
            ssl=ssl,
            max_response_bytes=max_bytes,
        )
        self._owns_sessions = True
        self._areas(None)

    def _areas(self, shared: AsyncModelsService | None) -> None:
        """Build the API areas over this client's transport and defaults.

        ``shared``: the models area of the client this one derives from, whose
        memory of ensures (and their single runs) this one shares.
        """
        transport, defaults = self._transport, self._defaults
        self._server = AsyncServerService(transport, defaults)
        #: The Models API: list, get, load, load_stream, unload, download, ...
        self.models = AsyncModelsService(transport, defaults, shared)
        #: LoRA adapters: list, active, load, unload.
        self.lora = AsyncLoraService(transport, defaults)
        #: Prompt templates: list, switch, unload.
        self.templates = AsyncTemplatesService(transport, defaults)
        #: Sampler overrides: list, switch, unload.
        self.sampling = AsyncSamplingService(transport, defaults)
        #: Tokenization with the loaded model: encode, decode.
        self.tokens = AsyncTokensService(transport, defaults)
        #: The OpenAI routes passed through raw (for a gateway or a proxy).
        self.inference = AsyncInferenceService(transport, defaults)

    def with_options(
        self,
        *,
        timeout: TimeoutLike | UseClientDefault = USE_CLIENT_DEFAULT,
        stream_timeout: TimeoutLike | UseClientDefault = USE_CLIENT_DEFAULT,
        max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> AsyncTabbyClient:
        """This client with other defaults: the same server, keys and connections.

        Only the defaults given change; the others are this client's. The
        client returned opens no connection pool of its own and needs no
        closing: closing it closes nothing, and it is closed when this client
        is. Ensures through either share one memory (see ``ensure_loaded``).

        Raises:
            InvalidInputError: a bad ``timeout``, ``stream_timeout`` or
                ``max_retries``, naming it.
        """
        base = self._defaults
        derived = object.__new__(AsyncTabbyClient)
        derived.base_url = self.base_url
        derived._has_api_key = self._has_api_key
        derived._has_admin_key = self._has_admin_key
        derived._sessions = self._sessions
        derived._transport = self._transport
        derived._owns_sessions = False
        derived._defaults = ClientDefaults.build(
            base.timeout
            if isinstance(timeout, UseClientDefault)
            else resolve_timeout(timeout, DEFAULT_TIMEOUT),
            base.stream_timeout
            if isinstance(stream_timeout, UseClientDefault)
            else resolve_timeout(stream_timeout, DEFAULT_STREAM_TIMEOUT, "stream_timeout"),
            base.max_retries
            if isinstance(max_retries, UseClientDefault)
            else check_max_retries(max_retries),
        )
        derived._areas(self.models)
        return derived

    def __repr__(self) -> str:
        # Keys are secrets: say only whether each is set.
        return (
            f"AsyncTabbyClient(base_url={str(self.base_url)!r}, "
            f"api_key={'<set>' if self._has_api_key else None}, "
            f"admin_key={'<set>' if self._has_admin_key else None}"
            f"{', closed' if self.closed else ''})"
        )

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._sessions.closed

    @property
    def has_api_key(self) -> bool:
        """True when the client holds an api key (given, or read from ``TABBY_API_KEY``)."""
        return self._has_api_key

    @property
    def has_admin_key(self) -> bool:
        """True when the client holds an admin key (given, or read from ``TABBY_ADMIN_KEY``).

        It is then also the key sent on the read routes: the server shows
        every folder in its listings to the admin key only.
        """
        return self._has_admin_key

    @property
    def timeout(self) -> Timeout:
        """The default bound of control calls."""
        return self._defaults.timeout

    @property
    def stream_timeout(self) -> Timeout:
        """The default bound of loads, downloads and embedding loads."""
        return self._defaults.stream_timeout

    @property
    def max_retries(self) -> int:
        """The default number of retries of read-only calls."""
        return self._defaults.max_retries

    async def __aenter__(self) -> Self:
        if self.closed:
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
        """Close the client's own sessions (a session passed in stays open); idempotent.

        A client from :meth:`with_options` closes nothing: the client it came
        from owns the connections.

        Raises no :class:`~tabby_async.TabbyError`; calls made after it raise
        :class:`~tabby_async.ClientStateError`.
        """
        if self._owns_sessions:
            await self._sessions.aclose()

    close = aclose

    async def health(
        self,
        *,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
        max_retries: RetriesArg = USE_CLIENT_DEFAULT,
    ) -> HealthResponse:
        """The server's own view of its health (``GET /health``, no key needed).

        "healthy" says the server runs, not that a model is loaded. Once the
        server has recorded an error it answers 503 "unhealthy" with the
        ``issues`` it recorded, and keeps doing so until it is restarted: that
        answer is returned (``healthy`` is False), not raised. Any other 503,
        such as a proxy's page, is a :class:`~tabby_async.ServerError`,
        retried like any read.

        Raises:
            ServerError: a 5xx that is not the server's own health answer
                (such as a proxy's page), after the retries.
            ResponseDecodeError: a 200 (or 503) that is not TabbyAPI's health
                answer (an HTML page, another JSON shape, a status that
                contradicts its issues): whoever answered is not TabbyAPI.
        """
        return await self._server.health(timeout=timeout, max_retries=max_retries)

    async def permission(
        self,
        *,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
        max_retries: RetriesArg = USE_CLIENT_DEFAULT,
    ) -> PermissionResponse:
        """What the client's key may do: ``api`` or ``admin`` (``GET /v1/auth/permission``).

        Raises:
            AuthenticationError: the key is missing or unknown.
            BadRequestError: the server refused the keys sent together (a
                wrong admin key beside a valid api key).
        """
        return await self._server.permission(timeout=timeout, max_retries=max_retries)

    async def service_info(
        self,
        *,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
        max_retries: RetriesArg = USE_CLIENT_DEFAULT,
    ) -> ServiceInfo:
        """What the server says it is and which APIs it offers (no key needed).

        ``GET /.well-known/serviceinfo``: a fixed description (``software.name``
        is ``"TabbyAPI"``; ``api`` maps ``"openai"`` and ``"koboldai"`` to their
        ``relative_url``), whatever the server's state. It raises only the
        errors any call may raise (no key is needed).
        """
        return await self._server.service_info(timeout=timeout, max_retries=max_retries)

    async def apply(
        self,
        state: DesiredState,
        *,
        dry_run: bool = False,
        on_progress: ProgressCallback | None = None,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
    ) -> StateResult:
        """Apply ``state`` to the server: its model, template, sampler preset, embedding model.

        Each managed part is planned from what the server reports, and only
        the parts that differ are written, in a safe order: the model first
        (any load replaces the template), then the template, the sampler
        preset and the embedding model. Then the server is read again: a part
        that still differs raises :class:`~tabby_async.StateMismatchError`. A
        second call with the same state sends no write. ``dry_run`` only
        plans (the result's ``plan``). What cannot be compared (fields the
        server never reports, a preset's contents) is in ``unchecked``.
        ``on_progress`` and ``timeout`` apply to the model and embedding loads.

        Raises:
            StateMismatchError: after acting, a part still differs; its
                ``result`` says which parts and what was done.
            InvalidInputError: ``state`` is not a
                :class:`~tabby_async.DesiredState`, before anything is sent.
            PermissionDeniedError: a write is needed and the client has no
                valid admin key.
            ModelNotFoundError: no such model or embedding model folder.
            LoadFailedError: the server reported a failed model load.
            StreamError: the model's load stream ended before it finished.
            TemplateNotFoundError: no prompt template of that name.
            PresetNotFoundError: no sampler preset of that name.
        """
        if not isinstance(state, DesiredState):
            raise InvalidInputError("state", "must be a DesiredState")
        return await ensure_state(
            self, state, dry_run=dry_run, on_progress=on_progress, timeout=timeout
        )

    async def ensure(
        self,
        state: DesiredState,
        *,
        dry_run: bool = False,
        on_progress: ProgressCallback | None = None,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
    ) -> StateResult:
        """Deprecated spelling of :meth:`apply`; it raises what :meth:`apply` raises."""
        warnings.warn(
            "AsyncTabbyClient.ensure is deprecated: use AsyncTabbyClient.apply",
            DeprecationWarning,
            2,
        )
        return await self.apply(state, dry_run=dry_run, on_progress=on_progress, timeout=timeout)
