"""The gateway over emulated nodes: routing, loads on demand, queues, by what the nodes saw."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tabby_async.testing import TabbyEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import guarded, run_gateway, started

MODELS = ["m1", "m2", "m3", "org/nested/4.0bpw"]
CATALOG = """
[models.m1]
[models.m2]
[models.m3]
"""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def node(factory: EmulatorFactory, **kwargs: Any) -> TabbyEmulator:
    """An emulated node with the test models on disk, none loaded."""
    return await factory(models=MODELS, reply_tokens=3, **kwargs)


def chat(model: str, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        **extra,
    }


def loads(server: TabbyEmulator) -> list[str]:
    """The folders the node was asked to load, in order."""
    return [r.body["model_name"] for r in server.requests if r.path == "/v1/model/load"]


def unloads(server: TabbyEmulator) -> int:
    return server.count("POST", "/v1/model/unload")


def forwarded(server: TabbyEmulator, path: str = "/v1/completions") -> list[Any]:
    return [r.body for r in server.requests if r.path == path]


async def complete(
    http: aiohttp.ClientSession, url: str, model: str, **extra: Any
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    body = {"model": model, "prompt": "hello", "max_tokens": 3, **extra}
    async with http.post(url + "/v1/completions", json=body) as r:
        data = await r.json(content_type=None)
        return r.status, data, r.headers


async def test_a_cold_model_is_loaded_on_demand_and_answers(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await node(tabby_emulator_factory)
    async with run_gateway({"a": a}, CATALOG) as (url, _):
        status, data, _ = await guarded(complete(http, url, "m1"))
    assert status == 200
    assert data["choices"][0]["text"].startswith("m1:1 ")
    assert loads(a) == ["m1"]
    # The forwarded body names the folder; the rest of it is the client's.
    assert forwarded(a) == [{"model": "m1", "prompt": "hello", "max_tokens": 3}]


async def test_waiting_requests_share_one_load_and_are_released_together(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await node(tabby_emulator_factory)
    async with run_gateway({"a": a}, CATALOG) as (url, _):
        answers = await guarded(asyncio.gather(*(complete(http, url, "m2") for _ in range(6))))
    assert [s for s, _, _ in answers] == [200] * 6
    assert all(d["choices"][0]["text"].startswith("m2:1 ") for _, d, _ in answers)
    assert loads(a) == ["m2"]


async def test_a_loaded_model_goes_to_the_node_with_the_fewest_requests_in_flight(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await node(tabby_emulator_factory, token_delay=0.05)
    b = await node(tabby_emulator_factory, token_delay=0.05)
    a.preload("m1")
    b.preload("m1")
    catalog = "[models.m1]\nmax_replicas = 2\n"
    async with run_gateway({"a": a, "b": b}, catalog) as (url, _):
        first = asyncio.ensure_future(complete(http, url, "m1", max_tokens=20))
        await guarded(started([a, b], 1))
        second = asyncio.ensure_future(complete(http, url, "m1", max_tokens=20))
        await guarded(started([a, b], 2))
        await guarded(asyncio.gather(first, second))
    # One each: the second went where nothing was running.
    assert a.generations.stats().started == 1
    assert b.generations.stats().started == 1
    assert loads(a) == loads(b) == []
