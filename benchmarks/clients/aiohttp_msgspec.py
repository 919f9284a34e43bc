"""Hand-written aiohttp + msgspec: what an expert writes without an SDK.

msgspec Structs for the shapes, one session, precomputed URLs, typed decoders;
the load stream is parsed line by line from aiohttp's StreamReader.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from benchmarks.clients.aiohttp_common import make_fleet_session, make_session
from benchmarks.clients.base import BenchClient, check


class ModelCardParameters(msgspec.Struct):
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


class ModelCard(msgspec.Struct):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "tabbyAPI"
    logging: dict[str, Any] | None = None
    parameters: ModelCardParameters | None = None


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"


class GenerationSettings(msgspec.Struct):
    n_ctx: int


class ModelProps(msgspec.Struct):
    total_slots: int
    chat_template: str
    default_generation_settings: GenerationSettings


class StreamError(msgspec.Struct):
    message: str
    trace: str | None = None


class LoadEvent(msgspec.Struct):
    model_type: str = ""
    module: int = 0
    modules: int = 0
    status: str = ""
    error: StreamError | None = None


class Health(msgspec.Struct):
    status: str
    issues: list[dict[str, Any]] = []


class Permission(msgspec.Struct):
    permission: str


class Detail(msgspec.Struct):
    detail: Any = None


class NodeStatus(msgspec.Struct):
    url: str
    health: Health
    permission: str | None
    model: ModelCard | None
    embedding_model: ModelCard | None


NOT_LOADED = ("No models are currently loaded.", "No embedding models are currently loaded.")


class LoadRequest(msgspec.Struct, omit_defaults=True):
    model_name: str


class LoadFailed(RuntimeError):
    pass


class Client(BenchClient):
    name = "aiohttp_msgspec"

    async def start(self) -> None:
        base = URL(self.cfg.base_url)
        self.session: aiohttp.ClientSession = make_session(self.cfg.pool_limit)
        self.api_headers = {"x-api-key": self.cfg.api_key}
        self.admin_headers = {
            "x-admin-key": self.cfg.admin_key,
            "Content-Type": "application/json",
        }
        self.url_list = base / "v1/model/list"
        self.url_get = base / "v1/model"
        self.url_props = base / "props"
        self.url_load = base / "v1/model/load"
        self.dec_list = msgspec.json.Decoder(ModelList)
        self.dec_card = msgspec.json.Decoder(ModelCard)
        self.dec_props = msgspec.json.Decoder(ModelProps)
        self.dec_event = msgspec.json.Decoder(LoadEvent)
        self.encoder = msgspec.json.Encoder()
        self.fleet: aiohttp.ClientSession | None = None
        if self.cfg.nodes:
            self.fleet = make_fleet_session(self.cfg.fleet_concurrency)
            self.dec_health = msgspec.json.Decoder(Health)
            self.dec_permission = msgspec.json.Decoder(Permission)
            self.dec_detail = msgspec.json.Decoder(Detail)
            probes = ("health", "v1/auth/permission", "v1/model", "v1/model/embedding")
            self.node_urls = [[URL(n) / p for p in probes] for n in self.cfg.nodes]

    async def aclose(self) -> None:
        await self.session.close()
        if self.fleet is not None:
            await self.fleet.close()

    async def _get(self, url: URL) -> bytes:
        async with self.session.get(url, headers=self.api_headers) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
        return body

    async def list_models(self) -> int:
        models = self.dec_list.decode(await self._get(self.url_list))
        check(len(models.data) == self.cfg.models, "wrong model count")
        return 1

    async def get_model(self) -> int:
        card = self.dec_card.decode(await self._get(self.url_get))
        check(card.parameters is not None, "no parameters")
        return 1

    async def get_props(self) -> int:
        props = self.dec_props.decode(await self._get(self.url_props))
        check(props.total_slots > 0, "no slots")
        return 1

    def _post_load(self) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        body = self.encoder.encode(LoadRequest(model_name=self.cfg.model_name))
        return self.session.post(self.url_load, data=body, headers=self.admin_headers)

    async def load_stream(self) -> int:
        events = 0
        done = False
        async with self._post_load() as resp:
            check(resp.status == 200, "load status")
            async for line in resp.content:  # one line at a time, split on b"\n"
                if not line.startswith(b"data:"):
                    continue  # blank separators and ": ping" comments
                event = self.dec_event.decode(line[5:])  # msgspec skips the whitespace
                events += 1
                if event.error is not None:
                    raise LoadFailed(event.error.message)
                if event.status == "finished" and event.model_type == "model":
                    done = True
        check(done, "stream ended without finished")
        return events

    async def open_stream(self, stack: AsyncExitStack) -> None:
        resp = await stack.enter_async_context(self._post_load())
        check(resp.status == 200, "load status")
        async for line in resp.content:
            if line.startswith(b"data:"):
                self.dec_event.decode(line[5:])
                break

    async def _fleet_card(self, url: URL) -> ModelCard | None:
        assert self.fleet is not None
        async with self.fleet.get(url, headers=self.api_headers) as resp:
            body = await resp.read()
            if resp.status == 503 and self.dec_detail.decode(body).detail in NOT_LOADED:
                return None
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
        return self.dec_card.decode(body)

    async def fleet_sweep(self) -> int:
        assert self.fleet is not None
        fleet = self.fleet
        sem = asyncio.Semaphore(self.cfg.fleet_concurrency)

        async def node(urls: list[URL]) -> NodeStatus:
            health_url, permission_url, model_url, embedding_url = urls
            async with sem:
                async with fleet.get(health_url) as resp:
                    health = self.dec_health.decode(await resp.read())
                async with fleet.get(permission_url, headers=self.api_headers) as resp:
                    permission = self.dec_permission.decode(await resp.read()).permission
                model = await self._fleet_card(model_url)
                embedding = await self._fleet_card(embedding_url)
            return NodeStatus(str(health_url.origin()), health, permission, model, embedding)

        results = await asyncio.gather(
            *(node(urls) for urls in self.node_urls), return_exceptions=True
        )
        ok = [r for r in results if isinstance(r, NodeStatus) and r.health.status == "healthy"]
        check(len(ok) == len(self.node_urls), "a node failed")
        return 1
