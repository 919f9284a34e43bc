"""The TabbyError hierarchy: every error the SDK raises, with a stable ``code``.

::

    TabbyError                          tabby_error
    ├── InvalidInputError (ValueError)  invalid_input     refused before sending; .field
    ├── ClientStateError (RuntimeError) client_state      closed client, another event loop
    ├── TabbyConnectionError            connection_error  unreachable, cut, not HTTP; .sent
    ├── TabbyTimeoutError               timeout           .kind: connect | read | total
    ├── ResponseDecodeError             decode_error      a 2xx body of the wrong shape
    │   └── ResponseTooLargeError       response_too_large  over max_response_bytes; .limit
    ├── StreamError                     stream_error      the load stream ended early
    ├── LoadFailedError                 load_failed       the server's failed load; .trace
    ├── LoraLoadFailedError             lora_load_failed  adapters not applied; .success .failure
    ├── APIStatusError                  http_error        .status .message .body .method .path
    │   ├── BadRequestError             invalid_request   400
    │   │   ├── ModelNotFoundError      not_found         400 "could not find the model path"
    │   │   ├── PresetNotFoundError     not_found         400: no sampler preset of that name
    │   │   └── AlreadyLoadedError      already_loaded    400: that embedding model is loaded
    │   ├── AuthenticationError         authentication_error  401 api key; .reason
    │   ├── PermissionDeniedError       permission_error  401 admin key, 403; .reason
    │   ├── NotFoundError               not_found         404 (the *NotFoundErrors are too)
    │   │   └── TemplateNotFoundError   not_found         no prompt template of that name
    │   ├── UnprocessableEntityError    validation_error  422; .errors
    │   │   └── NoTemplateError         no_template       chat messages need a prompt template
    │   ├── RateLimitError              rate_limited      429
    │   ├── ServerError                 server_error      5xx
    │   └── ModelNotLoadedError         model_not_loaded  503 nothing loaded; .kind
    └── (these live beside what they carry, and are TabbyErrors too:)
        ModelMismatchError              ensure_mismatch   ensure_loaded still differs; .result
        StateMismatchError              ensure_mismatch   a node's state still differs; .result
        VerificationError (fleet)       verify_failed     a rollout's check of a node
        NodeSkippedError (fleet)        skipped           a fleet node never started
        NodeCancelledError (fleet)      cancelled         a fleet node was cancelled
        FleetError (fleet)              fleet_error       FleetResult.raise_for_errors; .result

This module carries the errors of a call and its answer, and imports
nothing of the package. The two desired-state errors are exported from
``tabby_async``; the fleet's from :mod:`tabby_async.fleet`.

Switch on ``code`` rather than importing every class::

    except TabbyError as err:
        match err.code:
            case "permission_error": ...
            case "not_found": ...

``code`` is typed as :data:`ErrorCode`, a ``Literal`` of every code, so a
type checker catches a misspelt case.

Errors that come from an HTTP answer are :class:`APIStatusError` and carry the
``status``, the server's ``message`` (its ``detail``) and the parsed ``body``.
No error ever holds a key or token: messages are built only from the server's
detail text, the method and the path, and no error keeps aiohttp's exception
(whose request record holds the keys) as its cause or context.

Every error survives ``pickle`` and ``copy`` with its class, message and
fields, so it can cross a process boundary (a ``ProcessPoolExecutor`` worker).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, ClassVar, Literal

__all__ = [
    "APIStatusError",
    "AlreadyLoadedError",
    "AuthenticationError",
    "BadRequestError",
    "ClientStateError",
    "ErrorCode",
    "InvalidInputError",
    "KeyProblem",
    "LoadFailedError",
    "LoraLoadFailedError",
    "ModelKind",
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "NoTemplateError",
    "NotFoundError",
    "PermissionDeniedError",
    "PresetNotFoundError",
    "RateLimitError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "ServerError",
    "StreamError",
    "TabbyConnectionError",
    "TabbyError",
    "TabbyTimeoutError",
    "TemplateNotFoundError",
    "TimeoutKind",
    "UnprocessableEntityError",
]

#: Every error's stable ``code``.
ErrorCode = Literal[
    "tabby_error", "invalid_input", "client_state", "connection_error", "timeout", "decode_error",
    "response_too_large", "stream_error", "load_failed", "lora_load_failed", "no_template",
    "http_error", "invalid_request", "not_found", "already_loaded", "authentication_error",
    "permission_error", "validation_error", "rate_limited", "server_error", "model_not_loaded",
    "ensure_mismatch", "verify_failed", "skipped", "cancelled", "fleet_error",
]

#: What was wrong with a key: none was sent (``missing``), the server did not
#: accept it (``invalid``), or the answer did not say (``unknown``: a proxy's 403).
KeyProblem = Literal["missing", "invalid", "unknown"]


def _rebuild(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """An error of ``cls`` with ``args``, made without calling its ``__init__``."""
    err = cls.__new__(cls, *args)
    err.args = args  # OSError subclasses (timeouts, connection errors) leave it empty
    return err


class TabbyError(Exception):
    """Base of every error the SDK raises."""

    code: ClassVar[ErrorCode] = "tabby_error"

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

    code: ClassVar[ErrorCode] = "invalid_input"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class ClientStateError(TabbyError, RuntimeError):
    """The client was used when it cannot be: closed, or in another event loop."""

    code: ClassVar[ErrorCode] = "client_state"


class TabbyConnectionError(TabbyError, ConnectionError):
    """The server could not be reached, or the connection broke mid-answer."""

    code: ClassVar[ErrorCode] = "connection_error"

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        #: False only when nothing reached the server (connect failed), which
        #: is the one case where even a load may be retried safely.
        self.sent = sent


TimeoutKind = Literal["connect", "read", "total"]


class TabbyTimeoutError(TabbyError, TimeoutError):
    """A timeout fired; ``kind`` says which: connect, read (idle) or total."""

    code: ClassVar[ErrorCode] = "timeout"

    def __init__(self, message: str, *, kind: TimeoutKind, sent: bool = True) -> None:
        super().__init__(message)
        self.kind: TimeoutKind = kind
        self.sent = sent


class ResponseDecodeError(TabbyError):
    """The server answered 2xx with a body that does not have the expected shape."""

    code: ClassVar[ErrorCode] = "decode_error"


class StreamError(TabbyError):
    """The load stream ended or broke before the model's ``finished`` event."""

    code: ClassVar[ErrorCode] = "stream_error"


