"""An in-process, wire-faithful emulator of TabbyAPI's model-management routes.

The emulator is a bare ``aiohttp.web.Server`` (no Application, router or
middlewares: one dispatch function and a dict of routes) so that a benchmark can
run hundreds of them per process and push tens of thousands of requests through
each. What it sends follows ``PROTOCOL.md`` byte for byte: auth header rules and
401 texts, 422 bodies in FastAPI/pydantic shape, 404/405/307 like Starlette, the
SSE load stream with one event per HTTP chunk, timed pings, the global load lock,
503 while loading, and loads that outlive their client.

Only ``aiohttp`` and ``msgspec`` are used, and nothing from the SDK is imported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from http import HTTPStatus
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import web

from ._faults import (
    STAGE_BODY,
    STAGE_BOM,
    STAGE_DELAY,
    STAGE_FAIL,
    STAGE_RETRY,
    STAGE_STREAM,
    STAGE_TRAILING,
    Fault,
    FaultInjector,
)
from ._models import EmulatedModel, RecordedRequest, as_model
from ._validation import (
    DOWNLOAD_SCHEMA,
    EMBEDDING_LOAD_SCHEMA,
    LOAD_SCHEMA,
    BodyError,
    Schema,
    parse_json_body,
    validate,
)

__all__ = ["TabbyEmulator", "run_emulator", "serve_forever"]

_encode = msgspec.json.encode

# ----------------------------------------------------------------------------- texts

MSG_PROVIDE_API = "Please provide an API key"
MSG_INVALID_API = "Invalid API key"
MSG_PROVIDE_ADMIN = "Please provide an admin key"
MSG_INVALID_ADMIN = "Invalid admin key"
MSG_NO_MODEL = "No models are currently loaded."
MSG_NO_EMBEDDING = "No embedding models are currently loaded."
MSG_NO_NAME = "A model name was not provided for load."
MSG_NO_PATH = "Could not find the model path for load. Check model name or config.yml?"
MSG_NO_EMBEDDING_PATH = (
    "Could not find the embedding model path for load. Check model name or config.yml?"
)
MSG_KEY_MISSING = "The provided authentication key is missing."
MSG_KEY_INVALID = "The provided authentication key is invalid."
MSG_OFFLINE = "[Errno -2] Name or service not known"
MSG_NO_EMBEDDING_PACKAGES = (
    "Skipping embeddings because infinity-emb is not installed.\n"
    "Please run the following command in your environment to install extra packages:\n"
    "pip install -U .[extras]"
)
MSG_MISSING_DRAFT = (
    "Could not find the draft model path for load. Check draft model name or config.yml?"
)

#: Backends the emulated server has installed; any other ``backend`` fails the load.
BACKENDS = ("exllamav2", "exllamav3")

# ----------------------------------------------------------------------------- bytes

_JSON_HEADERS: dict[str, str] = {"Content-Type": "application/json", "Server": "uvicorn"}
_SSE_HEADERS: dict[str, str] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
    "Server": "uvicorn",
}
_BODY_NULL = b"null"
_BODY_NOT_FOUND = b'{"detail":"Not Found"}'
_BODY_NOT_ALLOWED = b'{"detail":"Method Not Allowed"}'
_BODY_HEALTHY = b'{"status":"healthy","issues":[]}'
_BODY_EMBEDDING_DONE = (
    b'{"model_type":"embedding_model","module":1,"modules":1,"status":"finished"}'
)
_FRAME_END = b"\r\n\r\n"
_BOM = b"\xef\xbb\xbf"
_HTML: dict[str, str] = {"Content-Type": "text/html", "Server": "nginx/1.24.0"}
# nginx's own wording where it differs from the standard reason phrase.
_NGINX_PHRASES = {503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}

# Queue items of a load stream: frame bytes, ``_PING`` (send a ping now) or ``None``
# (the load job ended: finish the stream normally).
_PING = b""

Handler = Callable[[web.BaseRequest, bytes], Awaitable[web.StreamResponse]]


@functools.lru_cache(maxsize=512)
def _detail(message: str) -> bytes:
    """``{"detail": message}`` as bytes; cached, most messages are constants."""
    return _encode({"detail": message})


def _json(status: int, body: bytes, extra: Mapping[str, str] | None = None) -> web.Response:
    resp = web.Response(status=status, body=body, headers=_JSON_HEADERS)
    if extra:
        resp.headers.update(extra)
    return resp


def _progress_frame(model_type: str, module: int, modules: int, status: str) -> bytes:
    """``data: {"model_type":..,"module":..,"modules":..,"status":..}\\r\\n\\r\\n``."""
    return (
        f'data: {{"model_type":"{model_type}","module":{module},'
        f'"modules":{modules},"status":"{status}"}}\r\n\r\n'
    ).encode()


def _error_frame(message: str) -> bytes:
    """``data: {"error":{"message":..,"trace":null}}\\r\\n\\r\\n``."""
    return b"data: " + _encode({"error": {"message": message, "trace": None}}) + _FRAME_END


def _ping_frame() -> bytes:
    """``: ping - 2026-11-23 19:50:23.862459+00:00\\r\\n\\r\\n`` (current UTC time)."""
    return f": ping - {datetime.now(timezone.utc)}\r\n\r\n".encode()


def _card(name: str, created: int, parameters: Any = None) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "tabbyAPI",
        "logging": None,
        "parameters": parameters,
    }


def _model_list(names: Iterable[str], now: int) -> bytes:
    return _encode({"object": "list", "data": [_card(n, now) for n in names]})


def card_id(name: str) -> str:
    """The id a model card carries: the model folder's own name.

    A nested name (``org/model/4.0bpw``) loads that folder, and the server
    names the card after the folder, so the card says ``4.0bpw``.
    """
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _top_level(names: Iterable[str]) -> list[str]:
    """What a listing shows: the model folder's direct sub-folders, once each."""
    return list(dict.fromkeys(n.replace("\\", "/").split("/", 1)[0] for n in names))


