"""The gateway's answers that are errors: OpenAI's error shape with a stable ``code``.

::

    GatewayError                status  code
    ├─ a request the gateway refuses
    │   ├── invalid_request     400     the body is not JSON, or lacks a string ``model``
    │   ├── unauthorized        401     no client key, or not one of them
    │   ├── not_found           404     no such route
    │   ├── model_not_found     404     no such model in the catalog (or not of this kind)
    │   ├── method_not_allowed  405     a known route, another method (``Allow`` says which)
    │   ├── body_too_large      413     a body over the gateway's bound (64 MiB)
    │   └── queue_full          503     too many requests already wait for this model
    ├─ the gateway could not serve it
    │   ├── queue_timeout       503     the model was not ready within the queue timeout
    │   ├── no_capacity         503     no node can take the model now (down, backing off, pinned)
    │   └── load_failed         502     the load on a node failed (names the model and node)
    └─ the node's own answer
        ├── upstream_error      502     the node failed after the request reached it
        └── (the node's status) 4xx     the node refused the request: its message, passed on

Every body is ``{"error": {"message", "type", "code", "param"}}``; a 503 says
``Retry-After`` in whole seconds. A streamed answer that fails after its head
ends with one ``data: {"error": ...}`` event in the same shape.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec
from aiohttp import web

__all__ = ["GatewayCode", "GatewayError", "error_event", "error_response"]

GatewayCode = Literal[
    "invalid_request",
    "unauthorized",
    "not_found",
    "model_not_found",
    "method_not_allowed",
    "body_too_large",
    "queue_full",
    "queue_timeout",
    "no_capacity",
    "load_failed",
    "upstream_error",
]

#: OpenAI's ``type`` beside each status class.
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error"}


class GatewayError(Exception):
    """An answer the gateway gives instead of the node's: status, stable code, message."""

    def __init__(
        self,
        status: int,
        code: GatewayCode,
        message: str,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code: GatewayCode = code
        self.message = message
        #: Seconds a client should wait before trying again (503 answers).
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.status, self.code, self.message, self.retry_after))


def _rebuild(status: int, code: GatewayCode, message: str, retry: float | None) -> GatewayError:
    return GatewayError(status, code, message, retry_after=retry)


def _body(status: int, code: str, message: str) -> dict[str, object]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


def error_response(
    status: int, code: str, message: str, retry_after: float | None = None
) -> web.Response:
    """The JSON error answer; ``Retry-After`` on a 503 (whole seconds, at least 1)."""
    headers = {}
    if status == 503:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after or 1)))
    return web.Response(
        status=status,
        body=msgspec.json.encode(_body(status, code, message)),
        content_type="application/json",
        headers=headers,
    )


def error_event(code: str, message: str) -> bytes:
    """The SSE event that ends a stream which failed after its head."""
    return b"data: " + msgspec.json.encode(_body(502, code, message)) + b"\n\n"
