"""Swaps, drains, TTL, pinned models, replicas and back-off, judged by what the nodes saw."""

from __future__ import annotations

import asyncio

import aiohttp

from tabby_async.testing import EmulatedModel
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import (
    gateway_node,
    guarded,
    node_loads,
    node_unloads,
    post_completion,
    run_gateway,
    started,
    stream_events,
)

THREE = "[models.m1]\n[models.m2]\n[models.m3]\n"


def streamed(model: str, max_tokens: int) -> dict[str, object]:
    return {"model": model, "prompt": "hi", "max_tokens": max_tokens, "stream": True}


async def test_a_swap_waits_for_the_running_requests_of_the_old_model(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory, token_delay=0.02, reply_tokens=100)
    a.preload("m1")
    async with run_gateway({"a": a}, THREE) as (url, gateway):
        async with http.post(url + "/v1/completions", json=streamed("m1", 25)) as running:
            await guarded(started([a], 1))
            other = asyncio.ensure_future(post_completion(http, url, "m2"))
            await guarded(gateway.wait_for(lambda g: g.queued("m2") == 1))
            # The m1 answer keeps flowing while m2 waits: nothing is loaded over it.
            first = await guarded(running.content.readline())
            assert first.startswith(b"data: ")
            assert node_loads(a) == []
            events = await guarded(stream_events(running))
        status, data, _ = await guarded(other)
    assert events[-1] == "[DONE]"
    assert a.generations.stats("m1").finished == 1
    assert a.generations.stats().cancelled == 0
    assert status == 200 and data["choices"][0]["text"].startswith("m2:1 ")
    assert node_loads(a) == ["m2"]


