"""The emulated server's key rules, as pure functions of the request headers and the keys.

The real server has any number of *api* keys and one *admin* key:

- an api route takes ``x-api-key`` (an api key or the admin key) or, only when
  that header is absent or empty, ``Authorization: Bearer <key>`` (the scheme
  in any case); ``x-admin-key`` alone is not enough;
- an admin route takes ``x-admin-key`` or ``Authorization: Bearer <admin key>``;
  ``x-api-key`` holding the admin key is not enough;
- with auth disabled every request is admin.

``headers`` is a case-insensitive mapping, as aiohttp hands it over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from ._wire import (
    MSG_INVALID_ADMIN,
    MSG_INVALID_API,
    MSG_PROVIDE_ADMIN,
    MSG_PROVIDE_API,
)

__all__ = ["Denial", "Keys", "Permission", "check_admin", "check_api", "key_permission"]

#: Why a request is refused: ``(status, message)`` for a ``{"detail": message}`` body.
Denial = tuple[int, str]

#: What :func:`key_permission` finds: the key's level, or why there is none
#: (``"malformed"``: a lone ``Bearer``, which crashes the real server's lookup).
Permission = Literal["admin", "api", "missing", "invalid", "malformed"]

_DENY_NO_API: Denial = (401, MSG_PROVIDE_API)
_DENY_BAD_API: Denial = (401, MSG_INVALID_API)
_DENY_NO_ADMIN: Denial = (401, MSG_PROVIDE_ADMIN)
_DENY_BAD_ADMIN: Denial = (401, MSG_INVALID_ADMIN)


@dataclasses.dataclass(frozen=True, slots=True)
class Keys:
    """The server's keys: ``api_keys`` includes the admin key (it opens api routes too)."""

    enabled: bool
    admin_key: str
    api_keys: frozenset[str]


def _bearer_token(authorization: str) -> str | None:
    """The key of ``Authorization: Bearer <key>`` (scheme in any case), else ``None``."""
    parts = authorization.split(" ")
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def check_api(headers: Mapping[str, str], keys: Keys) -> Denial | None:
    """An api route's check: ``None`` lets the request through, else the 401."""
    if not keys.enabled:
        return None
    key = headers.get("x-api-key")
    if key:
        return None if key in keys.api_keys else _DENY_BAD_API
    authorization = headers.get("authorization")
    if authorization:
        return None if _bearer_token(authorization) in keys.api_keys else _DENY_BAD_API
    return _DENY_NO_API


def check_admin(headers: Mapping[str, str], keys: Keys) -> Denial | None:
    """An admin route's check: ``None`` lets the request through, else the 401."""
    if not keys.enabled:
        return None
    key = headers.get("x-admin-key")
    if key:
        return None if key == keys.admin_key else _DENY_BAD_ADMIN
    authorization = headers.get("authorization")
    if authorization:
        return None if _bearer_token(authorization) == keys.admin_key else _DENY_BAD_ADMIN
    return _DENY_NO_ADMIN


def key_permission(headers: Mapping[str, str], keys: Keys) -> Permission:
    """The level of the key a request carries, as the server's permission lookup finds it.

    The lookup takes the first present of ``x-admin-key``, ``x-api-key`` and
    ``Authorization`` (even an empty one), strips a leading ``Bearer`` and
    compares: the admin key is ``"admin"``, any other api key ``"api"``. It
    decides the admin or api view of the listings and answers
    ``/v1/auth/permission``.
    """
    if not keys.enabled:
        return "admin"
    key = headers.get("x-admin-key")
    if key is None:
        key = headers.get("x-api-key")
    if key is None:
        key = headers.get("authorization")
    if key is None:
        return "missing"
    if key.lower().startswith("bearer"):
        parts = key.split(" ")
        if len(parts) < 2:
            return "malformed"
        key = parts[1]
    if key == keys.admin_key:
        return "admin"
    if key in keys.api_keys:
        return "api"
    return "invalid"
