"""tabby_async, the SDK under test, over a caller-owned session (same pool as the others)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from benchmarks.clients.aiohttp_common import make_session
from benchmarks.clients.base import BenchClient, check
from tabby_async import AsyncTabbyClient, ModelLoadRequest


class Client(BenchClient):
    name = "tabby_async"

    async def start(self) -> None:
        self.session: aiohttp.ClientSession = make_session(self.cfg.pool_limit)
        self.client = AsyncTabbyClient(
            base_url=self.cfg.base_url,
            api_key=self.cfg.api_key,
            admin_key=self.cfg.admin_key,
            session=self.session,
        )
        await self.client.__aenter__()
        self.request = ModelLoadRequest(model_name=self.cfg.model_name)
        self.fleet: Any = None
        if self.cfg.nodes:
            from tabby_async.fleet import NodeSpec, TabbyFleet

            specs = [
                NodeSpec(f"node-{i:03d}", url, api_key=self.cfg.api_key)
                for i, url in enumerate(self.cfg.nodes)
            ]
            # The fleet builds its own pool: TCPConnector(limit=max(100, 4 * C),
            # limit_per_host=8), mirrored by aiohttp_common.make_fleet_session.
            self.fleet = TabbyFleet(specs, max_concurrency=self.cfg.fleet_concurrency)
            await self.fleet.__aenter__()

    async def aclose(self) -> None:
        await self.client.__aexit__(None, None, None)
        await self.session.close()
        if self.fleet is not None:
            await self.fleet.aclose()

    async def list_models(self) -> int:
        models = await self.client.models.list()
        check(len(models.data) == self.cfg.models, "wrong model count")
        return 1

    async def get_model(self) -> int:
        card = await self.client.models.get()
        check(card.parameters is not None, "no parameters")
        return 1

    async def get_props(self) -> int:
        props = await self.client.models.get_props()
        check(props.total_slots > 0, "no slots")
        return 1

    async def load_stream(self) -> int:
        events = 0
        done = False
        async with self.client.models.load_stream(self.request) as stream:
            async for event in stream:
                events += 1
                if event.status == "finished" and event.model_type == "model":
                    done = True
        check(done, "stream ended without finished")
        return events

    async def open_stream(self, stack: AsyncExitStack) -> None:
        stream = await stack.enter_async_context(self.client.models.load_stream(self.request))
        iterator = aiter(stream)
        await anext(iterator)

    async def fleet_sweep(self) -> int:
        result = await self.fleet.status()
        healthy = [s for s in result.values.values() if s.health is not None and s.health.healthy]
        check(result.ok and len(healthy) == len(self.cfg.nodes), "a node failed")
        return 1
