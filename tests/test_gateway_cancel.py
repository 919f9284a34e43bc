"""The gateway when a client goes away (or the gateway stops) at each await of a request.

Each test stops a request at one point of its way (reading its body, waiting
in its model's queue through a drain, an unload or a load, opening the
upstream, passing a stream or a whole answer) and then judges by what the
nodes and the gateway saw: nothing left in flight or queued, no connection
held, no task of the gateway's left over but its refresh and watchdog, the
swap completed, and the next request served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import pytest

from tabby_async.gateway import Gateway
from tabby_async.testing import EmulatedModel, _load
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import (
    ConnectionCounter,
    forwarded,
    gateway_node,
    guarded,
    node_loads,
    post_completion,
    run_gateway,
    started,
    stream_events,
)

T = TypeVar("T")

TWO = "[models.m1]\n[models.m2]\n"
#: The gateway's tasks that live as long as it does.
BACKGROUND = ["Upkeep._refresh_loop", "Upkeep._watchdog"]


class Gate:
    """A point a coroutine stops at until the test opens it; ``reached`` is set on arrival."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    async def wait(self) -> None:
        self.reached.set()
        await self.opened.wait()

    def before(self, call: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        """``call``, stopped at this gate first."""

        async def gated(*args: Any, **kwargs: Any) -> T:
            await self.wait()
            return await call(*args, **kwargs)

        return gated


def hold_loads(monkeypatch: pytest.MonkeyPatch) -> Gate:
    """A gate at each module of an emulated load: a load stops, mid-progress, until opened."""
    gate = Gate()
    monkeypatch.setattr(_load, "_module_pause", lambda _delay: gate.wait())
    return gate


def streamed(model: str, max_tokens: int) -> dict[str, object]:
    return {"model": model, "prompt": "hi", "max_tokens": max_tokens, "stream": True}


def gateway_tasks() -> list[asyncio.Task[Any]]:
    """The running tasks of gateways (their coroutines are the engine's methods)."""
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_coro().__qualname__.startswith(("Gateway.", "Upkeep."))  # type: ignore[union-attr]
    ]


async def settled(gateway: Gateway, connections: ConnectionCounter) -> None:
    """Check that nothing of a request is left: in flight, queued, held, or running."""
    # A failed load's refresh of its node may still run: it ends by itself.
    passing = [t for t in gateway_tasks() if t.get_coro().__qualname__ not in BACKGROUND]  # type: ignore[union-attr]
    await guarded(asyncio.gather(*passing, return_exceptions=True))
    names = sorted(t.get_coro().__qualname__ for t in gateway_tasks())  # type: ignore[union-attr]
    assert names == BACKGROUND
    view = gateway.status()
    assert set(view["queues"].values()) == {0}
    for node in view["nodes"]:
        assert node["swapping"] is None
        for kind in ("model", "embedding"):
            assert node[kind]["in_flight"] == 0 and node[kind]["draining"] is False
    assert connections.held == 0


async def leave(pending: asyncio.Future[Any]) -> None:
    """Cancel a client's request (or close the answer it has begun to read): its
    connection closes, as a client that goes away."""
    if pending.done():
        pending.result().close()
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)


async def gone_from_queue(gateway: Gateway, model: str) -> None:
    await guarded(gateway.wait_for(lambda g: g.queued(model) == 0))


async def test_a_client_that_leaves_while_its_model_waits_for_a_drain(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    connections: ConnectionCounter,
) -> None:
    a = await gateway_node(tabby_emulator_factory, token_delay=0.01, reply_tokens=100)
    a.preload("m1")
    async with (
        run_gateway({"a": a}, TWO) as (url, gateway),
        aiohttp.ClientSession() as leaving,
    ):
        async with http.post(url + "/v1/completions", json=streamed("m1", 20)) as running:
            await guarded(started([a], 1))
            pending = asyncio.ensure_future(post_completion(leaving, url, "m2"))
            await guarded(gateway.wait_for(lambda g: g.status()["nodes"][0]["model"]["draining"]))
            await leave(pending)
            await gone_from_queue(gateway, "m2")
            events = await guarded(stream_events(running))
        # Nobody waits any more, but the swap goes on once the drain ends.
        await guarded(gateway.wait_for(lambda g: g.nodes["a"].holds("m2", "model")))
        after = await guarded(post_completion(http, url, "m2"))
        await settled(gateway, connections)
    assert events[-1] == "[DONE]"
    assert a.generations.stats("m1").finished == 1
    assert after[0] == 200 and node_loads(a) == ["m2"]
    assert forwarded(a)[-1]["model"] == "m2" and len(forwarded(a)) == 2


