"""Route: one server route as data (where, which key, retry and timeout rules, decoder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import msgspec

__all__ = ["AuthKind", "CallKind", "Route"]

T = TypeVar("T")

#: Which key a route needs: ``api`` (an api key or the admin key), ``admin``,
#: ``none``, or ``api_key``: the client's plain api key only, never the admin
#: key, for the view the server gives api permission (a listing of what is
#: loaded rather than of every folder).
AuthKind = Literal["api", "admin", "none", "api_key"]

#: How long a route's calls run, which picks their default timeout and pool:
#: ``control`` answers at once; ``stream`` sends events for minutes (a load);
#: ``silent`` runs for minutes and says nothing until done (a download, an
#: embedding load), so it gets no idle bound by default.
CallKind = Literal["control", "stream", "silent"]


@dataclass(frozen=True)
class Route(Generic[T]):
    """One server route: where it is, which key it needs, how to call and decode it.

    ``decoder`` turns the answer's body into ``T``; ``None`` means the body
    carries nothing (``null``) and the call returns None.
    """

    name: str
    method: str
    path: str
    auth: AuthKind
    #: Read-only: safe to send again after it may have reached the server.
    idempotent: bool
    decoder: msgspec.json.Decoder[T] | None = None
    kind: CallKind = "control"
    #: Error statuses whose body is still the answer when ``answer_shape``
    #: decodes it (``/health``'s 503 "unhealthy"); any other body with that
    #: status is an error like the rest.
    ok_statuses: frozenset[int] = field(default_factory=frozenset)
    answer_shape: msgspec.json.Decoder[Any] | None = None
    #: An error status and the body shape that say "there is none": the call
    #: returns None instead of raising (``/v1/model/embedding``'s 503 "no
    #: embedding model loaded", for a probe that asks often and expects it).
    absent: tuple[int, msgspec.json.Decoder[Any]] | None = None

    #: Runs for minutes: sent on the client's second connection pool, so
    #: that many of them never starve the control calls. (Set from ``kind``;
    #: a field rather than a property, as it is read on every call.)
    long_running: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "long_running", self.kind != "control")
