"""AsyncServerService: the calls about the server itself (health, permission, service info).

The client exposes them directly (``client.health()``, ``client.permission()``,
``client.service_info()``).
"""

from __future__ import annotations

from . import _routes as R
from ._defaults import USE_CLIENT_DEFAULT, RetriesArg, TimeoutArg
from ._resource import Resource
from .errors import ResponseDecodeError
from .types import HealthResponse, PermissionResponse, ServiceInfo

__all__ = ["AsyncServerService"]

_DEFAULT = USE_CLIENT_DEFAULT


class AsyncServerService(Resource):
    """``/health`` and ``/v1/auth/permission`` of one server."""

    __slots__ = ()

    async def health(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> HealthResponse:
        """``GET /health`` (see :meth:`AsyncTabbyClient.health`).

        Only TabbyAPI's own answers come back (its 200 "healthy" with no
        issues, its 503 "unhealthy" with some); a 200 of any other shape
        (a proxy's page, another service's JSON) is a ResponseDecodeError.
        """
        shape = await self._call(R.HEALTH, timeout=timeout, max_retries=max_retries)
        answer = shape.answer()
        if answer is None:
            raise ResponseDecodeError(
                f"GET /health: not TabbyAPI's health answer (status {shape.status!r} "
                f"with {len(shape.issues)} issues)"
            )
        return answer

    async def permission(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> PermissionResponse:
        """``GET /v1/auth/permission`` (see :meth:`AsyncTabbyClient.permission`)."""
        return await self._call(R.PERMISSION, timeout=timeout, max_retries=max_retries)

    async def service_info(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> ServiceInfo:
        """``GET /.well-known/serviceinfo`` (see :meth:`AsyncTabbyClient.service_info`)."""
        return await self._call(R.SERVICE_INFO, timeout=timeout, max_retries=max_retries)
