"""Resource: the base of every API area (``client.models``, ...) over the one request path.

An area is a :class:`Resource` whose methods are two lines each: build the
request (:func:`build_request`), then :meth:`Resource._call` the route. The
route (the route table) says how long the call runs, whether it may be
retried and how its answer decodes; the resource resolves the per-call
``timeout=``/``max_retries=`` against the client's defaults.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import msgspec

from ._defaults import USE_CLIENT_DEFAULT, ClientDefaults, RetriesArg, TimeoutArg
from ._route import Route
from ._stream import LoadStream, Reattach
from ._transport import Transport
from .errors import InvalidInputError
from .types import DraftModelLoadRequest, LoraLoadItem

__all__ = ["Resource", "build_request"]

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

#: Request fields that hold a nested request Struct (or a list of them), which
#: a dict may stand for.
_NESTED: dict[str, type[msgspec.Struct]] = {
    "draft_model": DraftModelLoadRequest,
    "loras": LoraLoadItem,
}


def build_request(cls: type[S], request: S | None, fields: Mapping[str, Any]) -> S:
    """The request from a Struct and/or keyword fields, checked before sending.

    Keywords override the Struct's fields. An unknown keyword, a missing
    required field or a bad value raises :class:`~tabby_async.InvalidInputError`
    naming it.
    """
    if request is not None and not isinstance(request, cls):
        raise InvalidInputError(
            "request", f"must be a {cls.__name__}, not {type(request).__name__}"
        )
    known = cls.__struct_fields__
    values = dict(fields)
    for name, value in fields.items():
        if name not in known:
            raise InvalidInputError(name, f"is not a field of {cls.__name__}")
        nested = _NESTED.get(name)
        if nested is not None:
            values[name] = _nested(nested, value)
    if request is None:
        try:
            return cls(**values)
        except TypeError as exc:  # a required field is missing
            raise InvalidInputError(cls.__name__, str(exc)) from None
    if not values:
        return request
    # Rebuild rather than structs.replace, so that the checks run again.
    merged = {name: getattr(request, name) for name in known}
    merged.update(values)
    return cls(**merged)


def _nested(cls: type[S], value: object) -> object:
    """A nested request field: a dict becomes ``cls``, in a list item by item."""
    if isinstance(value, Mapping):
        return build_request(cls, None, value)
    if isinstance(value, (list, tuple)):
        return [build_request(cls, None, v) if isinstance(v, Mapping) else v for v in value]
    return value


class Resource:
    """One API area of one client: its calls go through the client's transport."""

    __slots__ = ("_defaults", "_transport")

    def __init__(self, transport: Transport, defaults: ClientDefaults) -> None:
        self._transport = transport
        self._defaults = defaults

    def _call(
        self,
        route: Route[T],
        body: msgspec.Struct | None = None,
        *,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
        max_retries: RetriesArg = USE_CLIENT_DEFAULT,
    ) -> Coroutine[Any, Any, T]:
        """The call of ``route`` (with ``body``), to await for its decoded answer.

        Both per-call settings are resolved and checked now, before anything
        is sent. Retries apply to read-only routes only: a write is never
        sent twice. (A plain function returning the transport's coroutine:
        one frame less on every resume of the request.)
        """
        defaults = self._defaults
        kind = route.kind
        return self._transport.call(
            route,
            body,
            # The common case read off directly: two calls less per request.
            defaults.timeout
            if timeout is USE_CLIENT_DEFAULT and kind == "control"
            else defaults.timeout_for(timeout, kind),
            defaults.max_retries
            if max_retries is USE_CLIENT_DEFAULT
            else defaults.retries_for(max_retries),
        )

    def _stream(
        self,
        route: Route[Any],
        body: msgspec.Struct,
        *,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
        reattach: Reattach | None = None,
        reattach_within: float = 0.0,
    ) -> LoadStream:
        """The progress stream of ``route`` (sent on entering it; never re-sent)."""
        return LoadStream(
            self._transport,
            route,
            body,
            self._defaults.timeout_for(timeout, route.kind),
            reattach=reattach,
            reattach_within=reattach_within,
        )