class ResponseTooLargeError(ResponseDecodeError, StreamError):
    """An answer (or one load-stream event) over ``max_response_bytes``; a StreamError too.

    ``limit`` is the cap that was passed, in bytes (counted after decompression).
    """

    code: ClassVar[ErrorCode] = "response_too_large"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class LoadFailedError(TabbyError):
    """The server reported a failed load inside the progress stream."""

    code: ClassVar[ErrorCode] = "load_failed"

    def __init__(self, message: str, *, trace: Any = None) -> None:
        super().__init__(message)
        self.trace = trace


class LoraLoadFailedError(TabbyError):
    """The server answered a LoRA load with adapters it did not apply.

    The answer is a 200 all the same; ``failure`` lists the adapters not
    applied (in request order) and ``success`` the ones applied.
    """

    code: ClassVar[ErrorCode] = "lora_load_failed"

    def __init__(
        self, message: str, *, success: tuple[str, ...] = (), failure: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.success = success
        self.failure = failure


class APIStatusError(TabbyError):
    """The server answered with an error status."""

    code: ClassVar[ErrorCode] = "http_error"

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

    code: ClassVar[ErrorCode] = "invalid_request"


class _KeyRefused(APIStatusError):
    """An answer refusing a key; ``reason`` says what the server said of it."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: Any = None,
        method: str = "",
        path: str = "",
        headers: dict[str, str] | None = None,
        reason: KeyProblem = "unknown",
    ) -> None:
        super().__init__(
            message, status=status, body=body, method=method, path=path, headers=headers
        )
        self.reason: KeyProblem = reason


class AuthenticationError(_KeyRefused):
    """401: the api key is missing (``reason == "missing"``) or wrong (``"invalid"``)."""

    code: ClassVar[ErrorCode] = "authentication_error"


class PermissionDeniedError(_KeyRefused):
    """The route needs the admin key, and the client did not send a valid one.

    The server answers 401 "Please provide an admin key" (``reason ==
    "missing"``) or "Invalid admin key" (``"invalid"``); for the user this is
    a permission problem, not a bad api key. A proxy's 403 has ``"unknown"``.
    """

    code: ClassVar[ErrorCode] = "permission_error"


class NotFoundError(APIStatusError):
    """404: the server does not have this route (an older or other server?)."""

    code: ClassVar[ErrorCode] = "not_found"


#: Which model an answer is about: the main ``model`` or the ``embedding`` model.
ModelKind = Literal["model", "embedding"]


class _AboutAModel(APIStatusError):
    """An answer about the main model or the embedding model; ``kind`` says which."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: Any = None,
        method: str = "",
        path: str = "",
        headers: dict[str, str] | None = None,
        kind: ModelKind = "model",
    ) -> None:
        super().__init__(
            message, status=status, body=body, method=method, path=path, headers=headers
        )
        self.kind: ModelKind = kind


