"""The emulator's key rules as tables: the pure functions behind every route's key check.

They must give the real server's answers: api routes take ``x-api-key`` (an api
key or the admin key) or, when that header is absent or empty, ``Authorization:
Bearer`` (any case); admin routes take ``x-admin-key`` or ``Bearer <admin key>``
and never ``x-api-key``; with auth off everything passes as admin. The
permission lookup (listings' admin view, ``/v1/auth/permission``) takes the
first present of ``x-admin-key``, ``x-api-key``, ``Authorization``.
"""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from tabby_async.testing._auth import (
    Denial,
    Keys,
    Permission,
    check_admin,
    check_api,
    key_permission,
)

KEYS = Keys(enabled=True, admin_key="A", api_keys=frozenset({"K1", "K2", "A"}))
OFF = Keys(enabled=False, admin_key="A", api_keys=frozenset({"K1", "A"}))

NO_API: Denial = (401, "Please provide an API key")
BAD_API: Denial = (401, "Invalid API key")
NO_ADMIN: Denial = (401, "Please provide an admin key")
BAD_ADMIN: Denial = (401, "Invalid admin key")


def headers(**given: str) -> CIMultiDict[str]:
    """Request headers as aiohttp hands them over (names case-insensitive)."""
    return CIMultiDict({name.replace("_", "-"): value for name, value in given.items()})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, NO_API),
        ({"x_api_key": "K1"}, None),
        ({"x_api_key": "K2"}, None),  # any of several api keys
        ({"x_api_key": "A"}, None),  # the admin key opens api routes too
        ({"X_API_KEY": "K1"}, None),  # header names in any case
        ({"x_api_key": "nope"}, BAD_API),
        ({"authorization": "Bearer K1"}, None),
        ({"authorization": "bearer K1"}, None),  # the scheme in any case
        ({"authorization": "BEARER A"}, None),
        ({"authorization": "Bearer nope"}, BAD_API),
        ({"authorization": "Bearer"}, BAD_API),  # Bearer with no token
        ({"authorization": "Bearer "}, BAD_API),
        ({"authorization": "Basic K1"}, BAD_API),
        ({"authorization": "K1"}, BAD_API),
        ({"x_admin_key": "A"}, NO_API),  # the admin header alone is not enough
        ({"x_admin_key": "A", "authorization": "Bearer K1"}, None),
        # x-api-key wins: Authorization is not looked at when it is present...
        ({"x_api_key": "nope", "authorization": "Bearer K1"}, BAD_API),
        ({"x_api_key": "K1", "authorization": "Bearer nope"}, None),
        # ...unless it is empty.
        ({"x_api_key": "", "authorization": "Bearer K1"}, None),
        ({"x_api_key": ""}, NO_API),
    ],
)
def test_api_route_keys(given: dict[str, str], expected: Denial | None) -> None:
    assert check_api(headers(**given), KEYS) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, NO_ADMIN),
        ({"x_admin_key": "A"}, None),
        ({"x_admin_key": "K1"}, BAD_ADMIN),
        ({"x_admin_key": "nope"}, BAD_ADMIN),
        ({"x_api_key": "A"}, NO_ADMIN),  # x-api-key never opens an admin route
        ({"x_api_key": "K1"}, NO_ADMIN),
        ({"authorization": "Bearer A"}, None),
        ({"authorization": "bEaReR A"}, None),
        ({"authorization": "Bearer K1"}, BAD_ADMIN),  # an api key: a permission problem
        ({"authorization": "Bearer"}, BAD_ADMIN),
        ({"authorization": "Token A"}, BAD_ADMIN),
        ({"x_admin_key": "nope", "authorization": "Bearer A"}, BAD_ADMIN),
        ({"x_admin_key": "A", "authorization": "Bearer nope"}, None),
        ({"x_admin_key": "", "authorization": "Bearer A"}, None),
        ({"x_api_key": "A", "authorization": "Bearer A"}, None),
    ],
)
def test_admin_route_keys(given: dict[str, str], expected: Denial | None) -> None:
    assert check_admin(headers(**given), KEYS) == expected


@pytest.mark.parametrize(
    "given",
    [{}, {"x_api_key": "nope"}, {"x_admin_key": "nope"}, {"authorization": "Bearer"}],
)
def test_auth_off_lets_everything_through_as_admin(given: dict[str, str]) -> None:
    assert check_api(headers(**given), OFF) is None
    assert check_admin(headers(**given), OFF) is None
    assert key_permission(headers(**given), OFF) == "admin"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, "missing"),
        ({"x_admin_key": "A"}, "admin"),
        ({"x_api_key": "A"}, "admin"),  # the admin key in the api header: admin view
        ({"authorization": "Bearer A"}, "admin"),
        ({"x_api_key": "K1"}, "api"),
        ({"x_api_key": "K2"}, "api"),
        ({"authorization": "bearer K1"}, "api"),
        ({"x_api_key": "nope"}, "invalid"),
        ({"x_admin_key": "K1"}, "api"),  # the lookup only compares values
        # x-admin-key first, even when x-api-key is valid: the listings' 500.
        ({"x_admin_key": "nope", "x_api_key": "K1"}, "invalid"),
        ({"x_api_key": "K1", "authorization": "Bearer A"}, "api"),
        ({"x_api_key": "", "authorization": "Bearer A"}, "invalid"),  # present, if empty
        ({"authorization": "Bearer"}, "malformed"),  # a lone Bearer crashes the lookup
        ({"authorization": "Bearer K1 extra"}, "api"),
        ({"authorization": "K1"}, "api"),  # no scheme: the value itself
    ],
)
def test_key_permission(given: dict[str, str], expected: Permission) -> None:
    assert key_permission(headers(**given), KEYS) == expected
