"""Re-attaching to a cut load, cancellation at any await point, debug logging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import pytest

from tabby_async import (
    AsyncTabbyClient,
    LoadStream,
    ServerError,
    StreamError,
    TabbyError,
    TabbyTimeoutError,
    Timeout,
)
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.types import ModelLoadResponse
from tests.helpers import GUARD, ConnectionCounter

LOAD = "/v1/model/load"


pytestmark = pytest.mark.emulator(
    models=[
        "alpha",
        EmulatedModel(name="slow", modules=10, delay=0.03),
        EmulatedModel(name="org/model/4.0bpw", modules=10, delay=0.03),
    ],
    embeddings=["embed-a"],
)


async def test_reattach_polls_until_the_model_is_there(
    server: TabbyEmulator, client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    server.faults.drop_stream(after_events=2, stop_load=False)
    stream = client.models.load_stream(model_name="slow", reattach_within=5.0)
    async with stream:
        events = [e async for e in stream]
    assert stream.reattached
    assert events[-1].status == "finished" and events[-1].modules == 10
    assert (await client.models.get()).id == "slow"
    assert server.count("POST", LOAD) == 1  # polled, never re-sent
    assert server.count("GET", "/v1/model") >= 2  # 503 while loading, then the card
    assert connections.held == 0


async def test_reattach_gives_up_when_the_load_died(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.faults.drop_stream(after_events=1, stop_load=True)
    with pytest.raises(StreamError, match="did not show up"):
        await client.models.load(model_name="slow", reattach_within=0.6)
    assert server.count("POST", LOAD) == 1


async def test_reattach_finds_a_nested_model_by_its_card_id(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # The card of org/model/4.0bpw says "4.0bpw". Before, the whole name was
    # compared, never matched, and a load that worked ended in StreamError.
    server.faults.drop_stream(after_events=2, stop_load=False)
    event = await asyncio.wait_for(
        client.models.load(model_name="org/model/4.0bpw", reattach_within=GUARD), GUARD * 2
    )
    assert (event.status, event.modules) == ("finished", 10)
    assert (await client.models.get()).id == "4.0bpw"
    # The card id cannot tell our folder from another 4.0bpw: once it shows
    # up, the same load goes once more and the server answers it as a no-op.
    assert server.count("POST", LOAD) == 2
    assert server.loaded == "org/model/4.0bpw"


async def test_reattach_polls_through_proxy_errors_and_broken_answers(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # Before, a 502/504 on one poll (a ServerError) ended the re-attach.
    server.faults.drop_stream(after_events=2, stop_load=False)
    for status in (502, 504, 503):
        server.faults.proxy_error(status, path="/v1/model", method="GET")
    server.faults.not_http(path="/v1/model", method="GET")
    stream = client.models.load_stream(model_name="slow", reattach_within=GUARD)
    async with stream:
        events = await asyncio.wait_for(_all(stream), GUARD * 2)
    assert stream.reattached and events[-1].status == "finished"
    assert server.count("GET", "/v1/model") >= 5  # four bad answers, then the card
    assert server.faults.pending == []


async def test_a_hung_poll_is_bounded_by_the_window(
    server: TabbyEmulator,
    connections: ConnectionCounter,
) -> None:
    # The control timeout is 10 minutes here; a poll bounded by it (as before)
    # would hold re-attaching with reattach_within=1 far past the hang guard.
    server.faults.drop_stream(after_events=1, stop_load=True)
    server.faults.delay_head(GUARD * 20, n=None, path="/v1/model", method="GET")
    async with AsyncTabbyClient(
        server.url, admin_key=server.admin_key, timeout=Timeout(total=GUARD * 20)
    ) as client:
        with pytest.raises(StreamError, match="did not show up in GET /v1/model within 1 s"):
            await asyncio.wait_for(client.models.load(model_name="slow", reattach_within=1), GUARD)
        assert server.count("GET", "/v1/model") >= 1
        assert connections.held == 0


async def test_reattach_stops_on_an_answer_that_is_not_a_wait(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.faults.drop_stream(after_events=1, stop_load=False)
    server.faults.fail_next(status=500, detail="boom", path="/v1/model", method="GET")
    with pytest.raises(StreamError, match="polling GET /v1/model failed: 500 boom") as info:
        await asyncio.wait_for(client.models.load(model_name="slow", reattach_within=GUARD), GUARD)
    assert isinstance(info.value.__cause__, ServerError)
    assert server.count("GET", "/v1/model") == 1


async def _all(stream: LoadStream) -> list[ModelLoadResponse]:
    return [event async for event in stream]


async def test_without_reattach_a_cut_stream_raises_at_once(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.faults.drop_stream(after_events=1, stop_load=False)
    with pytest.raises(StreamError):
        await client.models.load(model_name="slow")
    assert server.count("GET", "/v1/model") == 0


@pytest.mark.parametrize("delay", [0.0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05])
async def test_cancellation_at_any_point_leaves_nothing_behind(
    server: TabbyEmulator, client: AsyncTabbyClient, delay: float, connections: ConnectionCounter
) -> None:
    server.faults.delay_head(0.01, n=None)
    before = asyncio.all_tasks()

    async def follow_load() -> None:
        async with client.models.load_stream(model_name="slow") as stream:
            async for _ in stream:
                pass

    calls = [
        client.models.list(),
        client.models.get_props(),
        client.models.load(model_name="alpha"),
        follow_load(),
        client.models.load_embedding(embedding_model_name="embed-a"),
        client.models.unload(),
    ]
    tasks = [asyncio.ensure_future(c) for c in calls]
    await asyncio.sleep(delay)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            assert isinstance(result, (asyncio.CancelledError, TabbyError)), result
    assert connections.held == 0
    assert _client_side(asyncio.all_tasks() - before) == []


def _client_side(tasks: set[asyncio.Task[object]]) -> list[str]:
    """Tasks that are not the emulator's own (its handlers share this loop)."""
    left = []
    for task in tasks:
        code = getattr(task.get_coro(), "cr_code", None)
        where = code.co_filename if code is not None else ""
        name = getattr(task.get_coro(), "__qualname__", "")
        if "web_protocol" in where or "tabby_async/testing" in where or "_accept_conn" in name:
            continue  # the emulator's side: accepting and handling connections
        left.append(f"{task.get_name()} {task.get_coro()!r}")
    return left


