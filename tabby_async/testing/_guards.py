"""A route's checks before it acts, in the real server's order, as ready responses.

The server looks at a request in this order: a malformed JSON body (422), the
key (401), whether a model is loaded (503, on the routes that need one), the
body's fields (422). Each check here returns ``None`` to let the request
through, or the response that refuses it.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web

from ._auth import Keys, Permission, check_admin, check_api, key_permission
from ._state import ModelState
from ._validation import BodyError, Schema, parse_json_body, validate
from ._wire import MSG_NO_MODEL, detail, internal_error, json_response, unprocessable

__all__ = ["Guards"]


class Guards:
    """The checks of one emulator's routes: its keys, and its model state for the 503."""

    __slots__ = ("keys", "state")

    def __init__(self, keys: Keys, state: ModelState) -> None:
        self.keys = keys
        self.state = state

    def api(self, request: web.BaseRequest, *, needs_model: bool = False) -> web.Response | None:
        """An api route's key check, then (with ``needs_model``) the no-model 503."""
        denial = check_api(request.headers, self.keys)
        if denial is None:
            return self.no_model() if needs_model else None
        return json_response(denial[0], detail(denial[1]))

    def admin(self, request: web.BaseRequest, *, needs_model: bool = False) -> web.Response | None:
        """An admin route's key check, then (with ``needs_model``) the no-model 503."""
        denial = check_admin(request.headers, self.keys)
        if denial is None:
            return self.no_model() if needs_model else None
        return json_response(denial[0], detail(denial[1]))

    def permission(self, request: web.BaseRequest) -> Permission:
        """The level of the request's key (see :func:`key_permission`)."""
        return key_permission(request.headers, self.keys)

    def view(self, request: web.BaseRequest) -> Literal["admin", "api"] | web.Response:
        """A listing's view: ``"admin"`` (everything) or ``"api"`` (what is in use), or
        the refusal: the key check's 401, or the 500 of a permission lookup that
        crashes on the server (a wrong ``x-admin-key`` beside a valid ``x-api-key``)."""
        denied = self.api(request)
        if denied is not None:
            return denied
        permission = key_permission(request.headers, self.keys)
        if permission == "admin" or permission == "api":
            return permission
        return internal_error()

    def no_model(self) -> web.Response | None:
        """The 503 of a route that needs a model, when none is loaded (or one is loading)."""
        if self.state.ready is None:
            return json_response(503, detail(MSG_NO_MODEL))
        return None

    def body(
        self,
        request: web.BaseRequest,
        body: bytes,
        schema: Schema,
        *,
        admin: bool = True,
        needs_model: bool = False,
    ) -> dict[str, Any] | web.Response:
        """A route's body, checked in the server's order; the fields or the refusal.

        Malformed JSON (422), then the key (admin or api), then the 503 when
        ``needs_model`` and no model is loaded, then the schema's validation (422).
        """
        try:
            data = parse_json_body(body, request.headers.get("Content-Type"))
        except BodyError as exc:
            return unprocessable(exc.errors)
        if admin:
            denied = self.admin(request, needs_model=needs_model)
        else:
            denied = self.api(request, needs_model=needs_model)
        if denied is not None:
            return denied
        try:
            return validate(schema, data)
        except BodyError as exc:
            return unprocessable(exc.errors)
