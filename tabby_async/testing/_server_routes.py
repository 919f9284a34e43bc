"""The server's own routes: ``/health``, ``/v1/auth/permission`` and the service info."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from ._guards import Guards
from ._wire import (
    BODY_HEALTHY,
    BODY_SERVICE_INFO,
    MSG_KEY_INVALID,
    MSG_KEY_MISSING,
    detail,
    encode,
    internal_error,
    json_response,
)

__all__ = ["ServerRoutes"]


class ServerRoutes:
    """Handlers of the server's own routes, and the health issues ``/health`` reports."""

    __slots__ = ("_guards", "health_issues")

    def __init__(self, guards: Guards) -> None:
        self._guards = guards
        #: ``{"time", "description"}`` of each recorded issue; any makes ``/health`` a 503.
        self.health_issues: list[dict[str, str]] = []

    def add_health_issue(self, description: str) -> None:
        """Record an issue, stamped with the current UTC time."""
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.health_issues.append({"time": stamp, "description": description})

    async def health(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/health``: no key needed; 503 "unhealthy" once an issue is recorded."""
        if not self.health_issues:
            return json_response(200, BODY_HEALTHY)
        return json_response(503, encode({"status": "unhealthy", "issues": self.health_issues}))

    async def permission(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/v1/auth/permission``: ``{"permission": "api" | "admin"}``."""
        denied = self._guards.api(request)
        if denied is not None:
            return denied
        permission = self._guards.permission(request)
        if permission == "missing":
            return json_response(400, detail(MSG_KEY_MISSING))
        if permission == "invalid":
            return json_response(400, detail(MSG_KEY_INVALID))
        if permission == "malformed":
            return internal_error()
        return json_response(200, encode({"permission": permission}))

    async def service_info(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """GET ``/.well-known/serviceinfo``: a fixed answer; no key needed, keys ignored."""
        return json_response(200, BODY_SERVICE_INFO)
