"""The main model's routes: listings, the loaded card, ``/props``, load and unload.

Listings follow the server's permission lookup: a key with admin permission
sees every top-level folder, an api key only what is loaded, and a lookup that
crashes on the server (a wrong ``x-admin-key`` beside a valid ``x-api-key``)
is its plain-text 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ._faults import FaultInjector
from ._guards import Guards
from ._load import LoadJobs
from ._load_stream import stream_load
from ._models import EmulatedModel
from ._schemas import LOAD_SCHEMA
from ._state import LoadedModel, resolve_name
from ._wire import (
    BODY_NULL,
    MSG_NO_NAME,
    MSG_NO_PATH,
    detail,
    encode,
    json_response,
)

__all__ = ["ModelRoutes", "listing"]


def listing(
    guards: Guards,
    request: web.BaseRequest,
    folder: Mapping[str, EmulatedModel],
    current: str | None,
) -> web.Response:
    """A model-folder listing (models, drafts, embedding models) for the request's key."""
    view = guards.view(request)
    if isinstance(view, web.Response):
        return view
    return json_response(200, guards.state.listing(folder, view == "admin", current))


class ModelRoutes:
    """Handlers of the main model's routes (one emulator's)."""

    __slots__ = ("_faults", "_guards", "_jobs", "_ping_interval", "_state")

    def __init__(
        self, guards: Guards, jobs: LoadJobs, faults: FaultInjector, ping_interval: float
    ) -> None:
        self._guards = guards
        self._state = guards.state
        self._jobs = jobs
        self._faults = faults
        self._ping_interval = ping_interval

    async def list(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/v1/model/list`` and ``/v1/models``."""
        state = self._state
        current = state.loaded.name if state.loaded is not None else None
        return listing(self._guards, request, state.models, current)

    async def list_drafts(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/v1/model/draft/list``: the api view shows the loaded model's draft."""
        state = self._state
        current = state.loaded.draft_name if state.loaded is not None else None
        return listing(self._guards, request, state.drafts, current)

    async def get(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/v1/model``: the loaded model's card."""
        return self._describe(request, LoadedModel.card)

    async def props(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/props``: slots, chat template and context length."""
        return self._describe(request, LoadedModel.props)

    def _describe(
        self, request: web.BaseRequest, render: Callable[[LoadedModel], dict[str, Any]]
    ) -> web.Response:
        """An api route that needs a model and shows ``render(loaded model)``."""
        refused = self._guards.api(request, needs_model=True)
        if refused is not None:
            return refused
        loaded = self._state.loaded
        assert loaded is not None
        return json_response(200, encode(render(loaded)))

    async def unload(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/model/unload``."""
        refused = self._guards.admin(request, needs_model=True)
        if refused is not None:
            return refused
        # The server's explicit unload does not wait: it cancels running generations.
        self._state.generations.cancel_all()
        self._state.loaded = None
        self._state.changed()
        return json_response(200, BODY_NULL)

    async def load(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/model/load``: 400/401/422 before the stream, then the SSE stream."""
        fields = self._guards.body(request, body, LOAD_SCHEMA)
        if isinstance(fields, web.Response):
            return fields
        name: str = fields["model_name"]
        if not name:
            return json_response(400, detail(MSG_NO_NAME))
        folder = resolve_name(name, self._state.models)
        model = None if folder is None else self._state.models[folder]
        if model is None:
            return json_response(400, detail(MSG_NO_PATH))
        return await stream_load(
            request,
            self._jobs,
            model,
            fields,
            ping_interval=self._ping_interval,
            faults=self._faults,
        )
