"""The emulated server's routes: ``{path: {method: handler}}``, one line per route.

Each handler belongs to its area (models, embeddings, downloads, LoRA,
templates, sampling, tokens, inference, the server's own routes), which holds the area's
state. Adding a route is a handler in its area and a line here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from aiohttp import web

from ._download_routes import DownloadRoute
from ._embedding_routes import EmbeddingRoutes
from ._inference_routes import InferenceRoutes
from ._lora_routes import LoraRoutes
from ._model_routes import ModelRoutes
from ._sampling_routes import SamplingRoutes
from ._server_routes import ServerRoutes
from ._template_routes import TemplateRoutes
from ._token_routes import TokenRoutes

__all__ = ["Areas", "Handler", "route_table"]

#: A route's handler: the request and its body (already read) -> the response.
Handler = Callable[[web.BaseRequest, bytes], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True, slots=True)
class Areas:
    """The route areas of one emulator."""

    server: ServerRoutes
    model: ModelRoutes
    embedding: EmbeddingRoutes
    download: DownloadRoute
    lora: LoraRoutes
    template: TemplateRoutes
    sampling: SamplingRoutes
    tokens: TokenRoutes
    inference: InferenceRoutes


def route_table(a: Areas) -> dict[str, dict[str, Handler]]:
    """Every route of the emulated server; Starlette-style exact paths."""
    return {
        "/health": {"GET": a.server.health},
        "/.well-known/serviceinfo": {"GET": a.server.service_info},
        "/v1/auth/permission": {"GET": a.server.permission},
        "/v1/models": {"GET": a.model.list},
        "/v1/model/list": {"GET": a.model.list},
        "/v1/model": {"GET": a.model.get},
        "/props": {"GET": a.model.props},
        "/v1/model/draft/list": {"GET": a.model.list_drafts},
        "/v1/model/load": {"POST": a.model.load},
        "/v1/model/unload": {"POST": a.model.unload},
        "/v1/download": {"POST": a.download.download},
        "/v1/model/embedding/list": {"GET": a.embedding.list},
        "/v1/model/embedding": {"GET": a.embedding.get},
        "/v1/model/embedding/load": {"POST": a.embedding.load},
        "/v1/model/embedding/unload": {"POST": a.embedding.unload},
        "/v1/loras": {"GET": a.lora.list},
        "/v1/lora/list": {"GET": a.lora.list},
        "/v1/lora": {"GET": a.lora.active},
        "/v1/lora/load": {"POST": a.lora.load},
        "/v1/lora/unload": {"POST": a.lora.unload},
        "/v1/templates": {"GET": a.template.list},
        "/v1/template/list": {"GET": a.template.list},
        "/v1/template/switch": {"POST": a.template.switch},
        "/v1/template/unload": {"POST": a.template.unload},
        "/v1/sampling/overrides": {"GET": a.sampling.list},
        "/v1/sampling/override/list": {"GET": a.sampling.list},
        "/v1/sampling/override/switch": {"POST": a.sampling.switch},
        "/v1/sampling/override/unload": {"POST": a.sampling.unload},
        "/v1/token/encode": {"POST": a.tokens.encode},
        "/v1/token/decode": {"POST": a.tokens.decode},
        "/v1/completions": {"POST": a.inference.completions},
        "/v1/chat/completions": {"POST": a.inference.chat},
        "/v1/embeddings": {"POST": a.inference.embeddings},
    }