def _template_name(value: str | None) -> str | None:
    # The server opens ``templates/<name>.jinja`` and reports the name without
    # the ``.jinja`` it added or was given.
    if value is not None and value.endswith(".jinja"):
        return value[: -len(".jinja")]
    return value


@dataclasses.dataclass(slots=True)
class _Loaded:
    """The loaded main model and what its card reports.

    The card reports only what the real server reports back: rope values are
    always 1.0, ``draft`` is always null even with a draft loaded, and the
    draft's own settings are reported nowhere. ``draft_name`` is kept for the
    emulator's own accessors, never sent.
    """

    name: str
    max_seq_len: int
    cache_size: int
    cache_mode: str
    max_batch_size: int
    chunk_size: int
    prompt_template: str | None
    prompt_template_content: str | None
    use_vision: bool
    chat_template: str
    draft_name: str | None = None

    def card(self) -> dict[str, Any]:
        return _card(
            card_id(self.name),
            int(time.time()),
            {
                "max_seq_len": self.max_seq_len,
                "cache_size": self.cache_size,
                "cache_mode": self.cache_mode,
                "rope_scale": 1.0,
                "rope_alpha": 1.0,
                "max_batch_size": self.max_batch_size,
                "chunk_size": self.chunk_size,
                "prompt_template": self.prompt_template,
                "prompt_template_content": self.prompt_template_content,
                "use_vision": self.use_vision,
                "draft": None,
            },
        )


