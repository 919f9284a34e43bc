"""Every TabbyAPI route the SDK calls, as in PROTOCOL.md's route table."""

from __future__ import annotations

from ._transport import Route

LIST = Route("list", "GET", "/v1/model/list", "api", idempotent=True)
GET = Route("get", "GET", "/v1/model", "api", idempotent=True)
PROPS = Route("get_props", "GET", "/props", "api", idempotent=True)
LIST_DRAFT = Route("list_draft", "GET", "/v1/model/draft/list", "api", idempotent=True)
LOAD = Route("load", "POST", "/v1/model/load", "admin", idempotent=False, long_running=True)
UNLOAD = Route("unload", "POST", "/v1/model/unload", "admin", idempotent=False)
DOWNLOAD = Route(
    "download", "POST", "/v1/download", "admin", idempotent=False, long_running=True
)
LIST_EMBEDDING = Route("list_embedding", "GET", "/v1/model/embedding/list", "api", idempotent=True)
GET_EMBEDDING = Route("get_embedding", "GET", "/v1/model/embedding", "api", idempotent=True)
LOAD_EMBEDDING = Route(
    "load_embedding",
    "POST",
    "/v1/model/embedding/load",
    "admin",
    idempotent=False,
    long_running=True,
)
UNLOAD_EMBEDDING = Route(
    "unload_embedding", "POST", "/v1/model/embedding/unload", "admin", idempotent=False
)
HEALTH = Route("health", "GET", "/health", "none", idempotent=True, ok_statuses=frozenset({503}))
PERMISSION = Route("permission", "GET", "/v1/auth/permission", "api", idempotent=True)
