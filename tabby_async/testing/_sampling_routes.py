"""The sampler override routes, and the overrides they switch.

The overrides are the server's, not the model's: no model is needed and they
stay across model loads. A switch to a ``preset`` reads the preset file
``<preset>.yml`` (so ``"x.yml"`` looks for ``x.yml.yml``) and wins over
``overrides``; ``overrides`` replaces the dict. Either way the stored dict
loses its ``null`` values at any depth and is otherwise kept as sent, without
checks. ``selected_preset`` changes only when a preset is loaded: a switch to a
dict or an unload (which empties the dict) leaves it as it was, so it names
the last preset loaded, not what is in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from aiohttp import web

from ._guards import Guards
from ._schemas import SAMPLING_SWITCH_SCHEMA
from ._wire import BODY_NULL, MSG_NO_OVERRIDES, detail, encode, json_response, msg_no_preset

__all__ = ["SamplingRoutes", "drop_nulls"]


def drop_nulls(value: Any) -> Any:
    """``value`` without its ``null``s, in objects and arrays at any depth."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value if v is not None]
    return value


class SamplingRoutes:
    """Handlers of the sampler override routes, and the server's override state."""

    __slots__ = ("_guards", "overrides", "presets", "selected_preset")

    def __init__(
        self, guards: Guards, presets: Mapping[str, Mapping[str, Any]], startup: str | None
    ) -> None:
        self._guards = guards
        #: The preset folder: a preset's name (without ``.yml``) -> its overrides.
        self.presets = {name: dict(overrides) for name, overrides in presets.items()}
        self.selected_preset: str | None = None
        self.overrides: dict[str, Any] = {}
        # A startup preset that does not exist is only a warning in the server's log.
        if startup is not None:
            self._load_preset(startup)

    def _load_preset(self, name: str) -> bool:
        """Put the preset ``name`` in force; False if there is no such preset file."""
        path = PurePosixPath(f"{name}.yml")
        overrides = self.presets.get(str(path)[: -len(".yml")])
        if overrides is None:
            return False
        self.selected_preset = path.stem
        self.overrides = drop_nulls(overrides)
        return True

    async def list(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/v1/sampling/override/list`` and ``/v1/sampling/overrides``."""
        view = self._guards.view(request)
        if isinstance(view, web.Response):
            return view
        state = {
            "selected_preset": self.selected_preset,
            "overrides": self.overrides,
            "presets": list(self.presets) if view == "admin" else [],
        }
        return json_response(200, encode(state))

    async def switch(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/sampling/override/switch`` ``{"preset": ...}`` or ``{"overrides": ...}``."""
        fields = self._guards.body(request, body, SAMPLING_SWITCH_SCHEMA)
        if isinstance(fields, web.Response):
            return fields
        preset: str | None = fields["preset"]
        overrides: dict[str, Any] | None = fields["overrides"]
        if preset:
            if not self._load_preset(preset):
                return json_response(400, detail(msg_no_preset(preset)))
        elif overrides:
            self.overrides = drop_nulls(overrides)
        else:
            return json_response(400, detail(MSG_NO_OVERRIDES))
        return json_response(200, BODY_NULL)

    async def unload(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/sampling/override/unload``: empties the overrides, keeps
        ``selected_preset``."""
        denied = self._guards.admin(request)
        if denied is not None:
            return denied
        self.overrides = {}
        return json_response(200, BODY_NULL)