async def test_a_client_that_leaves_while_the_drain_timed_out_and_the_node_unloads(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    connections: ConnectionCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = await gateway_node(
        tabby_emulator_factory, token_delay=0.02, ping_interval=0.02, reply_tokens=10_000
    )
    a.preload("m1")
    catalog = TWO + "[gateway]\ndrain_timeout = 0.1\nstall_timeout = 0.3\n"
    gate = Gate()
    async with (
        run_gateway({"a": a}, catalog) as (url, gateway),
        aiohttp.ClientSession() as leaving,
    ):
        service = type(gateway.clients["a"].models)  # only the gateway unloads here
        monkeypatch.setattr(service, "unload", gate.before(service.unload))
        async with http.post(url + "/v1/completions", json=streamed("m1", 10_000)) as running:
            await guarded(started([a], 1))
            pending = asyncio.ensure_future(post_completion(leaving, url, "m2"))
            await guarded(gate.reached.wait())
            await leave(pending)
            await gone_from_queue(gateway, "m2")
            gate.opened.set()
            events = await guarded(stream_events(running))
        await guarded(gateway.wait_for(lambda g: g.nodes["a"].holds("m2", "model")))
        after = await guarded(post_completion(http, url, "m2"))
        await settled(gateway, connections)
    assert events[-1]["error"]["code"] == "upstream_error"
    assert a.generations.stats("m1").cancelled == 1
    assert after[0] == 200 and node_loads(a) == ["m2"]


async def test_a_client_that_leaves_while_its_model_loads(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    connections: ConnectionCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = hold_loads(monkeypatch)
    a = await gateway_node(tabby_emulator_factory)
    async with (
        run_gateway({"a": a}, TWO) as (url, gateway),
        aiohttp.ClientSession() as leaving,
    ):
        pending = asyncio.ensure_future(post_completion(leaving, url, "m1"))
        await guarded(gate.reached.wait())  # the node is loading, mid-progress
        assert a.is_loading
        await leave(pending)
        await gone_from_queue(gateway, "m1")
        gate.opened.set()
        await guarded(gateway.wait_for(lambda g: g.nodes["a"].holds("m1", "model")))
        after = await guarded(post_completion(http, url, "m1"))
        await settled(gateway, connections)
    assert after[0] == 200
    assert node_loads(a) == ["m1"] and len(forwarded(a)) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_client_that_leaves_while_the_node_generates_stops_the_generation(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    connections: ConnectionCounter,
    stream: bool,
) -> None:
    # Whole: the gateway waits for the node's head (sent when the answer is
    # done). Streamed: it passes the chunks on.
    a = await gateway_node(tabby_emulator_factory, token_delay=0.02, reply_tokens=1000)
    a.preload("m1")
    async with (
        run_gateway({"a": a}, TWO) as (url, gateway),
        aiohttp.ClientSession() as leaving,
    ):
        body = {"model": "m1", "prompt": "hi", "max_tokens": 1000, "stream": stream}
        pending = asyncio.ensure_future(leaving.post(url + "/v1/completions", json=body))
        await guarded(started([a], 1))
        await leave(pending)
        await guarded(a.generations.wait_for(lambda g: g.stats().cancelled == 1))
        await guarded(gateway.wait_for(lambda g: g.nodes["a"].slots["model"].in_flight == 0))
        after = await guarded(post_completion(http, url, "m1"))
        await settled(gateway, connections)
    assert a.generations.stats().finished == 1  # only the request after
    assert after[0] == 200


async def test_a_client_that_leaves_while_a_whole_answer_is_passed_on(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    connections: ConnectionCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    a.preload("m1")
    # The head at once, then the body a few bytes at a time: the gateway reads it.
    a.faults.slow_body(0.05, path="/v1/completions", chunk_size=8)
    async with (
        run_gateway({"a": a}, TWO) as (url, gateway),
        aiohttp.ClientSession() as leaving,
    ):
        reading = asyncio.Event()
        watch = gateway.watch

        def watched(close: Any) -> Any:
            reading.set()
            return watch(close)

        monkeypatch.setattr(gateway, "watch", watched)
        pending = asyncio.ensure_future(post_completion(leaving, url, "m1"))
        await guarded(reading.wait())
        await leave(pending)
        await guarded(gateway.wait_for(lambda g: g.nodes["a"].slots["model"].in_flight == 0))
        assert gateway.streams == set()
        after = await guarded(post_completion(http, url, "m1"))
        await settled(gateway, connections)
    assert after[0] == 200


async def test_a_client_that_leaves_while_its_body_is_read_takes_nothing(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    connections: ConnectionCounter,
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    a.preload("m1")
    async with run_gateway({"a": a}, TWO) as (url, gateway):
        host, port = url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        head = (
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n"
        )
        writer.write(head.encode() + b'{"model": "m1", "prompt": "')
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        after = await guarded(post_completion(http, url, "m1"))
        await settled(gateway, connections)
    assert after[0] == 200 and len(forwarded(a)) == 1


async def test_a_client_that_leaves_while_a_load_that_fails_runs_and_the_others_get_502(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    connections: ConnectionCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = hold_loads(monkeypatch)
    a = await gateway_node(tabby_emulator_factory, models=[EmulatedModel("m1", fail_at=1)])
    async with (
        run_gateway({"a": a}, TWO) as (url, gateway),
        aiohttp.ClientSession() as leaving,
    ):
        staying = [asyncio.ensure_future(post_completion(http, url, "m1")) for _ in range(2)]
        pending = asyncio.ensure_future(post_completion(leaving, url, "m1"))
        await guarded(gate.reached.wait())
        await guarded(gateway.wait_for(lambda g: g.queued("m1") == 3))
        await leave(pending)
        await guarded(gateway.wait_for(lambda g: g.queued("m1") == 2))
        gate.opened.set()
        answers = await guarded(asyncio.gather(*staying))
        await settled(gateway, connections)
        assert not gateway.nodes["a"].holds("m1", "model")
    for status, data, _ in answers:
        assert status == 502 and data["error"]["code"] == "load_failed"
        assert "'m1'" in data["error"]["message"] and "'a'" in data["error"]["message"]
    assert node_loads(a) == ["m1"] and forwarded(a) == []


async def _queued_during_a_held_load(
    url: str, gateway: Gateway, http: aiohttp.ClientSession, gate: Gate
) -> list[asyncio.Future[Any]]:
    waiting = [asyncio.ensure_future(post_completion(http, url, "m1")) for _ in range(2)]
    await guarded(gate.reached.wait())
    await guarded(gateway.wait_for(lambda g: g.queued("m1") == 2))
    return waiting


async def test_closing_the_gateway_while_requests_wait_and_a_swap_runs(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    connections: ConnectionCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = hold_loads(monkeypatch)
    a = await gateway_node(tabby_emulator_factory)
    async with run_gateway({"a": a}, TWO) as (url, gateway):
        waiting = await _queued_during_a_held_load(url, gateway, http, gate)
        await guarded(gateway.aclose())
        answers = await guarded(asyncio.gather(*waiting))
        assert gateway_tasks() == []
        assert gateway.status()["nodes"][0]["swapping"] is None
        refused = await guarded(post_completion(http, url, "m1"))
        gate.opened.set()
    for status, data, headers in [*answers, refused]:
        assert status == 503 and data["error"]["code"] == "no_capacity"
        assert "Retry-After" in headers
    assert connections.held == 0


async def test_stopping_the_gateways_app_answers_the_waiting_requests_at_once(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    connections: ConnectionCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The app's server waits for its running handlers before the app's cleanup
    # runs: the waiting requests must be answered when it starts to stop.
    gate = hold_loads(monkeypatch)
    a = await gateway_node(tabby_emulator_factory)

    async def serve_then_stop() -> asyncio.Future[Any]:
        async with run_gateway({"a": a}, TWO) as (url, gateway):
            waiting = await _queued_during_a_held_load(url, gateway, http, gate)
        return asyncio.gather(*waiting)

    answers = await guarded(await guarded(serve_then_stop()))
    assert gateway_tasks() == []
    gate.opened.set()
    for status, data, _ in answers:
        assert status == 503 and data["error"]["code"] == "no_capacity"
    assert connections.held == 0