async def test_debug_log_lines_name_method_path_status_and_time(
    server: TabbyEmulator, client: AsyncTabbyClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tabby_async")
    server.faults.fail_next(1, status=502, path="/v1/model/list")
    await client.models.list()
    lines = [r.getMessage() for r in caplog.records if r.name == "tabby_async"]
    assert any(line.startswith("retry 1/2 of GET /v1/model/list") for line in lines)
    done = [line for line in lines if line.startswith("GET /v1/model/list -> 200 in ")]
    assert len(done) == 1 and done[0].endswith(" ms")
    assert server.admin_key not in " ".join(lines)


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose listen queue is full: a new connect just hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


async def test_connect_timeout_says_connect(
    unanswered_port: int, connections: ConnectionCounter
) -> None:
    async with AsyncTabbyClient(
        f"http://127.0.0.1:{unanswered_port}",
        admin_key="k",
        timeout=Timeout(total=10, connect=0.2),
        stream_timeout=Timeout(connect=0.2),
        max_retries=1,
    ) as client:
        with pytest.raises(TabbyTimeoutError) as info:
            await client.models.list()
        assert info.value.kind == "connect"
        assert not info.value.sent
        assert "connect timeout of 0.2 s" in str(info.value)
        # Nothing was sent, so even a load may be tried again; it still fails.
        with pytest.raises(TabbyTimeoutError) as info:
            await client.models.load(model_name="alpha")
        assert info.value.kind == "connect"
        assert connections.held == 0
