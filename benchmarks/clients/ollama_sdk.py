"""ollama-python: ``AsyncClient(host=...).list()`` against ``/api/tags`` (same K models)."""

from __future__ import annotations

import httpx
import ollama

from benchmarks.clients.base import BenchClient, check


class Client(BenchClient):
    name = "ollama"

    async def start(self) -> None:
        limits = httpx.Limits(
            max_connections=self.cfg.pool_limit, max_keepalive_connections=self.cfg.pool_limit
        )
        self.client = ollama.AsyncClient(host=self.cfg.base_url, limits=limits, timeout=300.0)

    async def aclose(self) -> None:
        await self.client._client.aclose()  # ollama exposes no public close

    async def list_models(self) -> int:
        listing = await self.client.list()
        check(len(listing.models) == self.cfg.models, "wrong model count")
        return 1