async def test_after_the_drain_timeout_the_swap_goes_ahead_and_the_stuck_stream_ends_in_an_error(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    # An unload cancels the running generation; the server then keeps its
    # stream open with pings only, which the stall bound ends.
    a = await gateway_node(
        tabby_emulator_factory, token_delay=0.05, ping_interval=0.02, reply_tokens=10_000
    )
    a.preload("m1")
    catalog = THREE + "[gateway]\ndrain_timeout = 0.2\nstall_timeout = 0.3\n"
    async with run_gateway({"a": a}, catalog) as (url, _):
        async with http.post(url + "/v1/completions", json=streamed("m1", 10_000)) as running:
            await guarded(started([a], 1))
            other = asyncio.ensure_future(post_completion(http, url, "m2"))
            events = await guarded(stream_events(running))
        status, _, _ = await guarded(other)
    assert status == 200
    assert a.generations.stats("m1").cancelled == 1
    assert events[-1]["error"]["code"] == "upstream_error"
    assert "no token" in events[-1]["error"]["message"]
    assert node_loads(a) == ["m2"]


async def test_a_model_with_a_ttl_is_unloaded_once_idle_that_long(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    catalog = "[models.m1]\nttl = 0.2\n[models.m2]\n"
    async with run_gateway({"a": a}, catalog) as (url, gateway):
        status, _, _ = await guarded(post_completion(http, url, "m1"))
        assert status == 200
        await guarded(gateway.wait_for(lambda g: g.nodes["a"].slots["model"].model is None))
        metrics = await (await http.get(url + "/metrics")).text()
    assert node_unloads(a) == 1
    assert a.loaded is None
    assert 'tabby_gateway_swaps_total{node="a",reason="ttl"} 1.0' in metrics


async def test_a_pinned_model_is_loaded_at_start_and_never_evicted(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    catalog = "[models.m1]\npinned = true\nttl = 0.05\n[models.m2]\n"
    async with run_gateway({"a": a}, catalog) as (url, gateway):
        await guarded(gateway.wait_for(lambda g: g.nodes["a"].holds("m1", "model")))
        status, data, headers = await guarded(post_completion(http, url, "m2"))
        assert (await guarded(post_completion(http, url, "m1")))[0] == 200
    assert status == 503 and data["error"]["code"] == "no_capacity"
    assert int(headers["Retry-After"]) >= 1
    assert node_loads(a) == ["m1"]
    assert node_unloads(a) == 0  # not evicted, and no TTL for a pinned model


async def test_the_least_recently_used_idle_model_is_the_one_evicted(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    b = await gateway_node(tabby_emulator_factory)
    a.preload("m1")
    b.preload("m2")
    async with run_gateway({"a": a, "b": b}, THREE) as (url, _):
        assert (await guarded(post_completion(http, url, "m2")))[0] == 200
        assert (await guarded(post_completion(http, url, "m1")))[0] == 200  # m2 is older now
        status, data, _ = await guarded(post_completion(http, url, "m3"))
    assert status == 200 and data["choices"][0]["text"].startswith("m3:1 ")
    assert node_loads(a) == [] and node_loads(b) == ["m3"]


async def test_max_replicas_bounds_the_loads_of_one_model(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    slow = [EmulatedModel("m1", delay=0.05)]
    a = await gateway_node(tabby_emulator_factory, models=slow)
    b = await gateway_node(tabby_emulator_factory, models=slow)
    async with run_gateway({"a": a, "b": b}, "[models.m1]\n") as (url, _):
        answers = await guarded(
            asyncio.gather(*(post_completion(http, url, "m1") for _ in range(5)))
        )
    assert [s for s, _, _ in answers] == [200] * 5
    assert len(node_loads(a) + node_loads(b)) == 1


async def test_a_second_replica_is_loaded_while_requests_wait_and_a_node_is_free(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    slow = [EmulatedModel("m1", delay=0.05)]
    a = await gateway_node(tabby_emulator_factory, models=slow)
    b = await gateway_node(tabby_emulator_factory, models=slow)
    catalog = "[models.m1]\nmax_replicas = 2\n"
    async with run_gateway({"a": a, "b": b}, catalog) as (url, gateway):
        answers = await guarded(
            asyncio.gather(*(post_completion(http, url, "m1") for _ in range(5)))
        )
        assert sorted(gateway.replicas("m1", "model")) == ["a", "b"]
    assert [s for s, _, _ in answers] == [200] * 5
    assert node_loads(a) == node_loads(b) == ["m1"]


async def test_a_failed_load_answers_its_waiters_502_and_the_node_backs_off(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    bad = EmulatedModel("bad", delay=0.05, fail_at=0, fail_message="out of memory")
    a = await gateway_node(tabby_emulator_factory, models=[bad])
    catalog = '[models.bad]\nnodes = ["a"]\n'
    async with run_gateway({"a": a}, catalog) as (url, _):
        waiting = await guarded(
            asyncio.gather(*(post_completion(http, url, "bad") for _ in range(3)))
        )
        during = await guarded(post_completion(http, url, "bad"))
    for status, data, _ in waiting:
        assert status == 502
        assert data["error"]["code"] == "load_failed"
        assert "'bad'" in data["error"]["message"] and "'a'" in data["error"]["message"]
    status, data, headers = during
    assert status == 503 and data["error"]["code"] == "no_capacity"
    assert int(headers["Retry-After"]) > 1  # what is left of the back-off
    assert node_loads(a) == ["bad"]  # one load; none during the back-off


async def test_during_a_back_off_the_model_goes_to_another_node(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(
        tabby_emulator_factory, models=[EmulatedModel("m1", fail_at=0, delay=0.01)]
    )
    b = await gateway_node(tabby_emulator_factory)
    async with run_gateway({"a": a, "b": b}, "[models.m1]\n") as (url, _):
        # Both are empty: ties go by name, so the first load is a's.
        failed = await guarded(post_completion(http, url, "m1"))
        served = await guarded(post_completion(http, url, "m1"))
    assert failed[0] == 502 and failed[1]["error"]["code"] == "load_failed"
    assert served[0] == 200 and served[1]["choices"][0]["text"].startswith("m1:1 ")
    assert node_loads(a) == ["m1"] and node_loads(b) == ["m1"]
