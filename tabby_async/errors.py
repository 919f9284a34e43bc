"""The TabbyError hierarchy.

Every failure the SDK reports is a :class:`TabbyError`. Each class has a stable
string ``code`` to switch on, so callers need not import every class::

    except TabbyError as err:
        match err.code:
            case "permission_error": ...
            case "not_found": ...

Errors that come from an HTTP answer are :class:`APIStatusError` and carry the
``status``, the server's ``message`` (its ``detail``) and the parsed ``body``.
No error ever holds a key or token: messages are built only from the server's
detail text, the method and the path, and no error keeps aiohttp's exception
(whose request record holds the keys) as its cause or context.

Every error survives ``pickle`` and ``copy`` with its class, message and
fields, so it can cross a process boundary (a ``ProcessPoolExecutor`` worker).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "ClientStateError",
    "InvalidInputError",
    "LoadFailedError",
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseDecodeError",
    "ServerError",
    "StreamError",
    "TabbyConnectionError",
    "TabbyError",
    "TabbyTimeoutError",
    "UnprocessableEntityError",
]


def _rebuild(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """An error of ``cls`` with ``args``, made without calling its ``__init__``."""
    err = cls.__new__(cls, *args)
    err.args = args  # OSError subclasses (timeouts, connection errors) leave it empty
    return err


class TabbyError(Exception):
    """Base of every error the SDK raises."""

    code: ClassVar[str] = "tabby_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls cls(*args), which fails for every
        # subclass whose __init__ takes other arguments than its args (a
        # field, keyword-only status or kind...). Rebuild without __init__
        # and restore the attributes instead: this covers subclasses too.
        return (_rebuild, (type(self), self.args), self.__dict__)


class InvalidInputError(TabbyError, ValueError):
    """A request was refused before sending: ``field`` names the bad input."""

    code: ClassVar[str] = "invalid_input"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class ClientStateError(TabbyError, RuntimeError):
    """The client was used when it cannot be: closed, or in another event loop."""

    code: ClassVar[str] = "client_state"


class TabbyConnectionError(TabbyError, ConnectionError):
    """The server could not be reached, or the connection broke mid-answer."""

    code: ClassVar[str] = "connection_error"

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        #: False only when nothing reached the server (connect failed), which
        #: is the one case where even a load may be retried safely.
        self.sent = sent


TimeoutKind = Literal["connect", "read", "total"]


class TabbyTimeoutError(TabbyError, TimeoutError):
    """A timeout fired; ``kind`` says which: connect, read (idle) or total."""

    code: ClassVar[str] = "timeout"

    def __init__(self, message: str, *, kind: TimeoutKind, sent: bool = True) -> None:
        super().__init__(message)
        self.kind: TimeoutKind = kind
        self.sent = sent


class ResponseDecodeError(TabbyError):
    """The server answered 2xx with a body that does not have the expected shape."""

    code: ClassVar[str] = "decode_error"


class StreamError(TabbyError):
    """The load stream ended or broke before the model's ``finished`` event."""

    code: ClassVar[str] = "stream_error"


class LoadFailedError(TabbyError):
    """The server reported a failed load inside the progress stream."""

    code: ClassVar[str] = "load_failed"

    def __init__(self, message: str, *, trace: Any = None) -> None:
        super().__init__(message)
        self.trace = trace


class APIStatusError(TabbyError):
    """The server answered with an error status."""

    code: ClassVar[str] = "http_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: Any = None,
        method: str = "",
        path: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.method = method
        self.path = path
        self.headers: dict[str, str] = headers or {}

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method else ""
        return f"{self.status} {self.message}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, message={self.message!r})"


class BadRequestError(APIStatusError):
    """400: the server refused the request."""

    code: ClassVar[str] = "invalid_request"


class ModelNotFoundError(BadRequestError):
    """The named model (or embedding model) has no folder on the server.

    The real server says this with a 400 ("Could not find the model path...").
    """

    code: ClassVar[str] = "not_found"


class AuthenticationError(APIStatusError):
    """401: the api key is missing or wrong."""

    code: ClassVar[str] = "authentication_error"


class PermissionDeniedError(APIStatusError):
    """The route needs the admin key, and the client did not send a valid one.

    The real server answers 401 "Please provide an admin key" / "Invalid admin
    key"; for the user this is a permission problem, not a bad api key.
    """

    code: ClassVar[str] = "permission_error"


class NotFoundError(APIStatusError):
    """404: the server does not have this route (an older or other server?)."""

    code: ClassVar[str] = "not_found"


class UnprocessableEntityError(APIStatusError):
    """422: the server's validation refused the body; ``errors`` lists the fields."""

    code: ClassVar[str] = "validation_error"

    @property
    def errors(self) -> list[dict[str, Any]]:
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        return [e for e in detail if isinstance(e, dict)] if isinstance(detail, list) else []


class RateLimitError(APIStatusError):
    """429: too many requests (from a proxy in front of TabbyAPI)."""

    code: ClassVar[str] = "rate_limited"


class ServerError(APIStatusError):
    """A 5xx answer other than "no model loaded"."""

    code: ClassVar[str] = "server_error"


class ModelNotLoadedError(APIStatusError):
    """503 "No models are currently loaded." (or the embedding variant).

    This is an answer about the server's state, not an outage: it is not a
    :class:`ServerError` and is never retried.
    """

    code: ClassVar[str] = "model_not_loaded"