class TabbyEmulator:
    """A fake TabbyAPI server for tests, benchmarks and the ``tabby-async emulator`` CLI.

    Use it as an async context manager (or call :meth:`start` / :meth:`close`)::

        async with TabbyEmulator(models=["a", "b"], drafts=["d1"]) as server:
            url, admin = server.url, server.admin_key
            ...

    The loaded model's card (``GET /v1/model``) reports what the real server
    reports, not what the load asked for: ``rope_scale`` and ``rope_alpha`` are
    always 1.0, ``draft`` is always null even with a draft loaded (the load
    stream shows its ``draft`` events; :attr:`loaded_draft` names it), the
    draft's settings and the split, backend and queue fields appear nowhere,
    ``cache_size`` is reported as given, ``prompt_template`` without
    ``.jinja``, and a nested model (``org/model/4.0bpw``) gets the card id of
    its own folder (``4.0bpw``). Listings show the top-level folders only, and,
    as on the server, a model whose folder name equals the loaded one's counts
    as already loaded.

    Args:
        models: main models (``str`` is shorthand for ``EmulatedModel(name=str)``).
        drafts: draft models, listed by ``/v1/model/draft/list`` and loadable via
            ``draft_model.draft_model_name``.
        embeddings: embedding models (``/v1/model/embedding/*``).
        auth: ``False`` disables auth: every request is admin.
        api_key / admin_key: the keys; ``None`` generates ``secrets.token_hex(16)``.
        extra_api_keys: further accepted api keys (TabbyAPI allows several).
        ping_interval: SSE ping period in seconds, timed from the response head;
            ``0`` disables pings.
        host / port: where to listen; port ``0`` picks a free port.
        record: keep :attr:`requests`; turn off for benchmarks.
        downloadable: ``{"org/repo": seconds}``: repos ``POST /v1/download`` can
            "fetch" and how long that takes. Any other repo fails like an offline
            server (400 ``[Errno -2] Name or service not known``).
        download_failure_delay: seconds before such a failure (the real, offline
            server takes about 23 s; the default 0 keeps tests fast).
        embeddings_available: ``False`` makes embedding loads fail like a server
            without the optional embedding packages (400, multi-line ImportError).
    """

    def __init__(
        self,
        models: Iterable[str | EmulatedModel] = (),
        *,
        drafts: Iterable[str | EmulatedModel] = (),
        embeddings: Iterable[str | EmulatedModel] = (),
        auth: bool = True,
        api_key: str | None = None,
        admin_key: str | None = None,
        extra_api_keys: Iterable[str] = (),
        ping_interval: float = 15.0,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        downloadable: Mapping[str, float] | None = None,
        download_failure_delay: float = 0.0,
        embeddings_available: bool = True,
    ) -> None:
        self._models: dict[str, EmulatedModel] = {}
        for spec in models:
            model = as_model(spec)
            self._models[model.name] = model
        self._drafts = {m.name: m for m in map(as_model, drafts)}
        self._embeddings = {m.name: m for m in map(as_model, embeddings)}
        self._auth = auth
        self._api_key = api_key if api_key is not None else secrets.token_hex(16)
        self._admin_key = admin_key if admin_key is not None else secrets.token_hex(16)
        self._api_keys = frozenset({self._api_key, *extra_api_keys, self._admin_key})
        self._ping_interval = ping_interval
        self._host = host
        self._port = port
        self._record = record
        self._downloadable = dict(downloadable or {})
        self._download_failure_delay = download_failure_delay
        self._embeddings_available = embeddings_available

        self._requests: list[RecordedRequest] = []
        self._faults = FaultInjector()
        self._health_issues: list[dict[str, str]] = []
        self._list_cache: dict[int, tuple[tuple[int, int], bytes]] = {}

        self._loaded: _Loaded | None = None
        self._loading = False
        self._loaded_embedding: str | None = None
        self._load_lock: asyncio.Lock | None = None

        self._runner: web.ServerRunner | None = None
        self._closing = False
        self._jobs: set[asyncio.Task[None]] = set()
        self._handler_tasks: set[asyncio.Task[Any]] = set()

        self._routes: dict[str, dict[str, Handler]] = {
            "/health": {"GET": self._health},
            "/v1/models": {"GET": self._list_models},
            "/v1/model/list": {"GET": self._list_models},
            "/v1/model": {"GET": self._get_model},
            "/props": {"GET": self._props},
            "/v1/model/draft/list": {"GET": self._list_drafts},
            "/v1/model/load": {"POST": self._load},
            "/v1/model/unload": {"POST": self._unload},
            "/v1/download": {"POST": self._download},
            "/v1/model/embedding/list": {"GET": self._list_embeddings},
            "/v1/model/embedding": {"GET": self._get_embedding},
            "/v1/model/embedding/load": {"POST": self._load_embedding},
            "/v1/model/embedding/unload": {"POST": self._unload_embedding},
            "/v1/auth/permission": {"GET": self._auth_permission},
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> TabbyEmulator:
        """Bind and start serving; returns ``self``. Calling it again does nothing."""
        if self._runner is not None:
            return self
        self._closing = False
        self._load_lock = asyncio.Lock()
        server = web.Server(self._dispatch, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])
        return self

    async def close(self) -> None:
        """Stop serving: cut open streams, cancel background loads/downloads. Idempotent.

        Open load streams end without a terminating chunk, as if the server died.
        """
        runner = self._runner
        if runner is None:
            return
        self._runner = None
        self._closing = True
        tasks: list[asyncio.Task[Any]] = [*self._handler_tasks, *self._jobs]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        self._loading = False

    async def __aenter__(self) -> TabbyEmulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ public state

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43127`` (no trailing slash)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def host(self) -> str:
        """The listening host."""
        return self._host

    @property
    def port(self) -> int:
        """The listening port (the real one once started with ``port=0``)."""
        return self._port

    @property
    def api_key(self) -> str:
        """The (first) api key."""
        return self._api_key

    @property
    def admin_key(self) -> str:
        """The admin key."""
        return self._admin_key

    @property
    def auth(self) -> bool:
        """Whether auth is enabled."""
        return self._auth

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (empty with ``record=False``)."""
        return self._requests

    @property
    def faults(self) -> FaultInjector:
        """The fault injector (see :class:`FaultInjector`)."""
        return self._faults

    @property
    def loaded(self) -> str | None:
        """Name of the loaded main model, ``None`` when none is (or while one loads)."""
        return self._loaded.name if self._loaded is not None else None

    @property
    def loaded_draft(self) -> str | None:
        """Name of the loaded draft model, if any."""
        return self._loaded.draft_name if self._loaded is not None else None

    @property
    def loaded_embedding(self) -> str | None:
        """Name of the loaded embedding model, or ``None``."""
        return self._loaded_embedding

    @property
    def is_loading(self) -> bool:
        """True while a model load holds the load lock (and the model routes answer 503)."""
        return self._loading

    @property
    def models(self) -> list[str]:
        """Names of the main models (including downloaded ones), in listing order."""
        return list(self._models)

    def count(self, method: str, path: str) -> int:
        """How many recorded requests had this method and path."""
        method = method.upper()
        return sum(1 for r in self._requests if r.method == method and r.path == path)

    def reset_requests(self) -> None:
        """Forget the recorded requests."""
        self._requests.clear()

    def add_model(self, model: str | EmulatedModel) -> None:
        """Add (or replace) a main model folder."""
        spec = as_model(model)
        self._models[spec.name] = spec

    def preload(self, name: str, **params: Any) -> None:
        """Mark ``name`` as loaded without a load stream (test setup shortcut).

        ``params`` are load-request fields (``max_seq_len``, ``cache_mode``, ...,
        ``draft_model={"draft_model_name": ...}``), validated like a request.
        """
        if self._loading:
            raise RuntimeError("a load is in progress")
        model = self._models[name]
        fields = validate(LOAD_SCHEMA, {"model_name": name, **params})
        draft = fields.get("draft_model") or {}
        draft_name = draft.get("draft_model_name")
        if draft_name is not None and draft_name not in self._drafts:
            raise KeyError(draft_name)
        self._loaded = self._make_loaded(model, fields, draft_name)

    def add_health_issue(self, description: str) -> None:
        """Make ``/health`` answer 503 unhealthy with this issue (until cleared)."""
        stamp = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        self._health_issues.append({"time": stamp, "description": description})

    def clear_health_issues(self) -> None:
        """Make ``/health`` healthy again."""
        self._health_issues.clear()

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request enters here: record, apply faults, route.

        The handler task is tracked so that :meth:`close` can cut open streams and
        pending downloads instead of waiting for them.
        """
        task = asyncio.current_task()
        if task is not None:
            self._handler_tasks.add(task)
        try:
            method = request.method
            path = request.path
            record: RecordedRequest | None = None
            if self._record:
                record = self._make_record(request)
                self._requests.append(record)
            body = await request.read() if request.body_exists else b""
            if record is not None and body:
                record.raw = _redact_body(path, body)

            faults = self._faults
            if faults:
                fault = faults.take(STAGE_DELAY, method, path)
                if fault is not None:
                    await asyncio.sleep(fault.seconds)
                fault = faults.take(STAGE_FAIL, method, path)
                if fault is not None:
                    return _answer_instead(request, fault)

            resp = await self._route(request, method, path, body)

            if (
                faults
                and isinstance(resp, web.Response)
                and not resp.prepared
                and resp.headers.get("Content-Type") == "application/json"
            ):
                fault = faults.take(STAGE_BODY, method, path)
                if fault is not None:
                    return await _apply_body_fault(request, resp, fault)
            return resp
        finally:
            if task is not None:
                self._handler_tasks.discard(task)

    async def _route(
        self, request: web.BaseRequest, method: str, path: str, body: bytes
    ) -> web.StreamResponse:
        """Starlette-style routing: exact path, else 307 without trailing slash, 404, 405."""
        entry = self._routes.get(path)
        if entry is None:
            if len(path) > 1 and path.endswith("/") and path.rstrip("/") in self._routes:
                location = f"{request.scheme}://{request.host}{path.rstrip('/')}"
                if request.query_string:
                    location += "?" + request.query_string
                return web.Response(status=307, headers={"Location": location, "Server": "uvicorn"})
            return _json(404, _BODY_NOT_FOUND)
        handler = entry.get(method)
        if handler is None:
            return _json(405, _BODY_NOT_ALLOWED, {"Allow": ", ".join(entry)})
        return await handler(request, body)

    def _make_record(self, request: web.BaseRequest) -> RecordedRequest:
        """Snapshot method, path and headers (secrets redacted); the body follows."""
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            low = key.lower()
            if low in ("x-api-key", "x-admin-key", "authorization"):
                value = "<redacted>"
            headers[low] = value
        return RecordedRequest(
            request.method, request.path, headers, b"", time.time(), request.query_string
        )

    # ------------------------------------------------------------------ auth

    def _check_api(self, request: web.BaseRequest) -> web.Response | None:
        """TabbyAPI's ``check_api_key``: x-api-key first, else ``Authorization: Bearer``."""
        if not self._auth:
            return None
        headers = request.headers
        key = headers.get("x-api-key")
        if key:
            return None if key in self._api_keys else _json(401, _detail(MSG_INVALID_API))
        authorization = headers.get("authorization")
        if authorization:
            parts = authorization.split(" ")
            if len(parts) < 2 or parts[0].lower() != "bearer" or parts[1] not in self._api_keys:
                return _json(401, _detail(MSG_INVALID_API))
            return None
        return _json(401, _detail(MSG_PROVIDE_API))

    def _check_admin(self, request: web.BaseRequest) -> web.Response | None:
        """TabbyAPI's ``check_admin_key``: x-admin-key first, else ``Authorization: Bearer``."""
        if not self._auth:
            return None
        headers = request.headers
        key = headers.get("x-admin-key")
        if key:
            return None if key == self._admin_key else _json(401, _detail(MSG_INVALID_ADMIN))
        authorization = headers.get("authorization")
        if authorization:
            parts = authorization.split(" ")
            if len(parts) < 2 or parts[0].lower() != "bearer" or parts[1] != self._admin_key:
                return _json(401, _detail(MSG_INVALID_ADMIN))
            return None
        return _json(401, _detail(MSG_PROVIDE_ADMIN))

    def _admin_body(
        self, request: web.BaseRequest, body: bytes, schema: Schema
    ) -> dict[str, Any] | web.Response:
        """An admin route's body, in the server's order of checks.

        Malformed JSON is a 422 before auth; then the admin key; then the
        schema's validation (422). Returns the fields, or the error response.
        """
        try:
            data = parse_json_body(body, request.headers.get("Content-Type"))
        except BodyError as exc:
            return _unprocessable(exc)
        denied = self._check_admin(request)
        if denied is not None:
            return denied
        try:
            return validate(schema, data)
        except BodyError as exc:
            return _unprocessable(exc)

    def _permission(self, request: web.BaseRequest) -> str:
        """TabbyAPI's ``get_key_permission``: x-admin-key, then x-api-key, then Authorization.

        Raises ``ValueError`` for a missing/invalid key and ``IndexError`` for a lone
        ``Bearer`` (the real server lets that escape as a 500).
        """
        if not self._auth:
            return "admin"
        headers = request.headers
        key = headers.get("x-admin-key")
        if key is None:
            key = headers.get("x-api-key")
        if key is None:
            key = headers.get("authorization")
        if key is None:
            raise ValueError(MSG_KEY_MISSING)
        if key.lower().startswith("bearer"):
            key = key.split(" ")[1]
        if key == self._admin_key:
            return "admin"
        if key in self._api_keys:
            return "api"
        raise ValueError(MSG_KEY_INVALID)

    def _is_admin(self, request: web.BaseRequest) -> bool | None:
        """Permission for listings; ``None`` when it raises (the real server's 500)."""
        try:
            return self._permission(request) == "admin"
        except (ValueError, IndexError):
            return None

    # ------------------------------------------------------------------ simple routes

    async def _health(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        if not self._health_issues:
            return _json(200, _BODY_HEALTHY)
        return _json(503, _encode({"status": "unhealthy", "issues": self._health_issues}))

    async def _list_models(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        return self._listing(request, self._models, lambda: self.loaded)

    async def _list_drafts(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        return self._listing(request, self._drafts, lambda: self.loaded_draft)

    async def _list_embeddings(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        return self._listing(request, self._embeddings, lambda: self._loaded_embedding)

    def _listing(
        self,
        request: web.BaseRequest,
        folder: Mapping[str, EmulatedModel],
        current: Callable[[], str | None],
    ) -> web.StreamResponse:
        # Like TabbyAPI: the admin key sees every folder, an api key only what is loaded.
        denied = self._check_api(request)
        if denied is not None:
            return denied
        admin = self._is_admin(request)
        if admin is None:
            return _internal_error()
        if admin:
            # Cached per second: ``created`` has one-second resolution and folders
            # only ever grow, so (second, size) identifies the bytes.
            now = int(time.time())
            key = (now, len(folder))
            cached = self._list_cache.get(id(folder))
            if cached is None or cached[0] != key:
                cached = (key, _model_list(_top_level(folder), now))
                self._list_cache[id(folder)] = cached
            return _json(200, cached[1])
        name = current()
        return _json(
            200, _model_list([card_id(name)] if name is not None else [], int(time.time()))
        )

    async def _get_model(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        denied = self._check_api(request)
        if denied is not None:
            return denied
        loaded = self._loaded
        if loaded is None or self._loading:
            return _json(503, _detail(MSG_NO_MODEL))
        return _json(200, _encode(loaded.card()))

    async def _props(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        denied = self._check_api(request)
        if denied is not None:
            return denied
        loaded = self._loaded
        if loaded is None or self._loading:
            return _json(503, _detail(MSG_NO_MODEL))
        return _json(
            200,
            _encode(
                {
                    "total_slots": loaded.max_batch_size,
                    "chat_template": loaded.chat_template,
                    "default_generation_settings": {"n_ctx": loaded.max_seq_len},
                }
            ),
        )

    async def _unload(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        denied = self._check_admin(request)
        if denied is not None:
            return denied
        if self._loaded is None or self._loading:
            return _json(503, _detail(MSG_NO_MODEL))
        self._loaded = None
        return _json(200, _BODY_NULL)

    async def _auth_permission(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        denied = self._check_api(request)
        if denied is not None:
            return denied
        try:
            permission = self._permission(request)
        except ValueError as exc:
            return _json(400, _detail(str(exc)))
        except IndexError:
            return _internal_error()
        return _json(200, _encode({"permission": permission}))

    # ------------------------------------------------------------------ embeddings

    async def _get_embedding(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        denied = self._check_api(request)
        if denied is not None:
            return denied
        name = self._loaded_embedding
        if name is None:
            return _json(503, _detail(MSG_NO_EMBEDDING))
        return _json(200, _encode(_card(card_id(name), int(time.time()))))

    async def _load_embedding(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        fields = self._admin_body(request, body, EMBEDDING_LOAD_SCHEMA)
        if isinstance(fields, web.Response):
            return fields
        name: str = fields["embedding_model_name"]
        if not name:
            return _json(400, _detail(MSG_NO_NAME))
        model = self._embeddings.get(name)
        if model is None:
            return _json(400, _detail(MSG_NO_EMBEDDING_PATH))
        if not self._embeddings_available:
            return _json(400, _detail(MSG_NO_EMBEDDING_PACKAGES))
        loaded = self._loaded_embedding
        if loaded is not None and card_id(loaded) == card_id(name):
            # Unlike the main model's no-op, this is an error on the server.
            message = f'Embeddings model "{card_id(loaded)}" is already loaded! Aborting.'
            return _json(400, _detail(message))
        # The previous embedding model goes first; a client that disconnects during
        # the load cancels it (this handler is cancelled), leaving none loaded.
        self._loaded_embedding = None
        total = model.delay * model.modules
        if total > 0:
            await asyncio.sleep(total)
        self._loaded_embedding = name
        return _json(200, _BODY_EMBEDDING_DONE)

    async def _unload_embedding(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        denied = self._check_admin(request)
        if denied is not None:
            return denied
        if self._loaded_embedding is None:
            return _json(503, _detail(MSG_NO_EMBEDDING))
        self._loaded_embedding = None
        return _json(200, _BODY_NULL)

    # ------------------------------------------------------------------ download

    async def _download(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        fields = self._admin_body(request, body, DOWNLOAD_SCHEMA)
        if isinstance(fields, web.Response):
            return fields
        repo_id: str = fields["repo_id"]
        delay = self._downloadable.get(repo_id)
        if delay is None:
            if self._download_failure_delay > 0:
                await asyncio.sleep(self._download_failure_delay)
            return _json(400, _detail(MSG_OFFLINE))
        folder: str | None = fields["folder_name"] or None
        if folder is None:
            parts = repo_id.split("/")
            if len(parts) < 2:
                return _json(400, _detail("list index out of range"))
            folder = parts[1]
        is_lora = fields["repo_type"] == "lora"
        target = f"{'loras' if is_lora else 'models'}/{folder}"
        if not is_lora and folder in self._models:
            return _json(400, _detail(f"[Errno 17] File exists: '{target}'"))
        # A client disconnect cancels this handler mid-sleep: nothing gets added.
        if delay > 0:
            await asyncio.sleep(delay)
        if not is_lora:
            self._models[folder] = EmulatedModel(name=folder)
        return _json(200, _encode({"download_path": target}))

    # ------------------------------------------------------------------ model load

    async def _load(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        fields = self._admin_body(request, body, LOAD_SCHEMA)
        if isinstance(fields, web.Response):
            return fields
        name: str = fields["model_name"]
        if not name:
            return _json(400, _detail(MSG_NO_NAME))
        model = self._models.get(name)
        if model is None:
            return _json(400, _detail(MSG_NO_PATH))

        resp = web.StreamResponse(status=200, headers=_SSE_HEADERS)
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        job = loop.create_task(self._load_job(model, fields, queue.put_nowait))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        job.add_done_callback(lambda _task: queue.put_nowait(None))

        ping_handle: asyncio.TimerHandle | None = None
        interval = self._ping_interval
        if interval > 0:
            start = loop.time()
            ticks = 0

            def tick() -> None:
                nonlocal ticks, ping_handle
                ticks += 1
                queue.put_nowait(_PING)
                ping_handle = loop.call_at(start + (ticks + 1) * interval, tick)

            ping_handle = loop.call_at(start + interval, tick)

        drop: Fault | None = None
        trailing: Fault | None = None
        preamble = b""
        faults = self._faults
        if faults:
            drop = faults.take(STAGE_STREAM, "POST", request.path)
            trailing = faults.take(STAGE_TRAILING, "POST", request.path)
            preamble = _preamble(faults, request.path)
        sent = 0
        last = b""
        try:
            if preamble:
                await resp.write(preamble)
            if drop is not None and drop.after_events == 0:
                await _cut(request, resp, job, drop)
                return resp
            while True:
                item = await queue.get()
                if item is None:
                    break
                if not item:  # _PING
                    await resp.write(_ping_frame())
                    continue
                await resp.write(item)
                last = item
                sent += 1
                if drop is not None and sent >= drop.after_events:
                    await _cut(request, resp, job, drop)
                    return resp
            if trailing is not None and last:
                await _send_trailing(resp, last, trailing)
            await resp.write_eof()
        except ConnectionError:
            pass  # The client went away; the load carries on in the background.
        finally:
            if ping_handle is not None:
                ping_handle.cancel()
        return resp

    async def _load_job(
        self,
        model: EmulatedModel,
        fields: dict[str, Any],
        emit: Callable[[bytes], None],
    ) -> None:
        """Run one load under the global lock, reporting frames through ``emit``.

        Runs as its own task so that a client disconnect does not stop it.
        """
        lock = self._load_lock
        assert lock is not None
        async with lock:
            current = self._loaded
            # The server compares folder names only: a nested model whose last
            # segment matches the loaded one's counts as already loaded.
            if current is not None and card_id(current.name) == card_id(model.name):
                # Already loaded: nothing happens, new parameters are ignored.
                emit(_progress_frame("model", 1, 1, "processing"))
                emit(_progress_frame("model", 1, 1, "finished"))
                return
            self._loading = True
            self._loaded = None  # The old model is unloaded first.
            try:
                await self._run_load(model, fields, emit)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # pragma: no cover - defensive, reported like the server
                emit(_error_frame(str(exc)))
            finally:
                self._loading = False

    async def _run_load(
        self,
        model: EmulatedModel,
        fields: dict[str, Any],
        emit: Callable[[bytes], None],
    ) -> None:
        if model.config_error is not None:
            emit(_error_frame(model.config_error))
            return
        backend = fields["backend"]
        if backend is not None and backend not in BACKENDS:
            emit(_error_frame(f"Invalid backend '{backend}'. Available backends: {list(BACKENDS)}"))
            return
        await asyncio.sleep(0)

        if fields["vision"] and model.vision_modules > 0:
            n = model.vision_modules
            for module in range(1, n + 1):
                await _module_pause(model.delay)
                emit(_progress_frame("vision", module, n, "processing"))
            emit(_progress_frame("vision", n, n, "finished"))

        draft_fields = fields["draft_model"] or {}
        draft_name: str | None = draft_fields.get("draft_model_name") or None
        if draft_name is not None:
            draft = self._drafts.get(draft_name)
            if draft is None:
                emit(_error_frame(MSG_MISSING_DRAFT))
                return
            if not await _load_component("draft", draft, emit):
                return

        if not await _load_component("model", model, emit):
            return
        self._loaded = self._make_loaded(model, fields, draft_name)

    def _make_loaded(
        self, model: EmulatedModel, fields: dict[str, Any], draft_name: str | None
    ) -> _Loaded:
        # Only what the card reports is kept: the rope values, the draft's
        # settings and the split/backend fields are taken and never shown.
        max_seq_len = fields["max_seq_len"] or model.max_seq_len
        template = _template_name(fields["prompt_template"] or model.prompt_template)
        return _Loaded(
            name=model.name,
            max_seq_len=max_seq_len,
            cache_size=fields["cache_size"] or max_seq_len,
            cache_mode=fields["cache_mode"] or "FP16",
            max_batch_size=fields["max_batch_size"] or model.max_batch_size,
            chunk_size=fields["chunk_size"] or 2048,
            prompt_template=template,
            prompt_template_content=model.chat_template if template else None,
            use_vision=bool(fields["vision"]) and model.vision_modules > 0,
            chat_template=model.chat_template,
            draft_name=draft_name,
        )


# ----------------------------------------------------------------------------- helpers


async def _module_pause(delay: float) -> None:
    # Always yield, so that even instant loads interleave with other requests.
    await asyncio.sleep(delay)


async def _load_component(
    model_type: str, model: EmulatedModel, emit: Callable[[bytes], None]
) -> bool:
    """Emit ``processing 1..N`` and ``finished N/N`` (or fail at ``fail_at``)."""
    n = model.modules
    fail_at = model.fail_at
    if fail_at is not None and fail_at <= 0:
        emit(_error_frame(model.fail_message))
        return False
    for module in range(1, n + 1):
        await _module_pause(model.delay)
        emit(_progress_frame(model_type, module, n, "processing"))
        if fail_at is not None and module >= fail_at:
            emit(_error_frame(model.fail_message))
            return False
    emit(_progress_frame(model_type, n, n, "finished"))
    return True


def _preamble(faults: FaultInjector, path: str) -> bytes:
    """What the ``bom`` and ``sse_retry`` faults put before a load stream's first frame."""
    out = b""
    if faults.take(STAGE_BOM, "POST", path) is not None:
        out += _BOM
    retry = faults.take(STAGE_RETRY, "POST", path)
    if retry is not None:
        out += b"retry: " + retry.detail.encode() + _FRAME_END
    return out


async def _send_trailing(resp: web.StreamResponse, frame: bytes, fault: Fault) -> None:
    """``frames_after_finished``: more copies of the last frame instead of the end."""
    sent = 0
    while fault.count is None or sent < fault.count:
        await asyncio.sleep(fault.seconds)
        await resp.write(frame)
        sent += 1


def _answer_instead(request: web.BaseRequest, fault: Fault) -> web.StreamResponse:
    """The answer of a ``fail_next``, ``proxy_error``, ``not_http`` or ``empty_stream``."""
    if fault.kind == "proxy_error":
        return web.Response(status=fault.status, body=_proxy_page(fault.status), headers=_HTML)
    if fault.kind == "empty_stream":
        return web.Response(status=fault.status, headers=_SSE_HEADERS)
    if fault.kind == "not_http":
        # Raw bytes with no status line, then the connection goes: aiohttp's
        # own answer below never reaches the client.
        transport = request.transport
        if transport is not None:
            transport.write(fault.body or b"")
            transport.close()
        return web.Response(status=500)
    body = fault.body if fault.body is not None else _detail(fault.detail)
    return _json(fault.status, body, fault.headers)


def _proxy_page(status: int) -> bytes:
    """The error page nginx sends for ``status`` (e.g. when the upstream is down)."""
    phrase = _NGINX_PHRASES.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
    title = f"{status} {phrase}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


async def _cut(
    request: web.BaseRequest, resp: web.StreamResponse, job: asyncio.Task[None], fault: Fault
) -> None:
    """``drop_stream``: close the connection without a terminating chunk (the server
    "died"), or with ``clean_end`` end the body in good order."""
    if fault.stop_load:
        job.cancel()
    if fault.clean_end:
        await resp.write_eof()
        return
    transport = request.transport
    if transport is not None:
        transport.close()


def _unprocessable(exc: BodyError) -> web.Response:
    return _json(422, _encode({"detail": exc.errors}))


def _internal_error() -> web.Response:
    return web.Response(
        status=500,
        body=b"Internal Server Error",
        headers={"Content-Type": "text/plain; charset=utf-8", "Server": "uvicorn"},
    )


def _redact_body(path: str, body: bytes) -> bytes:
    if path != "/v1/download" or b"token" not in body:
        return body
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    if isinstance(data, dict) and "token" in data:
        data["token"] = "<redacted>"
        return _encode(data)
    return body


async def _apply_body_fault(
    request: web.BaseRequest, resp: web.Response, fault: Fault
) -> web.StreamResponse:
    raw = resp.body
    body = bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else b""
    headers = dict(resp.headers)
    if fault.kind == "malformed_json":
        cut = body[: max(1, len(body) // 2)]
        if len(cut) >= len(body):
            cut = b"{"
        return _json(200, cut)
    stream = web.StreamResponse(status=resp.status, headers=headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    if fault.kind == "slow_body":
        size = fault.chunk_size
        for offset in range(0, len(body), size):
            await asyncio.sleep(fault.seconds)
            await stream.write(body[offset : offset + size])
        await stream.write_eof()
        return stream
    # reset_mid_body: half the body, then the connection goes away.
    half = body[: len(body) // 2]
    if half:
        await stream.write(half)
    transport = request.transport
    if transport is not None:
        transport.close()
    return stream


# ----------------------------------------------------------------------------- serving


async def serve_forever(emulator: TabbyEmulator) -> None:
    """Start ``emulator`` (if needed) and serve until cancelled, then close it."""
    await emulator.start()
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.close()


async def run_emulator(
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    models: Iterable[str | EmulatedModel] = (),
    drafts: Iterable[str | EmulatedModel] = (),
    embeddings: Iterable[str | EmulatedModel] = (),
    auth: bool = True,
    api_key: str | None = None,
    admin_key: str | None = None,
    ping_interval: float = 15.0,
    ready: Callable[[TabbyEmulator], None] | None = None,
) -> None:
    """Serve an emulator until cancelled (for the ``tabby-async emulator`` command).

    ``ready`` is called once the socket is bound, e.g. to print the URL and keys.
    Recording is off: a long-running server should not grow without bound.
    """
    emulator = TabbyEmulator(
        models,
        drafts=drafts,
        embeddings=embeddings,
        auth=auth,
        api_key=api_key,
        admin_key=admin_key,
        ping_interval=ping_interval,
        host=host,
        port=port,
        record=False,
    )
    await emulator.start()
    try:
        if ready is not None:
            ready(emulator)
        await asyncio.Event().wait()
    finally:
        await emulator.close()
