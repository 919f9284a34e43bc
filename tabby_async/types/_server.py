"""Types about the server itself: health, the key's permission, the service description."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

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
    "UnhealthyShape",
]


#: The longest issue description :meth:`HealthIssue.summary` gives (a generation
#: error's text can be a whole traceback line).
ISSUE_TEXT_LIMIT = 200


class HealthIssue(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """One reason the server calls itself unhealthy: when (UTC, ISO 8601) and what.

    The server records one per failed generation (and goes on serving, with
    a new generator) and lists them, the last 100, until it is restarted.
    """

    time: str = ""
    description: str = ""

    @property
    def at(self) -> datetime | None:
        """``time`` as an aware UTC datetime (None when missing or not ISO 8601)."""
        try:
            parsed = datetime.fromisoformat(self.time)
        except ValueError:
            return None
        if parsed.tzinfo is None:  # the server writes UTC
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)

    def summary(self, limit: int = ISSUE_TEXT_LIMIT) -> str:
        """The description on one line: control characters dropped, at most ``limit`` chars."""
        return _clean_line(self.description, limit)


def _clean_line(text: str, limit: int) -> str:
    """``text`` without control characters (runs of whitespace one space), cut to ``limit``."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "\u2026"


class HealthResponse(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """The ``/health`` answer. A 503 "unhealthy" answer is a result too."""

    status: str
    issues: list[HealthIssue] = msgspec.field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when the server says ``healthy`` (which does not mean a model is loaded)."""
        return self.status == "healthy"

    @property
    def since(self) -> datetime | None:
        """When the oldest issue still listed happened (None: healthy, or no time given).

        The server keeps the last 100 issues: past that, the first ones drop out.
        """
        times = [t for t in (i.at for i in self.issues) if t is not None]
        return min(times) if times else None

    @property
    def last_issue(self) -> HealthIssue | None:
        """The latest issue the server lists (it lists them oldest first), if any."""
        return self.issues[-1] if self.issues else None


class _WireIssue(msgspec.Struct, frozen=True):
    """An issue as the server writes it: both fields, always."""

    time: str
    description: str


class HealthShape(msgspec.Struct, frozen=True):
    """The server's own ``/health`` answer: ``status`` and ``issues``, both present.

    Only TabbyAPI's answer has this shape: a proxy's page (HTML,
    ``{"detail": ...}``, ``{"status": "error"}``, a gateway's own
    ``{"status": "healthy"}``) lacks a field or has another value, and is
    an outage, not an answer. :meth:`answer` also refuses a status that
    contradicts the issues (healthy with issues, unhealthy without).
    """

    status: Literal["healthy", "unhealthy"]
    issues: list[_WireIssue]

    def answer(self) -> HealthResponse | None:
        """The answer as a :class:`HealthResponse` (None: status and issues disagree)."""
        healthy = self.status == "healthy"
        if not self.issues:  # the common answer, built without a walk
            return HealthResponse(status="healthy") if healthy else None
        if healthy:
            return None
        issues = [HealthIssue(time=i.time, description=i.description) for i in self.issues]
        return HealthResponse(status=self.status, issues=issues)


class UnhealthyShape(msgspec.Struct, frozen=True):
    """The server's own 503 on ``/health``: ``unhealthy`` with a list of issues."""

    status: Literal["unhealthy"]
    issues: list[_WireIssue]


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
