"""Every TabbyAPI route the SDK calls, as data: path, key, retry rule, call kind, decoder.

A new endpoint is one :class:`~tabby_async._route.Route` here and a two-line
method on its resource.
"""

from __future__ import annotations

import msgspec

from ._route import Route
from .types import (
    DownloadResponse,
    HealthResponse,
    HealthShape,
    ModelCard,
    ModelList,
    ModelLoadResponse,
    ModelPropsResponse,
    PermissionResponse,
)

_model_list = msgspec.json.Decoder(ModelList)
_model_card = msgspec.json.Decoder(ModelCard)

# --- models --------------------------------------------------------------------
LIST = Route("list", "GET", "/v1/model/list", "api", True, _model_list)
GET = Route("get", "GET", "/v1/model", "api", True, _model_card)
PROPS = Route("get_props", "GET", "/props", "api", True, msgspec.json.Decoder(ModelPropsResponse))
LIST_DRAFT = Route("list_draft", "GET", "/v1/model/draft/list", "api", True, _model_list)
# An event stream: read by LoadStream, not decoded here.
LOAD: Route[None] = Route("load", "POST", "/v1/model/load", "admin", False, None, "stream")
UNLOAD: Route[None] = Route("unload", "POST", "/v1/model/unload", "admin", False)
DOWNLOAD = Route(
    "download",
    "POST",
    "/v1/download",
    "admin",
    False,
    msgspec.json.Decoder(DownloadResponse),
    "silent",
)
LIST_EMBEDDING = Route(
    "list_embedding", "GET", "/v1/model/embedding/list", "api", True, _model_list
)
GET_EMBEDDING = Route("get_embedding", "GET", "/v1/model/embedding", "api", True, _model_card)
LOAD_EMBEDDING = Route(
    "load_embedding",
    "POST",
    "/v1/model/embedding/load",
    "admin",
    False,
    msgspec.json.Decoder(ModelLoadResponse),
    "silent",
)
UNLOAD_EMBEDDING: Route[None] = Route(
    "unload_embedding", "POST", "/v1/model/embedding/unload", "admin", False
)

# --- the server ------------------------------------------------------------------
# The server's own "unhealthy" 503 is an answer; a proxy's 503 is not.
HEALTH = Route(
    "health",
    "GET",
    "/health",
    "none",
    True,
    msgspec.json.Decoder(HealthResponse),
    ok_statuses=frozenset({503}),
    answer_shape=msgspec.json.Decoder(HealthShape),
)
PERMISSION = Route(
    "permission",
    "GET",
    "/v1/auth/permission",
    "api",
    True,
    msgspec.json.Decoder(PermissionResponse),
)
