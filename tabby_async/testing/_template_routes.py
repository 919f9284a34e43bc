"""The prompt template routes: list, switch and unload the loaded model's template.

The template belongs to the loaded model (see :class:`LoadedModel`): a switch
or an unload changes it there, any load replaces it, unloading the model drops
it. A switch opens ``templates/<name>`` with ``.jinja`` in place of any other
extension; a name that opens nothing is the server's plain-text 500 (its
lookup raises an error nobody catches), not a 400.
"""

from __future__ import annotations

from aiohttp import web

from ._guards import Guards
from ._schemas import TEMPLATE_SWITCH_SCHEMA
from ._state import LoadedModel, find_template
from ._wire import BODY_NULL, MSG_NO_TEMPLATE_NAME, detail, encode, internal_error, json_response

__all__ = ["TemplateRoutes"]


class TemplateRoutes:
    """Handlers of the prompt template routes (the templates live in the model state)."""

    __slots__ = ("_guards", "_state")

    def __init__(self, guards: Guards) -> None:
        self._guards = guards
        self._state = guards.state

    async def list(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/v1/template/list`` and ``/v1/templates``: every template for an admin,
        else the one in use (or none)."""
        view = self._guards.view(request)
        if isinstance(view, web.Response):
            return view
        if view == "admin":
            names = list(self._state.templates)
        else:
            loaded = self._state.ready
            in_use = loaded.prompt_template if loaded is not None else None
            names = [in_use] if in_use is not None else []
        return json_response(200, encode({"object": "list", "data": names}))

    async def switch(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/template/switch`` ``{"prompt_template_name": ...}``; needs a model."""
        fields = self._guards.body(request, body, TEMPLATE_SWITCH_SCHEMA, needs_model=True)
        if isinstance(fields, web.Response):
            return fields
        name: str = fields["prompt_template_name"]
        if not name:
            return json_response(400, detail(MSG_NO_TEMPLATE_NAME))
        found = find_template(self._state.templates, name)
        if found is None:
            return internal_error()
        self._set(*found)
        return json_response(200, BODY_NULL)

    async def unload(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/template/unload``: the model keeps no template; needs a model."""
        refused = self._guards.admin(request, needs_model=True)
        if refused is not None:
            return refused
        self._set(None, None)
        return json_response(200, BODY_NULL)

    def _set(self, name: str | None, text: str | None) -> None:
        loaded: LoadedModel | None = self._state.loaded
        assert loaded is not None  # the guard checked
        loaded.prompt_template = name
        loaded.prompt_template_content = text
