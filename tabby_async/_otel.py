"""OpenTelemetry spans of the SDK's own: loads, ensure, and every fleet operation.

An HTTP span (aiohttp's instrumentation, through ``trace_configs=``) ends
when the head of the load stream arrives, so it shows nothing of a long
load. These spans do: a load's span lasts from the request to the model's
``finished`` event (or the error), with an event per component that
finished; ensure's span carries the plan; a fleet operation is a parent span
with one child per node.

The extra ``otel`` installs ``opentelemetry-api``; this module never imports
it. It looks in ``sys.modules`` for the API's ``opentelemetry.trace``, which
an application that configures tracing has imported, and resolves the
SDK's tracer from it once. Until then every hook is a dictionary lookup that
returns None, so an application that does not trace pays nothing, whether
the package is installed or not. With the API imported but no tracer
provider configured, the tracer hands out non-recording spans: each hook
checks ``is_recording()`` once and drops them.

Attribute names follow OpenTelemetry's semantic conventions where one
applies (``server.address``, ``server.port``, ``error.type``); the rest are
under ``tabby.``. Spans carry no key, token or URL credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from yarl import URL

from ._version import __version__
from .errors import TabbyError

__all__ = [
    "AttributeValue",
    "Attributes",
    "LoadTrace",
    "SpanLike",
    "Traced",
    "end_span",
    "fail_span",
    "operation_span",
    "server_attributes",
    "set_error",
    "set_plan",
    "start_span",
    "use_span",
]

#: An attribute value as OpenTelemetry takes it.
AttributeValue = str | bool | int | float | Sequence[str] | Sequence[int]
Attributes = Mapping[str, AttributeValue]

#: The instrumentation scope's name: the tracer the SDK's spans come from.
SCOPE = "tabby_async"


class SpanLike(Protocol):
    """The part of an OpenTelemetry ``Span`` the SDK uses."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def add_event(self, name: str, attributes: Attributes | None = None) -> None: ...

    def set_status(self, status: Any) -> None: ...

    def is_recording(self) -> bool: ...

    def end(self) -> None: ...


class _Api:
    """OpenTelemetry's trace API, found once the application has imported it."""

    tracer: Any = None
    module: Any = None


def _tracer() -> Any:
    """The SDK's tracer, or None while the application has not imported the API."""
    tracer = _Api.tracer
    if tracer is not None:
        return tracer
    api = sys.modules.get("opentelemetry.trace")
    get_tracer = getattr(api, "get_tracer", None)
    if get_tracer is None:  # not imported (or still being imported)
        return None
    # A ProxyTracer when no provider is set yet: it follows one set later.
    _Api.tracer = tracer = get_tracer(SCOPE, __version__)
    _Api.module = api
    return tracer


def start_span(name: str, attributes: Callable[[], Attributes]) -> SpanLike | None:
    """A new span named ``name``, or None when nothing records it.

    ``attributes`` is only called for a span that records, so building them
    costs nothing when tracing is off.
    """
    tracer = _tracer()
    if tracer is None:
        return None
    span: SpanLike = tracer.start_span(name, attributes=attributes())
    return span if span.is_recording() else None


@contextlib.contextmanager
def use_span(span: SpanLike | None) -> Iterator[None]:
    """Make ``span`` the current span (the parent of spans started inside); None: no-op."""
    if span is None:
        yield
        return
    with _Api.module.use_span(
        span, end_on_exit=False, record_exception=False, set_status_on_exception=False
    ):
        yield


def server_attributes(url: URL) -> dict[str, AttributeValue]:
    """``server.address`` and ``server.port`` of a base URL (never its credentials)."""
    found: dict[str, AttributeValue] = {"server.address": url.host or ""}
    if url.port is not None:
        found["server.port"] = url.port
    return found


def end_span(span: SpanLike, outcome: str) -> None:
    """End ``span`` with ``tabby.outcome`` (``ok``, ``closed``, ``cancelled``)."""
    span.set_attribute("tabby.outcome", outcome)
    span.end()


