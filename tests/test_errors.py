"""Mapping of the real server's error answers (PROTOCOL.md) to typed errors."""

from __future__ import annotations

import pytest

from tabby_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ModelNotFoundError,
    ModelNotLoadedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TabbyError,
    UnprocessableEntityError,
)
from tabby_async import _routes as R
from tabby_async._transport import status_error

ROPE_422 = (
    b'{"detail":[{"type":"float_parsing","loc":["body","rope_alpha","float"],'
    b'"msg":"Input should be a valid number, unable to parse string as a number",'
    b'"input":"fast"},{"type":"literal_error","loc":["body","rope_alpha","literal[\'auto\']"],'
    b'"msg":"Input should be \'auto\'","input":"fast","ctx":{"expected":"\'auto\'"}}]}'
)


@pytest.mark.parametrize(
    ("status", "body", "route", "cls", "code"),
    [
        (
            401,
            b'{"detail":"Please provide an API key"}',
            R.LIST,
            AuthenticationError,
            "authentication_error",
        ),
        (401, b'{"detail":"Invalid API key"}', R.GET, AuthenticationError, "authentication_error"),
        (
            401,
            b'{"detail":"Please provide an admin key"}',
            R.LOAD,
            PermissionDeniedError,
            "permission_error",
        ),
        (
            401,
            b'{"detail":"Invalid admin key"}',
            R.UNLOAD,
            PermissionDeniedError,
            "permission_error",
        ),
        (
            400,
            b'{"detail":"A model name was not provided for load."}',
            R.LOAD,
            BadRequestError,
            "invalid_request",
        ),
        (
            400,
            b'{"detail":"Could not find the model path for load. Check model name or config.yml?"}',
            R.LOAD,
            ModelNotFoundError,
            "not_found",
        ),
        (
            400,
            b'{"detail":"Could not find the embedding model path for load. Check model '
            b'name or config.yml?"}',
            R.LOAD_EMBEDDING,
            ModelNotFoundError,
            "not_found",
        ),
        (
            400,
            b'{"detail":"[Errno -2] Name or service not known"}',
            R.DOWNLOAD,
            BadRequestError,
            "invalid_request",
        ),
        (404, b'{"detail":"Not Found"}', R.PROPS, NotFoundError, "not_found"),
        (422, ROPE_422, R.LOAD, UnprocessableEntityError, "validation_error"),
        (429, b'{"detail":"slow down"}', R.LIST, RateLimitError, "rate_limited"),
        (
            503,
            b'{"detail":"No models are currently loaded."}',
            R.GET,
            ModelNotLoadedError,
            "model_not_loaded",
        ),
        (
            503,
            b'{"detail":"No embedding models are currently loaded."}',
            R.GET_EMBEDDING,
            ModelNotLoadedError,
            "model_not_loaded",
        ),
        (503, b'{"detail":"upstream down"}', R.GET, ServerError, "server_error"),
        (500, b"Internal Server Error", R.LIST, ServerError, "server_error"),
        (502, b"", R.LIST, ServerError, "server_error"),
        (418, b'{"detail":"teapot"}', R.LIST, APIStatusError, "http_error"),
    ],
)
def test_status_and_body_give_the_typed_error(
    status: int, body: bytes, route: R.Route, cls: type[APIStatusError], code: str
) -> None:
    err = status_error(status, body, route, has_admin_key=True)
    assert type(err) is cls
    assert err.code == code
    assert err.status == status
    assert isinstance(err, TabbyError)
    assert err.method == route.method and err.path == route.path


def test_validation_errors_are_listed_by_field() -> None:
    err = status_error(422, ROPE_422, R.LOAD, has_admin_key=True)
    assert isinstance(err, UnprocessableEntityError)
    assert [e["loc"][-1] for e in err.errors] == ["float", "literal['auto']"]
    assert "rope_alpha.float" in err.message


def test_permission_error_says_what_is_missing() -> None:
    err = status_error(
        401, b'{"detail":"Please provide an admin key"}', R.UNLOAD, has_admin_key=False
    )
    assert "unload needs the admin key" in err.message
    assert "no admin_key" in err.message


def test_redirect_is_not_followed_and_named() -> None:
    err = status_error(
        307, b"", R.LIST, has_admin_key=True, headers={"Location": "http://elsewhere/v1/model/list"}
    )
    assert "redirect to http://elsewhere" in err.message
