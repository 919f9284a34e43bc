"""The gateway over emulated nodes: routing, loads on demand, queues, by what the nodes saw."""

from __future__ import annotations

import asyncio

import aiohttp

from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import (
    forwarded,
    gateway_node,
    guarded,
    node_loads,
    post_completion,
    run_gateway,
    started,
)

CATALOG = """
[models.m1]
[models.m2]
[models.m3]
"""


async def test_a_cold_model_is_loaded_on_demand_and_answers(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    async with run_gateway({"a": a}, CATALOG) as (url, _):
        status, data, _ = await guarded(post_completion(http, url, "m1"))
    assert status == 200
    assert data["choices"][0]["text"].startswith("m1:1 ")
    assert node_loads(a) == ["m1"]
    # The forwarded body names the folder; the rest of it is the client's.
    assert forwarded(a) == [{"model": "m1", "prompt": "hello", "max_tokens": 3}]


async def test_waiting_requests_share_one_load_and_are_released_together(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    async with run_gateway({"a": a}, CATALOG) as (url, _):
        answers = await guarded(
            asyncio.gather(*(post_completion(http, url, "m2") for _ in range(6)))
        )
    assert [s for s, _, _ in answers] == [200] * 6
    assert all(d["choices"][0]["text"].startswith("m2:1 ") for _, d, _ in answers)
    assert node_loads(a) == ["m2"]


async def test_a_loaded_model_goes_to_the_node_with_the_fewest_requests_in_flight(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory, token_delay=0.05)
    b = await gateway_node(tabby_emulator_factory, token_delay=0.05)
    a.preload("m1")
    b.preload("m1")
    catalog = "[models.m1]\nmax_replicas = 2\n"
    async with run_gateway({"a": a, "b": b}, catalog) as (url, _):
        first = asyncio.ensure_future(post_completion(http, url, "m1", max_tokens=20))
        await guarded(started([a, b], 1))
        second = asyncio.ensure_future(post_completion(http, url, "m1", max_tokens=20))
        await guarded(started([a, b], 2))
        await guarded(asyncio.gather(first, second))
    # One each: the second went where nothing was running.
    assert a.generations.stats().started == 1
    assert b.generations.stats().started == 1
    assert node_loads(a) == node_loads(b) == []
