"""The LoRA routes, as on a server whose backend applies no LoRA adapters.

The server's only backend today cannot apply adapters: a load answers 200
with every requested name under ``failure`` (in request order, duplicates and
unknown names too; names are never checked), ``success`` empty; no adapter is
ever active; an unload does nothing. Only the admin listing reads the LoRA
folder: a server without one answers it with its plain-text 500, and a load
with a 400 (after the empty-list check).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiohttp import web

from ._guards import Guards
from ._schemas import LORA_LOAD_SCHEMA
from ._wire import (
    BODY_NULL,
    MSG_NO_LORA_DIR,
    MSG_NO_LORAS,
    detail,
    encode,
    internal_error,
    json_response,
)

__all__ = ["LoraRoutes"]

_NONE_ACTIVE = b'{"object":"list","data":[]}'


def _lora_list(names: Iterable[str], now: int) -> bytes:
    """``{"object":"list","data":[LoRA card, ...]}`` for these folder names."""
    cards = [
        {"id": n, "object": "lora", "created": now, "owned_by": "tabbyAPI", "scaling": None}
        for n in names
    ]
    return encode({"object": "list", "data": cards})


class LoraRoutes:
    """Handlers of the LoRA routes (the LoRA folder lives in the model state)."""

    __slots__ = ("_guards", "_state")

    def __init__(self, guards: Guards) -> None:
        self._guards = guards
        self._state = guards.state

    async def list(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/v1/lora/list`` and ``/v1/loras``: every folder for an admin, else the
        active adapters (always none)."""
        view = self._guards.view(request)
        if isinstance(view, web.Response):
            return view
        if view == "api":
            return json_response(200, _NONE_ACTIVE)
        folders = self._state.loras
        if folders is None:
            return internal_error()  # the server lists a folder that is not there
        return json_response(200, _lora_list(folders, int(time.time())))

    async def active(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/v1/lora``: the active adapters (always none); needs a model."""
        refused = self._guards.api(request, needs_model=True)
        return refused if refused is not None else json_response(200, _NONE_ACTIVE)

    async def load(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/lora/load``: 200 with every adapter under ``failure``."""
        fields = self._guards.body(request, body, LORA_LOAD_SCHEMA, needs_model=True)
        if isinstance(fields, web.Response):
            return fields
        loras: list[dict[str, object]] = fields["loras"]
        if not loras:
            return json_response(400, detail(MSG_NO_LORAS))
        if self._state.loras is None:
            return json_response(400, detail(MSG_NO_LORA_DIR))
        failure = [lora["name"] for lora in loras]
        return json_response(200, encode({"success": [], "failure": failure}))

    async def unload(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/lora/unload``: nothing to unload; needs a model."""
        refused = self._guards.admin(request, needs_model=True)
        return refused if refused is not None else json_response(200, BODY_NULL)
