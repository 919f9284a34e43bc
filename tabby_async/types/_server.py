"""Types about the server itself: health, the key's permission, the service description."""

from __future__ import annotations

import msgspec

from ._base import ResponseStruct

__all__ = [
    "HealthIssue",
    "HealthResponse",
    "HealthShape",
    "PermissionResponse",
    "ServiceApi",
    "ServiceInfo",
    "ServiceSoftware",
]


class HealthIssue(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """One reason the server calls itself unhealthy."""

    time: str = ""
    description: str = ""


class HealthResponse(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """The ``/health`` answer. A 503 "unhealthy" answer is a result too."""

    status: str
    issues: list[HealthIssue] = msgspec.field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when the server says ``healthy`` (which does not mean a model is loaded)."""
        return self.status == "healthy"


class HealthShape(msgspec.Struct, frozen=True):
    """The server's own 503 on ``/health``: both fields present, ``issues`` a list.

    A proxy's 503 (an HTML page, ``{"detail": ...}``, ``{"status": "error"}``)
    lacks one of them and is an outage, not the server's answer.
    """

    status: str
    issues: list[HealthIssue]


class PermissionResponse(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """The ``/v1/auth/permission`` answer: ``"api"`` or ``"admin"``."""

    permission: str


class ServiceSoftware(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """Which software the server is (``name`` is ``"TabbyAPI"``) and where it lives."""

    name: str = ""
    repository: str | None = None
    homepage: str | None = None


class ServiceApi(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """One API the server offers, and where under the server root it is."""

    name: str = ""
    relative_url: str = ""
    documentation: str | None = None
    version: float | None = None


class ServiceInfo(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """The server's self-description (``GET /.well-known/serviceinfo``, no key needed).

    ``api`` maps an API's key (``"openai"``, ``"koboldai"``) to where it is.
    The server answers the same fixed description whatever its state.
    """

    version: float | None = None
    software: ServiceSoftware = msgspec.field(default_factory=ServiceSoftware)
    api: dict[str, ServiceApi] = msgspec.field(default_factory=dict)
