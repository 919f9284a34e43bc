"""Every TabbyAPI route the SDK calls, as data: path, key, retry rule, call kind, decoder.

A new endpoint is one ``Route`` here and a two-line
method on its resource.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ._route import Route
from .types import (
    DownloadResponse,
    LoraList,
    LoraLoadResponse,
    ModelCard,
    ModelList,
    ModelLoadResponse,
    ModelPropsResponse,
    PermissionResponse,
    SamplerOverrides,
    ServiceInfo,
    TemplateList,
    TokenDecodeResponse,
    TokenEncodeResponse,
)
from .types._server import HealthShape, UnhealthyShape

_model_list = msgspec.json.Decoder(ModelList)
_model_card = msgspec.json.Decoder(ModelCard)


class _NoEmbeddingModel(msgspec.Struct, frozen=True):
    """The server's 503 answer when no embedding model is loaded."""

    detail: Literal["No embedding models are currently loaded."]


# --- models --------------------------------------------------------------------
LIST = Route("list", "GET", "/v1/model/list", "api", True, _model_list)
GET = Route("get", "GET", "/v1/model", "api", True, _model_card)
PROPS = Route("get_props", "GET", "/props", "api", True, msgspec.json.Decoder(ModelPropsResponse))
LIST_DRAFT = Route("list_draft", "GET", "/v1/model/draft/list", "api", True, _model_list)
# With api permission the draft listing holds only the loaded draft.
LOADED_DRAFT = Route("loaded_draft", "GET", "/v1/model/draft/list", "api_key", True, _model_list)
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
# The same, with "no embedding model loaded" as None (no error built).
LOADED_EMBEDDING = Route(
    "loaded_embedding",
    "GET",
    "/v1/model/embedding",
    "api",
    True,
    _model_card,
    absent=(503, msgspec.json.Decoder(_NoEmbeddingModel)),
)
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
# The server's own "unhealthy" 503 is an answer; a proxy's 503 is not. Both
# answers decode strictly (client.health() turns them into a HealthResponse):
# a 200 of another shape is not TabbyAPI either.
HEALTH = Route(
    "health",
    "GET",
    "/health",
    "none",
    True,
    msgspec.json.Decoder(HealthShape),
    ok_statuses=frozenset({503}),
    answer_shape=msgspec.json.Decoder(UnhealthyShape),
)
PERMISSION = Route(
    "permission",
    "GET",
    "/v1/auth/permission",
    "api",
    True,
    msgspec.json.Decoder(PermissionResponse),
)
# The permission of the plain api key itself (the admin key is not sent).
API_KEY_PERMISSION = Route(
    "api_key_permission",
    "GET",
    "/v1/auth/permission",
    "api_key",
    True,
    msgspec.json.Decoder(PermissionResponse),
)
SERVICE_INFO = Route(
    "service_info",
    "GET",
    "/.well-known/serviceinfo",
    "none",
    True,
    msgspec.json.Decoder(ServiceInfo),
)

# --- LoRA adapters ---------------------------------------------------------------
_lora_list = msgspec.json.Decoder(LoraList)
LORA_LIST = Route("lora_list", "GET", "/v1/lora/list", "api", True, _lora_list)
LORA_ACTIVE = Route("lora_active", "GET", "/v1/lora", "api", True, _lora_list)
# Silent: applying adapters may take a while, and the answer comes at the end.
LORA_LOAD = Route(
    "lora_load",
    "POST",
    "/v1/lora/load",
    "admin",
    False,
    msgspec.json.Decoder(LoraLoadResponse),
    "silent",
)
LORA_UNLOAD: Route[None] = Route("lora_unload", "POST", "/v1/lora/unload", "admin", False)

# --- prompt templates --------------------------------------------------------------
TEMPLATE_LIST = Route(
    "template_list", "GET", "/v1/template/list", "api", True, msgspec.json.Decoder(TemplateList)
)
TEMPLATE_SWITCH: Route[None] = Route(
    "template_switch", "POST", "/v1/template/switch", "admin", False
)
TEMPLATE_UNLOAD: Route[None] = Route(
    "template_unload", "POST", "/v1/template/unload", "admin", False
)

# --- sampler overrides ---------------------------------------------------------------
SAMPLING_LIST = Route(
    "sampling_list",
    "GET",
    "/v1/sampling/override/list",
    "api",
    True,
    msgspec.json.Decoder(SamplerOverrides),
)
SAMPLING_SWITCH: Route[None] = Route(
    "sampling_switch", "POST", "/v1/sampling/override/switch", "admin", False
)
SAMPLING_UNLOAD: Route[None] = Route(
    "sampling_unload", "POST", "/v1/sampling/override/unload", "admin", False
)

# --- tokens: POSTs that only compute, so safe to send again --------------------------
TOKEN_ENCODE = Route(
    "token_encode",
    "POST",
    "/v1/token/encode",
    "api",
    True,
    msgspec.json.Decoder(TokenEncodeResponse),
)
TOKEN_DECODE = Route(
    "token_decode",
    "POST",
    "/v1/token/decode",
    "api",
    True,
    msgspec.json.Decoder(TokenDecodeResponse),
)

# --- inference: passed through raw (the gateway); never sent twice ----------------
# Only the plain api key: inference never needs the admin key, so it is not sent.
COMPLETIONS: Route[None] = Route(
    "completions", "POST", "/v1/completions", "api_key", False, None, "stream"
)
CHAT_COMPLETIONS: Route[None] = Route(
    "chat_completions", "POST", "/v1/chat/completions", "api_key", False, None, "stream"
)
EMBEDDINGS: Route[None] = Route(
    "embeddings", "POST", "/v1/embeddings", "api_key", False, None, "silent"
)
