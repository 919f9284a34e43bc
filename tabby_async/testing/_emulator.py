"""The emulator's server: lifecycle, recording, fault stages, and the route table.

The emulator is a bare ``aiohttp.web.Server`` (no Application, router or
middlewares: one dispatch function and a dict of routes) so that a benchmark can
run hundreds of them per process and push tens of thousands of requests through
each. Each route's handler lives with its area (models, embeddings, downloads,
LoRA, templates, sampling, tokens, the server's own routes), which the route
table wires in; this module builds the areas and dispatches to them.

Only ``aiohttp`` and ``msgspec`` are used, and nothing from the SDK is imported.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from ._auth import Keys
from ._download_routes import DownloadRoute
from ._embedding_routes import EmbeddingRoutes
from ._fault_replies import answer_instead, break_body
from ._faults import STAGE_BODY, STAGE_DELAY, STAGE_FAIL, FaultInjector
from ._fixtures import DEFAULT_LORAS, DEFAULT_PRESETS, DEFAULT_TEMPLATES
from ._generation import Generations
from ._guards import Guards
from ._inference_routes import InferenceRoutes
from ._load import LoadJobs
from ._lora_routes import LoraRoutes
from ._model_routes import ModelRoutes
from ._models import EmulatedModel, RecordedRequest, as_model, redact_body
from ._route_table import Areas, Handler, route_table
from ._sampling_routes import SamplingRoutes
from ._schemas import LOAD_SCHEMA
from ._server_routes import ServerRoutes
from ._state import ModelState
from ._template_routes import TemplateRoutes
from ._token_routes import TokenRoutes
from ._validation import validate
from ._wire import BODY_NOT_ALLOWED, BODY_NOT_FOUND, any_size_request, json_response, redirect

__all__ = ["TabbyEmulator"]


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
    its own folder (``4.0bpw``). Listings show the top-level folders only.
    Loads compare resolved folder paths, as the server does: loading the
    loaded folder again (however it is spelt) is a no-op, and another folder
    with the same last segment is swapped in.

    The prompt template belongs to the loaded model: a load puts the requested
    ``prompt_template`` in use when the template folder has it (else the
    model's own, :attr:`EmulatedModel.prompt_template`), a no-op reload keeps
    the one in use, a switch or an unload changes it, and unloading the model
    drops it. The sampler overrides belong to the server: they need no model
    and outlive loads. Token ids come from a toy tokenizer (UTF-8 bytes + 3,
    BOS 1): only their shapes are the server's.

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
        templates: the template folder, ``{name: text}`` (a name without
            ``.jinja``); ``{}`` is a server without one. By default two small
            templates, ``chatml`` and ``alpaca``.
        presets: the sampler override presets, ``{name: overrides}``; ``{}`` is
            a server without a preset folder. By default ``fast`` and ``precise``.
        loras: the LoRA folder's adapters; ``None`` is a server without a LoRA
            folder. By default ``lora-a`` and ``lora-b``.
        override_preset: a preset put in force at start (a missing one is
            ignored, as the server only logs it).
        reply_tokens: how many tokens a model generates before its EOS, unless
            ``max_tokens`` stops it first (:attr:`EmulatedModel.reply_tokens`
            overrides it per model).
        token_delay: seconds before each generated token
            (:attr:`EmulatedModel.token_delay` overrides it per model).
        inline_model_loading: the server's ``inline_model_loading``: a
            completion request's ``model`` loads that folder (admin key only).
            Off by default, as on the server: the loaded model answers.
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
        templates: Mapping[str, str] = DEFAULT_TEMPLATES,
        presets: Mapping[str, Mapping[str, Any]] = DEFAULT_PRESETS,
        loras: Iterable[str] | None = DEFAULT_LORAS,
        override_preset: str | None = None,
        reply_tokens: int = 16,
        token_delay: float = 0.0,
        inline_model_loading: bool = False,
    ) -> None:
        if reply_tokens < 0 or token_delay < 0:
            raise ValueError("reply_tokens and token_delay must be >= 0")
        api_key = api_key if api_key is not None else secrets.token_hex(16)
        admin_key = admin_key if admin_key is not None else secrets.token_hex(16)
        self._keys = Keys(auth, admin_key, frozenset({api_key, *extra_api_keys, admin_key}))
        self._api_key = api_key
        self._host = host
        self._port = port
        self._record = record
        self._requests: list[RecordedRequest] = []
        self._faults = FaultInjector()

        self._state = state = ModelState(
            map(as_model, models),
            map(as_model, drafts),
            map(as_model, embeddings),
            templates,
            loras,
        )
        self._jobs = LoadJobs(state)
        guards = Guards(self._keys, state)
        sampling = SamplingRoutes(guards, presets, override_preset)
        self._areas = areas = Areas(
            server=ServerRoutes(guards),
            model=ModelRoutes(guards, self._jobs, self._faults, ping_interval),
            embedding=EmbeddingRoutes(guards, embeddings_available),
            download=DownloadRoute(guards, downloadable or {}, download_failure_delay),
            lora=LoraRoutes(guards),
            template=TemplateRoutes(guards),
            sampling=sampling,
            tokens=TokenRoutes(guards),
            inference=InferenceRoutes(
                guards,
                self._jobs,
                sampling,
                state.generations,
                ping_interval=ping_interval,
                token_delay=token_delay,
                reply_tokens=reply_tokens,
                inline_model_loading=inline_model_loading,
            ),
        )
        self._routes: dict[str, dict[str, Handler]] = route_table(areas)

        self._runner: web.ServerRunner | None = None
        self._handler_tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> TabbyEmulator:
        """Bind and start serving; returns ``self``. Calling it again does nothing."""
        if self._runner is not None:
            return self
        self._jobs.reset()
        self._state.changed()  # waiters of an earlier run (or loop) are let go
        server = web.Server(
            self._dispatch,
            request_factory=any_size_request,
            handler_cancellation=True,
            access_log=None,
        )
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
        tasks: list[asyncio.Task[Any]] = [*self._handler_tasks, *self._jobs.tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        self._state.loading = False
        self._state.changed()

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
        return self._keys.admin_key

    @property
    def auth(self) -> bool:
        """Whether auth is enabled."""
        return self._keys.enabled

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
        loaded = self._state.loaded
        return loaded.name if loaded is not None else None

    @property
    def loaded_draft(self) -> str | None:
        """Name of the loaded draft model, if any."""
        loaded = self._state.loaded
        return loaded.draft_name if loaded is not None else None

    @property
    def loaded_embedding(self) -> str | None:
        """Name of the loaded embedding model, or ``None``."""
        return self._state.loaded_embedding

    @property
    def is_loading(self) -> bool:
        """True while a model load holds the load lock (and the model routes answer 503)."""
        return self._state.loading

    @property
    def template(self) -> str | None:
        """The loaded model's prompt template, as its card names it (``None``: none)."""
        loaded = self._state.loaded
        return loaded.prompt_template if loaded is not None else None

    @property
    def sampler_overrides(self) -> tuple[str | None, dict[str, Any]]:
        """``(selected_preset, overrides)`` as ``/v1/sampling/override/list`` shows them."""
        return self._areas.sampling.selected_preset, self._areas.sampling.overrides

    @property
    def models(self) -> list[str]:
        """Names of the main models (including downloaded ones), in listing order."""
        return list(self._state.models)

    @property
    def generations(self) -> Generations:
        """The books of the inference requests' generations (see :class:`Generations`).

        ``generations.stats("m")`` counts model ``m``'s started, finished and
        cancelled generations, ``generations.running`` lists those in flight,
        and ``await generations.wait_for(predicate)`` waits for a change.
        """
        return self._state.generations

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
        self._state.models[spec.name] = spec

    def preload(self, name: str, **params: Any) -> None:
        """Mark ``name`` as loaded without a load stream (test setup shortcut).

        ``params`` are load-request fields (``max_seq_len``, ``cache_mode``, ...,
        ``draft_model={"draft_model_name": ...}``), validated like a request;
        the folder's own config (:attr:`EmulatedModel.folder_config`) wins over
        them, as on a real load.
        """
        self._state.preload(name, validate(LOAD_SCHEMA, {"model_name": name, **params}))

    def add_health_issue(self, description: str) -> None:
        """Make ``/health`` answer 503 unhealthy with this issue (until cleared)."""
        self._areas.server.add_health_issue(description)

    def clear_health_issues(self) -> None:
        """Make ``/health`` healthy again."""
        self._areas.server.health_issues.clear()

    async def wait_loaded(self, name: str, timeout: float | None = 30.0) -> None:
        """Return once ``name`` is the loaded main model and no load is running.

        Woken by the load job (no polling). Raises ``TimeoutError`` after
        ``timeout`` seconds (``None``: wait as long as it takes).
        """
        state = self._state

        def done() -> bool:
            return state.loaded is not None and state.loaded.name == name and not state.loading

        await asyncio.wait_for(state.wait_for(done), timeout)

    async def wait_idle(self, timeout: float | None = 30.0) -> None:
        """Return once no model load is queued or running (at once if none is).

        Useful after a client dropped its load stream: the load goes on in the
        background. Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        await asyncio.wait_for(self._jobs.wait_idle(), timeout)

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
                record = RecordedRequest.of(
                    method, path, request.headers, time.time(), request.query_string
                )
                self._requests.append(record)
            body = await request.read() if request.body_exists else b""
            if record is not None and body:
                record.raw = redact_body(path, body)

            faults = self._faults
            if faults:
                fault = faults.take(STAGE_DELAY, method, path)
                if fault is not None:
                    await asyncio.sleep(fault.seconds)
                fault = faults.take(STAGE_FAIL, method, path)
                if fault is not None:
                    return answer_instead(request, fault)

            resp = await self._route(request, method, path, body)

            if (
                faults
                and isinstance(resp, web.Response)
                and not resp.prepared
                and resp.headers.get("Content-Type") == "application/json"
            ):
                fault = faults.take(STAGE_BODY, method, path)
                if fault is not None:
                    return await break_body(request, resp, fault)
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
                return redirect(request, path.rstrip("/"))
            return json_response(404, BODY_NOT_FOUND)
        handler = entry.get(method)
        if handler is None:
            return json_response(405, BODY_NOT_ALLOWED, {"Allow": ", ".join(entry)})
        return await handler(request, body)
