"""The gateway when things go wrong: nodes down or failing mid-stream, clients gone, queues full."""

from __future__ import annotations

import asyncio
import socket

import aiohttp

from tabby_async.testing import EmulatedModel
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import (
    forwarded,
    gateway_node,
    guarded,
    node_loads,
    post_completion,
    run_gateway,
    stream_events,
)

TWO = "[models.m1]\nmax_replicas = 2\n[models.m2]\n"


def streamed(model: str, max_tokens: int) -> dict[str, object]:
    return {"model": model, "prompt": "hi", "max_tokens": max_tokens, "stream": True}


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_node_that_is_down_before_the_request_reaches_it_is_passed_over(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    b = await gateway_node(tabby_emulator_factory)
    a.preload("m1")
    b.preload("m1")
    async with run_gateway({"a": a, "b": b}, TWO) as (url, gateway):
        await a.close()  # the gateway still thinks a holds m1
        answers = [await guarded(post_completion(http, url, "m1")) for _ in range(4)]
        assert gateway.nodes["a"].up is False
    assert [s for s, _, _ in answers] == [200] * 4
    assert len(forwarded(b)) == 4


async def test_a_node_down_from_the_start_is_never_sent_a_request(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    b = await gateway_node(tabby_emulator_factory)
    async with run_gateway({"a": closed_port(), "b": b}, TWO) as (url, _):
        status, data, _ = await guarded(post_completion(http, url, "m1"))
        health = await (await http.get(url + "/health")).json()
    assert status == 200 and data["choices"][0]["text"].startswith("m1:1 ")
    assert node_loads(b) == ["m1"]
    assert health == {"status": "degraded", "nodes": 2, "up": 1, "degraded": 0}


async def test_a_request_that_reached_a_node_is_never_sent_again(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    b = await gateway_node(tabby_emulator_factory)
    a.preload("m1")
    b.preload("m1")
    for server in (a, b):
        server.faults.fail_next(status=500, detail="boom", path="/v1/completions")
    async with run_gateway({"a": a, "b": b}, TWO) as (url, _):
        status, data, _ = await guarded(post_completion(http, url, "m1"))
    assert status == 502 and data["error"]["code"] == "upstream_error"
    assert a.count("POST", "/v1/completions") + b.count("POST", "/v1/completions") == 1


async def test_a_node_that_fails_mid_stream_ends_the_clients_stream_with_an_error_event(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory, token_delay=0.02, reply_tokens=1000)
    a.preload("m1")
    body = streamed("m1", 1000)
    async with (
        run_gateway({"a": a}, TWO) as (url, _),
        http.post(url + "/v1/completions", json=body) as response,
    ):
        first = await guarded(response.content.readline())
        assert first.startswith(b"data: ")
        await a.close()
        events = await guarded(stream_events(response))
    assert events[-1]["error"]["code"] == "upstream_error"
    assert "'a'" in events[-1]["error"]["message"]
    assert "[DONE]" not in events


async def test_a_client_that_goes_away_stops_the_generation_on_the_node(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory, token_delay=0.02, reply_tokens=1000)
    a.preload("m1")
    async with run_gateway({"a": a}, TWO) as (url, gateway):
        async with aiohttp.ClientSession() as leaving:
            response = await leaving.post(url + "/v1/completions", json=streamed("m1", 1000))
            await guarded(response.content.readline())
            response.close()
        await guarded(a.generations.wait_for(lambda g: g.stats().cancelled == 1))
        await guarded(gateway.wait_for(lambda g: g.nodes["a"].slots["model"].in_flight == 0))
        metrics = await (await http.get(url + "/metrics")).text()
    assert a.generations.stats().finished == 0
    assert 'outcome="client_closed"' in metrics


async def test_a_full_queue_is_a_503_with_retry_after(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory, models=[EmulatedModel("m1", delay=0.1)])
    catalog = "[models.m1]\n[gateway]\nqueue_size = 2\n"
    async with run_gateway({"a": a}, catalog) as (url, gateway):
        waiting = [asyncio.ensure_future(post_completion(http, url, "m1")) for _ in range(2)]
        await guarded(gateway.wait_for(lambda g: g.queued("m1") == 2))
        status, data, headers = await guarded(post_completion(http, url, "m1"))
        served = await guarded(asyncio.gather(*waiting))
    assert status == 503 and data["error"]["code"] == "queue_full"
    assert int(headers["Retry-After"]) >= 1
    assert [s for s, _, _ in served] == [200, 200]
    assert node_loads(a) == ["m1"]


async def test_a_request_that_waits_past_the_queue_timeout_is_a_503(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory, models=[EmulatedModel("m1", delay=0.2)])
    catalog = "[models.m1]\n[gateway]\nqueue_timeout = 0.1\n"
    async with run_gateway({"a": a}, catalog) as (url, gateway):
        status, data, headers = await guarded(post_completion(http, url, "m1"))
        # The load goes on: the next request finds the model.
        await guarded(gateway.wait_for(lambda g: g.nodes["a"].holds("m1", "model")))
        after = await guarded(post_completion(http, url, "m1"))
    assert status == 503 and data["error"]["code"] == "queue_timeout"
    assert "Retry-After" in headers
    assert after[0] == 200


async def test_a_waiting_client_that_leaves_is_taken_out_of_the_queue(
    tabby_emulator_factory: EmulatorFactory,
) -> None:
    a = await gateway_node(tabby_emulator_factory, models=[EmulatedModel("m1", delay=0.1)])
    async with run_gateway({"a": a}, "[models.m1]\n") as (url, gateway):
        async with aiohttp.ClientSession() as leaving:
            pending = asyncio.ensure_future(
                leaving.post(url + "/v1/completions", json={"model": "m1", "prompt": "x"})
            )
            await guarded(gateway.wait_for(lambda g: g.queued("m1") == 1))
            pending.cancel()
        await guarded(gateway.wait_for(lambda g: g.nodes["a"].holds("m1", "model")))
        await guarded(gateway.wait_for(lambda g: g.queued("m1") == 0))
        assert gateway.nodes["a"].slots["model"].in_flight == 0
    assert forwarded(a) == []


async def test_an_unhealthy_node_that_still_serves_is_degraded_not_dropped(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    a.preload("m1")
    a.add_health_issue("a generation failed")
    async with run_gateway({"a": a}, TWO) as (url, gateway):
        status, _, _ = await guarded(post_completion(http, url, "m1"))
        health = await (await http.get(url + "/health")).json()
        view = gateway.status()["nodes"][0]
    assert status == 200
    assert health["status"] == "degraded" and health["degraded"] == 1
    assert view["degraded"] is True and view["up"] is True


