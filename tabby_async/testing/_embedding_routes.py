"""The embedding model's routes: listing, card, load and unload.

An embedding load is one plain JSON request, not a stream, and is not behind
the model load lock. Loading the embedding model that is already loaded (the same
folder, by resolved path) is a 400 on the server, unlike the main model's
no-op; another folder replaces it, the old one unloaded first; and a client that
disconnects cancels the load (this handler is cancelled), leaving none loaded.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ._guards import Guards
from ._model_routes import listing
from ._schemas import EMBEDDING_LOAD_SCHEMA
from ._state import card_id, resolve_name
from ._wire import (
    BODY_EMBEDDING_DONE,
    BODY_NULL,
    MSG_NO_EMBEDDING,
    MSG_NO_EMBEDDING_PACKAGES,
    MSG_NO_EMBEDDING_PATH,
    MSG_NO_NAME,
    detail,
    encode,
    json_response,
    model_card,
)

__all__ = ["EmbeddingRoutes"]


class EmbeddingRoutes:
    """Handlers of the embedding model's routes (one emulator's)."""

    __slots__ = ("_available", "_guards", "_state")

    def __init__(self, guards: Guards, available: bool) -> None:
        self._guards = guards
        self._state = guards.state
        #: False: loads fail like a server without the optional embedding packages.
        self._available = available

    async def list(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/v1/model/embedding/list``."""
        state = self._state
        return listing(self._guards, request, state.embeddings, state.loaded_embedding)

    async def get(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/v1/model/embedding``: the loaded embedding model's card."""
        denied = self._guards.api(request)
        if denied is not None:
            return denied
        name = self._state.loaded_embedding
        if name is None:
            return json_response(503, detail(MSG_NO_EMBEDDING))
        return json_response(200, encode(model_card(card_id(name), int(time.time()))))

    async def load(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/model/embedding/load``."""
        fields = self._guards.body(request, body, EMBEDDING_LOAD_SCHEMA)
        if isinstance(fields, web.Response):
            return fields
        state = self._state
        name: str = fields["embedding_model_name"]
        if not name:
            return json_response(400, detail(MSG_NO_NAME))
        folder = resolve_name(name, state.embeddings)
        if folder is None:
            return json_response(400, detail(MSG_NO_EMBEDDING_PATH))
        model = state.embeddings[folder]
        if not self._available:
            return json_response(400, detail(MSG_NO_EMBEDDING_PACKAGES))
        loaded = state.loaded_embedding
        # Same resolved folder only: another with the same last segment replaces it.
        if loaded is not None and loaded == folder:
            message = f'Embeddings model "{card_id(loaded)}" is already loaded! Aborting.'
            return json_response(400, detail(message))
        state.loaded_embedding = None  # the previous embedding model goes first
        total = model.delay * model.modules
        if total > 0:
            await asyncio.sleep(total)
        state.loaded_embedding = folder
        return json_response(200, BODY_EMBEDDING_DONE)

    async def unload(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/model/embedding/unload``."""
        denied = self._guards.admin(request)
        if denied is not None:
            return denied
        if self._state.loaded_embedding is None:
            return json_response(503, detail(MSG_NO_EMBEDDING))
        self._state.loaded_embedding = None
        return json_response(200, BODY_NULL)