def set_error(span: SpanLike, code: str, message: str) -> None:
    """Mark ``span`` failed: ``error.type`` ``code``, status ERROR described by ``message``."""
    span.set_attribute("error.type", code)
    span.set_status(_Api.module.Status(_Api.module.StatusCode.ERROR, message[:500]))


def fail_span(span: SpanLike, exc: BaseException) -> None:
    """End ``span`` for ``exc``: cancelled, or an error with ``error.type`` and status ERROR.

    ``error.type`` is a :class:`~tabby_async.TabbyError`'s ``code`` (any
    other exception's class name). The status description is the error's
    message, which never holds a key.
    """
    if isinstance(exc, asyncio.CancelledError):
        end_span(span, "cancelled")
        return
    code = exc.code if isinstance(exc, TabbyError) else type(exc).__qualname__
    set_error(span, code, str(exc))
    end_span(span, "error")


@contextlib.contextmanager
def operation_span(name: str, attributes: Callable[[], Attributes]) -> Iterator[SpanLike | None]:
    """A span around a block, current inside it; yields None when tracing is off.

    The span ends with the block: ``tabby.outcome`` ``ok``, or what
    :func:`fail_span` records for the exception that left it.
    """
    span = start_span(name, attributes)
    if span is None:
        yield None
        return
    with use_span(span):
        try:
            yield span
        except BaseException as exc:
            fail_span(span, exc)
            raise
    end_span(span, "ok")


class Traced:
    """A recording span that an operation ends in its own way (the base of ``*Trace``)."""

    __slots__ = ("span",)

    def __init__(self, span: SpanLike) -> None:
        self.span = span

    def fail(self, exc: BaseException) -> None:
        """End the span for ``exc`` (an error, a cancellation, a bug)."""
        fail_span(self.span, exc)


class LoadTrace(Traced):
    """The span of one load stream: from the request to ``finished`` or the error.

    Made by :meth:`start` (None when tracing is off, so the stream's only
    cost is an ``is None`` check per event). Each component's ``finished``
    event (vision, draft, model) becomes a span event.
    """

    __slots__ = ()

    @classmethod
    def start(cls, base_url: URL, path: str, model_name: str | None) -> LoadTrace | None:
        """The trace of a load of ``model_name`` sent to ``base_url``, or None."""

        def attributes() -> Attributes:
            found = server_attributes(base_url)
            found["tabby.route"] = path
            if model_name is not None:
                found["tabby.model.name"] = model_name
            return found

        span = start_span("tabby.load", attributes)
        return None if span is None else cls(span)

    def context(self) -> contextlib.AbstractContextManager[None]:
        """The span as the current one (so the HTTP request's span is its child)."""
        return use_span(self.span)

    def saw(self, model_type: str, status: str, modules: int) -> bool:
        """A load event; True when it was the model's ``finished``, which ended the span.

        Each component's (``vision``, ``draft``, ``model``) ``finished`` is a
        span event.
        """
        if status != "finished":
            return False
        self.span.add_event(
            "tabby.load.component_finished",
            {"tabby.model.type": model_type, "tabby.load.modules": modules},
        )
        if model_type != "model":
            return False
        self.finished()
        return True

    def finished(self, *, reattached: bool = False) -> None:
        """The model has finished: the span ends ``ok``."""
        if reattached:
            self.span.set_attribute("tabby.load.reattached", True)
        end_span(self.span, "ok")

    def closed(self) -> None:
        """The stream was closed before the model finished (the server's load goes on)."""
        end_span(self.span, "closed")


def set_plan(
    span: SpanLike, action: str, reasons: Iterable[object], unchecked: Iterable[str]
) -> None:
    """Record an ensure plan on ``span``: its action, its reasons, what it could not compare."""
    span.set_attribute("tabby.ensure.action", action)
    span.set_attribute("tabby.ensure.reasons", [str(r) for r in reasons])
    span.set_attribute("tabby.ensure.unchecked", list(unchecked))
