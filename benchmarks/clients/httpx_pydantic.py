"""httpx + pydantic (the stack most SDKs use); load streams through httpx-sse."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from pydantic import BaseModel

from benchmarks.clients.base import BenchClient, check


class ModelCardParameters(BaseModel):
    max_seq_len: int | None = None
    cache_size: int | None = None
    cache_mode: str | None = None
    rope_scale: float | None = None
    rope_alpha: float | None = None
    max_batch_size: int | None = None
    chunk_size: int | None = None
    prompt_template: str | None = None
    prompt_template_content: str | None = None
    use_vision: bool | None = None
    draft: ModelCard | None = None


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "tabbyAPI"
    logging: dict[str, Any] | None = None
    parameters: ModelCardParameters | None = None


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


class GenerationSettings(BaseModel):
    n_ctx: int


class ModelProps(BaseModel):
    total_slots: int
    chat_template: str
    default_generation_settings: GenerationSettings


class StreamError(BaseModel):
    message: str
    trace: str | None = None


class LoadEvent(BaseModel):
    model_type: str = ""
    module: int = 0
    modules: int = 0
    status: str = ""
    error: StreamError | None = None


class LoadRequest(BaseModel):
    model_name: str


class LoadFailed(RuntimeError):
    pass


class Client(BenchClient):
    name = "httpx_pydantic"

    async def start(self) -> None:
        limits = httpx.Limits(
            max_connections=self.cfg.pool_limit, max_keepalive_connections=self.cfg.pool_limit
        )
        self.http = httpx.AsyncClient(
            base_url=self.cfg.base_url,
            limits=limits,
            headers={"x-api-key": self.cfg.api_key},
            timeout=httpx.Timeout(300.0),
        )
        self.admin_headers = {"x-admin-key": self.cfg.admin_key}

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _get(self, path: str) -> bytes:
        resp = await self.http.get(path)
        resp.raise_for_status()
        return resp.content

    async def list_models(self) -> int:
        models = ModelList.model_validate_json(await self._get("/v1/model/list"))
        check(len(models.data) == self.cfg.models, "wrong model count")
        return 1

    async def get_model(self) -> int:
        card = ModelCard.model_validate_json(await self._get("/v1/model"))
        check(card.parameters is not None, "no parameters")
        return 1

    async def get_props(self) -> int:
        props = ModelProps.model_validate_json(await self._get("/props"))
        check(props.total_slots > 0, "no slots")
        return 1

    def _body(self) -> dict[str, Any]:
        return LoadRequest(model_name=self.cfg.model_name).model_dump(exclude_none=True)

    async def load_stream(self) -> int:
        events = 0
        done = False
        async with aconnect_sse(
            self.http, "POST", "/v1/model/load", json=self._body(), headers=self.admin_headers
        ) as source:
            source.response.raise_for_status()
            async for sse in source.aiter_sse():
                event = LoadEvent.model_validate_json(sse.data)
                events += 1
                if event.error is not None:
                    raise LoadFailed(event.error.message)
                if event.status == "finished" and event.model_type == "model":
                    done = True
        check(done, "stream ended without finished")
        return events

    async def open_stream(self, stack: AsyncExitStack) -> None:
        source = await stack.enter_async_context(
            aconnect_sse(
                self.http, "POST", "/v1/model/load", json=self._body(), headers=self.admin_headers
            )
        )
        source.response.raise_for_status()
        iterator = source.aiter_sse()
        sse = await iterator.__anext__()
        LoadEvent.model_validate_json(sse.data)
        # keep the iterator referenced while the stream is held open
        stack.push_async_callback(iterator.aclose)
