"""openai-python: ``AsyncOpenAI(...).models.list()`` against ``/v1/models``."""

from __future__ import annotations

import openai

from benchmarks.clients.base import BenchClient, check


class Client(BenchClient):
    name = "openai"

    async def start(self) -> None:
        import httpx2  # openai's own HTTP stack; set the same pool limit as everyone

        limits = httpx2.Limits(
            max_connections=self.cfg.pool_limit, max_keepalive_connections=self.cfg.pool_limit
        )
        self.http = openai.DefaultAsyncHttpxClient(limits=limits)
        self.client = openai.AsyncOpenAI(
            base_url=self.cfg.base_url + "/v1",
            api_key=self.cfg.api_key,
            http_client=self.http,
            timeout=300.0,
        )

    async def aclose(self) -> None:
        await self.client.close()

    async def list_models(self) -> int:
        page = await self.client.models.list()
        check(len(page.data) == self.cfg.models, "wrong model count")
        return 1
