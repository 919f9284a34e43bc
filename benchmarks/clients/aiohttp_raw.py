"""The floor: aiohttp, one session, read the bytes, decode nothing."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import aiohttp
from yarl import URL

from benchmarks.clients.aiohttp_common import make_fleet_session, make_session
from benchmarks.clients.base import BenchClient, check


class Client(BenchClient):
    name = "aiohttp_raw"

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
        self.load_body = b'{"model_name":"%s"}' % self.cfg.model_name.encode()
        self.fleet: aiohttp.ClientSession | None = None
        if self.cfg.nodes:
            self.fleet = make_fleet_session(self.cfg.fleet_concurrency)
            probes = ("health", "v1/auth/permission", "v1/model", "v1/model/embedding")
            self.node_urls = [[URL(n) / p for p in probes] for n in self.cfg.nodes]

    async def aclose(self) -> None:
        await self.session.close()
        if self.fleet is not None:
            await self.fleet.close()

    async def _get(self, url: URL) -> int:
        async with self.session.get(url, headers=self.api_headers) as resp:
            body = await resp.read()
        check(resp.status == 200 and len(body) > 0, "empty body")
        return 1

    async def list_models(self) -> int:
        return await self._get(self.url_list)

    async def get_model(self) -> int:
        return await self._get(self.url_get)

    async def get_props(self) -> int:
        return await self._get(self.url_props)

    async def load_stream(self) -> int:
        async with self.session.post(
            self.url_load, data=self.load_body, headers=self.admin_headers
        ) as resp:
            check(resp.status == 200, "load status")
            async for _chunk in resp.content.iter_any():
                pass
        return self.cfg.events  # bytes only: the events are counted, not parsed

    async def open_stream(self, stack: AsyncExitStack) -> None:
        resp = await stack.enter_async_context(
            self.session.post(self.url_load, data=self.load_body, headers=self.admin_headers)
        )
        check(resp.status == 200, "load status")
        first = await resp.content.readany()
        check(len(first) > 0, "no first event")

    async def fleet_sweep(self) -> int:
        assert self.fleet is not None
        fleet = self.fleet
        sem = asyncio.Semaphore(self.cfg.fleet_concurrency)

        async def node(urls: list[URL]) -> int:
            async with sem:
                for url in urls:
                    async with fleet.get(url, headers=self.api_headers) as resp:
                        await resp.read()
            return 1

        done = await asyncio.gather(*(node(urls) for urls in self.node_urls))
        check(sum(done) == len(self.node_urls), "a node failed")
        return 1