class ModelNotFoundError(_AboutAModel, BadRequestError, NotFoundError):
    """The named model (or embedding model) has no folder on the server.

    The server says this with a 400 ("Could not find the model path..."),
    so it is a :class:`BadRequestError`; it is a :class:`NotFoundError` too, so
    ``except NotFoundError`` catches an unknown model. ``kind`` says which:
    the main ``"model"`` or an ``"embedding"`` model.
    """

    code: ClassVar[ErrorCode] = "not_found"


class PresetNotFoundError(BadRequestError, NotFoundError):
    """No sampler override preset has that name (the server says so with a 400)."""

    code: ClassVar[ErrorCode] = "not_found"


class TemplateNotFoundError(NotFoundError):
    """No prompt template has that name.

    The server answers a switch to an unknown template with a bare 500
    ("Internal Server Error"); the SDK then checks the server's template
    list, and raises this when the name is not in it. ``status`` and
    ``body`` are the server's 500.
    """

    code: ClassVar[ErrorCode] = "not_found"


class AlreadyLoadedError(BadRequestError):
    """400: the embedding model asked for is the one already loaded.

    Unlike the main model, whose repeated load is a no-op, the server refuses
    to load the loaded embedding model again. Nothing changed on the server.
    """

    code: ClassVar[ErrorCode] = "already_loaded"


class UnprocessableEntityError(APIStatusError):
    """422: the server's validation refused the body; ``errors`` lists the fields."""

    code: ClassVar[ErrorCode] = "validation_error"

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The validation entries (``loc``, ``msg``, ``type``) of the server's answer."""
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        return [e for e in detail if isinstance(e, dict)] if isinstance(detail, list) else []


class NoTemplateError(UnprocessableEntityError):
    """Chat messages cannot be tokenized: the loaded model has no prompt template.

    Switch one in (``client.templates.switch``) or load the model with
    ``prompt_template``.
    """

    code: ClassVar[ErrorCode] = "no_template"


class RateLimitError(APIStatusError):
    """429: too many requests (from a proxy in front of TabbyAPI)."""

    code: ClassVar[ErrorCode] = "rate_limited"


class ServerError(APIStatusError):
    """A 5xx answer other than "no model loaded"."""

    code: ClassVar[ErrorCode] = "server_error"


class ModelNotLoadedError(_AboutAModel):
    """503 "No models are currently loaded." (or the embedding variant).

    This is an answer about the server's state, not an outage: it is not a
    :class:`ServerError` and is never retried. ``kind`` says which: the main
    ``"model"`` or the ``"embedding"`` model. The server also says it about
    the main model while a load is running.
    """

    code: ClassVar[ErrorCode] = "model_not_loaded"


#: Errors whose old home was this module, kept for one release: name -> its
#: public home, ``module`` or ``module:NewName`` (the format of
#: ``_public.moved``, which this module cannot import: it imports nothing of
#: the package).
_MOVED: dict[str, str] = {
    "EnsureMismatchError": "tabby_async:ModelMismatchError",
    "StateMismatchError": "tabby_async",
    "VerificationError": "tabby_async.fleet",
    "NodeSkippedError": "tabby_async.fleet",
    "NodeCancelledError": "tabby_async.fleet",
    "FleetError": "tabby_async.fleet",
}


def __getattr__(name: str) -> Any:
    # Looked up by name at run time, never imported here: this module stays
    # the ground floor, which knows nothing above it.
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    where, _, new = home.partition(":")
    new = new or name
    warnings.warn(
        f"tabby_async.errors.{name} is deprecated: use {where}.{new}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(where), new)
