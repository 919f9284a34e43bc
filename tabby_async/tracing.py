"""tabby_async.tracing: the SDK's OpenTelemetry span hooks, for code built on the SDK.

The SDK's own spans (loads, desired state, fleet operations) and the
gateway's come from these. They never import OpenTelemetry: until an
application has imported ``opentelemetry.trace``, :func:`start_span` is a
dictionary lookup that returns None, so code that does not trace pays
nothing; every other hook takes the span it returned and is only called
with one. Spans carry no key, token or URL credentials: the attributes are
the caller's, so keep them that way.

::

    from tabby_async import tracing

    span = tracing.start_span("my.operation", lambda: {"tabby.model": name})
    try:
        ...
    except BaseException as exc:
        if span is not None:
            tracing.fail_span(span, exc)
        raise
    if span is not None:
        tracing.end_span(span, "ok")
"""

from ._otel import (
    AttributeValue,
    SpanLike,
    end_span,
    fail_span,
    set_error,
    start_span,
    use_span,
)
from ._public import publish as _publish

__all__ = [
    "AttributeValue",
    "SpanLike",
    "end_span",
    "fail_span",
    "set_error",
    "start_span",
    "use_span",
]

_publish(globals(), __all__, __name__)
