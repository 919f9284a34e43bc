"""The load stream against hostile servers: each gives a typed outcome, promptly.

Most cases use the emulator's fault kinds (what a user would use to test an
app); a line over the cap needs a small server of its own. Timeouts here are
hang guards only: the bugs these pin down took 40 s, 120 s or forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from tabby_async import AsyncTabbyClient, LoadFailedError, StreamError, TabbyError
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.types import ModelLoadResponse
from tests.helpers import GUARD, ConnectionCounter, guarded, reachable_text, serve_app

LOAD = "/v1/model/load"

pytestmark = pytest.mark.emulator(
    models=[
        "alpha",
        EmulatedModel(name="slow", modules=10, delay=0.03),
        EmulatedModel(name="noconfig", config_error="config.json not found"),
    ],
)


async def follow(client: AsyncTabbyClient, model: str) -> list[ModelLoadResponse]:
    """Every event of a load_stream, read with ``async for``."""
    async with client.models.load_stream(model_name=model) as stream:
        return [event async for event in stream]


async def load(client: AsyncTabbyClient, model: str) -> list[ModelLoadResponse]:
    """Every event of a load(), seen through on_progress."""
    events: list[ModelLoadResponse] = []
    await client.models.load(model_name=model, on_progress=events.append)
    return events


Way = Callable[[AsyncTabbyClient, str], Awaitable[list[ModelLoadResponse]]]
BOTH_WAYS = pytest.mark.parametrize("way", [follow, load], ids=["load_stream", "load"])


# --- §4.1 a retry: field ----------------------------------------------------------


@BOTH_WAYS
@pytest.mark.parametrize("clean_end", [True, False], ids=["ended", "cut"])
@pytest.mark.parametrize("retry", ["60000", "9" * 30])
async def test_a_retry_field_then_an_early_end_raises_stream_error_at_once(
    server: TabbyEmulator,
    client: AsyncTabbyClient,
    way: Way,
    retry: str,
    clean_end: bool,
    connections: ConnectionCounter,
) -> None:
    # Before: at an orderly early end the inherited EventSource slept
    # 2 x retry (120 s) before the error, and the 30-digit value raised a
    # bare OverflowError.
    server.faults.sse_retry(retry)
    server.faults.drop_stream(after_events=1, clean_end=clean_end)
    with pytest.raises(StreamError, match="ended before the model finished loading"):
        await guarded(way(client, "slow"))
    assert server.count("POST", LOAD) == 1
    assert connections.held == 0


async def test_a_retry_field_in_a_good_stream_is_ignored(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.faults.sse_retry(1)
    events = await guarded(follow(client, "slow"))
    assert [e.module for e in events] == [*range(1, 11), 10]
    assert server.count("POST", LOAD) == 1


# --- §4.2 frames after finished ---------------------------------------------------


@BOTH_WAYS
@pytest.mark.parametrize("interval", [0.0, 0.2], ids=["flood", "trickle"])
async def test_frames_after_finished_end_the_stream_promptly(
    server: TabbyEmulator, way: Way, interval: float, connections: ConnectionCounter
) -> None:
    # Before: the drain waited up to 1 s per frame with no total, so frames
    # every 0.2 s (or a flood) kept load() and `async for` alive forever.
    server.faults.frames_after_finished(count=None, interval=interval)
    async with (
        aiohttp.ClientSession(connector=connections.connector()) as session,
        AsyncTabbyClient(server.url, admin_key=server.admin_key, session=session) as client,
    ):
        events = await guarded(way(client, "slow"))
        assert events[-1].status == "finished" and len(events) == 11
        assert connections.held == 0
        assert connections.opened == 1
        # The stream's connection was closed, not handed back with frames
        # still coming: the next call needs a new one.
        await client.models.list()
        assert connections.opened == 2


async def test_a_stream_that_ends_after_finished_hands_its_connection_back(
    server: TabbyEmulator,
    connections: ConnectionCounter,
) -> None:
    async with (
        aiohttp.ClientSession(connector=connections.connector()) as session,
        AsyncTabbyClient(server.url, admin_key=server.admin_key, session=session) as client,
    ):
        await guarded(load(client, "slow"))
        await client.models.list()
        assert connections.opened == 1  # reused


# --- §4.11 a BOM -------------------------------------------------------------------


@BOTH_WAYS
async def test_a_bom_does_not_hide_the_first_frame(
    server: TabbyEmulator, client: AsyncTabbyClient, way: Way
) -> None:
    # Before: the BOM stuck to the first frame's field name, so the error
    # frame was lost and the user got StreamError instead.
    server.faults.bom()
    with pytest.raises(LoadFailedError, match=r"config\.json not found"):
        await guarded(way(client, "noconfig"))
    server.faults.bom()
    events = await guarded(way(client, "slow"))
    assert [e.module for e in events][:2] == [1, 2] and events[-1].status == "finished"


# --- §4.9 an empty answer ----------------------------------------------------------


@BOTH_WAYS
@pytest.mark.parametrize(
    ("status", "says"),
    [(204, "expected 200 with an event stream, got 204"), (200, r"ended before .* \(no events\)")],
)
async def test_an_empty_answer_is_a_stream_error(
    server: TabbyEmulator,
    client: AsyncTabbyClient,
    way: Way,
    status: int,
    says: str,
    connections: ConnectionCounter,
) -> None:
    # Before: a 204 gave a silent, empty load_stream.
    server.faults.empty_stream(status)
    with pytest.raises(StreamError, match=says):
        await guarded(way(client, "alpha"))
    assert connections.held == 0


# --- §4.5 aclose() from another task ------------------------------------------------


async def test_aclose_while_opening_cancels_the_request_and_ends_the_iteration(
    server: TabbyEmulator, client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    # The head is held back: the stream is still opening when aclose() comes.
    server.faults.delay_head(GUARD * 4, path=LOAD)
    stream = client.models.load_stream(model_name="slow")
    seen: list[ModelLoadResponse] = []

    async def iterate() -> None:
        async with stream:
            async for event in stream:
                seen.append(event)

    task = asyncio.create_task(iterate())
    await guarded(connections.wait_handed_out(1))  # the load's request is under way
    await guarded(stream.aclose())
    # Before: the response was left to open later, and the stream yielded.
    assert connections.held == 0
    await guarded(task)  # the iterating task's `async for` just ends
    assert seen == [] and stream.closed and not stream.finished
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_aclose_while_iterating_ends_the_iteration(
    server: TabbyEmulator, client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    stream = client.models.load_stream(model_name="slow")
    first = asyncio.Event()
    seen: list[ModelLoadResponse] = []

    async def iterate() -> None:
        async with stream:
            async for event in stream:
                seen.append(event)
                first.set()

    task = asyncio.create_task(iterate())
    await guarded(first.wait())
    await stream.aclose()
    assert connections.held == 0
    count = len(seen)
    await guarded(task)
    assert len(seen) == count and stream.closed and not stream.finished


async def test_entering_a_stream_closed_while_opening_ends_quietly(
    server: TabbyEmulator, client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    server.faults.delay_head(GUARD * 4, path=LOAD)
    stream = client.models.load_stream(model_name="slow")
    opening = asyncio.create_task(stream.__aenter__())
    await guarded(connections.wait_handed_out(1))  # the load's request is under way
    await stream.aclose()
    assert await guarded(opening) is stream  # entering ends quietly; nothing to iterate
    assert [e async for e in stream] == []


# --- §5(c) a line over the cap -----------------------------------------------------


async def test_a_line_over_the_cap_is_a_stream_error_naming_it(
    connections: ConnectionCounter,
) -> None:
    async def endless_line(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"data: ")
        piece = b"x" * 2048
        while True:  # 2 KiB at a time, never a line end
            await resp.write(piece)

    app = web.Application()
    app.router.add_post(LOAD, endless_line)
    async with (
        serve_app(app) as url,
        AsyncTabbyClient(url, admin_key="k") as client,
    ):
        with pytest.raises(StreamError, match="longer than the 1 MiB cap"):
            await guarded(client.models.load(model_name="m"))
        assert connections.held == 0


# --- secrets -----------------------------------------------------------------------


async def test_a_cut_stream_error_reaches_no_aiohttp_error_and_no_key(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.faults.drop_stream(after_events=1)
    with pytest.raises(StreamError) as info:
        await guarded(follow(client, "slow"))
    chain: list[BaseException] = []
    err: BaseException | None = info.value
    while err is not None and len(chain) < 10:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert all(isinstance(e, TabbyError) for e in chain), chain
    assert not any(isinstance(e, aiohttp.ClientError) for e in chain)
    assert server.admin_key not in reachable_text(info.value)
