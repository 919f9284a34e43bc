"""Retries: read-only calls retry outages; loads and other writes never repeat."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from types import SimpleNamespace

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from tabby_async import (
    AsyncTabbyClient,
    InvalidInputError,
    ModelNotLoadedError,
    RateLimitError,
    ServerError,
    StreamError,
    TabbyConnectionError,
    TabbyTimeoutError,
)
from tabby_async import _transport as transport_module
from tabby_async._mapping import kept_headers
from tabby_async.testing import TabbyEmulator
from tests.helpers import ConnectionCounter, guarded, serve_app

LIST = "/v1/model/list"
LOAD = "/v1/model/load"


pytestmark = pytest.mark.emulator(models=["alpha"], embeddings=["embed-a"])


@pytest.mark.parametrize("status", [502, 503, 504, 429])
async def test_read_only_calls_retry_outages(
    server: TabbyEmulator, client: AsyncTabbyClient, status: int
) -> None:
    server.faults.fail_next(2, status=status, detail="outage", path=LIST)
    assert "alpha" in (await client.models.list()).ids
    assert server.count("GET", LIST) == 3


async def test_retries_stop_at_max_retries(server: TabbyEmulator, client: AsyncTabbyClient) -> None:
    server.faults.fail_next(5, status=502, path=LIST)
    with pytest.raises(ServerError):
        await client.models.list(max_retries=1)
    assert server.count("GET", LIST) == 2
    server.faults.clear()
    server.reset_requests()
    server.faults.fail_next(1, status=502, path=LIST)
    with pytest.raises(ServerError):
        await client.models.list(max_retries=0)
    assert server.count("GET", LIST) == 1


async def test_a_retried_calls_error_stands_alone(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # The last try's error is raised, saying how often the call was tried,
    # with neither an earlier try's error nor aiohttp's as its context.
    server.faults.fail_next(3, status=502, detail="outage", path=LIST)
    with pytest.raises(ServerError) as info:
        await client.models.list(max_retries=2)
    assert "tried 3 times" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert server.count("GET", LIST) == 3


async def test_a_total_that_runs_out_in_the_backoff_ends_the_call(
    server: TabbyEmulator, client: AsyncTabbyClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wait before the second try was short enough to fit in the total,
    # but took longer (a busy loop): the call ends with the total's timeout,
    # saying it was tried once, without sending again.
    class Clock:
        skew = 0.0

        def monotonic(self) -> float:
            return time.monotonic() + self.skew

    clock = Clock()

    async def overrunning_sleep(delay: float) -> None:
        clock.skew += 60.0
        await asyncio.sleep(0)

    monkeypatch.setattr(transport_module, "time", clock)
    monkeypatch.setattr(transport_module, "asyncio", SimpleNamespace(sleep=overrunning_sleep))
    server.faults.fail_next(1, status=502, path=LIST)
    with pytest.raises(TabbyTimeoutError) as info:
        await client.models.list(timeout=30.0, max_retries=3)
    assert info.value.kind == "total"
    assert "(tried once)" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert server.count("GET", LIST) == 1


async def test_cancelling_during_the_backoff_leaves_nothing_behind(
    server: TabbyEmulator,
    client: AsyncTabbyClient,
    connections: ConnectionCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waiting = asyncio.Event()

    async def noted_sleep(delay: float) -> None:
        waiting.set()
        await asyncio.sleep(delay)

    monkeypatch.setattr(transport_module, "asyncio", SimpleNamespace(sleep=noted_sleep))
    server.faults.fail_next(1, status=503, detail="busy", headers={"Retry-After": "20"}, path=LIST)
    task = asyncio.create_task(client.models.list())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.count("GET", LIST) == 1
    assert connections.held == 0


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_failed_calls_error_is_freed_without_the_cycle_collector(
    server: TabbyEmulator, client: AsyncTabbyClient, retries: int
) -> None:
    # An error that holds the frames it passed through in a reference cycle
    # lives until the next garbage collection; a monitoring sweep that gets
    # "not loaded" from every node would make that garbage on every probe.
    if retries:
        server.faults.fail_next(1, status=502, path="/v1/model")
    gc.collect()
    gc.disable()
    try:
        try:
            await client.models.get(max_retries=retries)
        except ModelNotLoadedError as err:
            ref = weakref.ref(err)
        assert ref() is None
    finally:
        gc.enable()


async def test_no_model_loaded_is_an_answer_not_retried(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    with pytest.raises(ModelNotLoadedError):
        await client.models.get()
    assert server.count("GET", "/v1/model") == 1


async def test_retry_after_is_honoured(server: TabbyEmulator, client: AsyncTabbyClient) -> None:
    server.faults.fail_next(1, status=429, headers={"Retry-After": "0.4"}, path=LIST)
    started = time.monotonic()
    await client.models.list()
    assert time.monotonic() - started >= 0.4
    assert server.count("GET", LIST) == 2


async def test_retry_after_beyond_the_total_timeout_gives_up_at_once(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.faults.fail_next(1, status=429, headers={"Retry-After": "20"}, path=LIST)
    with pytest.raises(RateLimitError):
        await client.models.list(timeout=1.0)
    assert server.count("GET", LIST) == 1


async def test_retries_share_one_total_deadline(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # Each try is slow and fails; the total bounds them all together.
    server.faults.delay_head(0.4, n=None, path=LIST)
    server.faults.fail_next(None, status=502, path=LIST)
    with pytest.raises((TabbyTimeoutError, ServerError)):
        await guarded(client.models.list(timeout=0.6, max_retries=5))
    # A 0.6 s deadline per try would let all 6 tries of 0.4 s each reach the server.
    assert server.count("GET", LIST) <= 2


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("POST", "/v1/model/unload", "unload"),
        ("POST", "/v1/model/embedding/unload", "unload_embedding"),
    ],
)
async def test_writes_are_never_retried(
    server: TabbyEmulator, client: AsyncTabbyClient, method: str, path: str, call: str
) -> None:
    server.faults.fail_next(1, status=502, path=path)
    with pytest.raises(ServerError):
        await getattr(client.models, call)()
    assert server.count(method, path) == 1


async def test_load_is_never_retried_after_it_was_sent(
    server: TabbyEmulator, client: AsyncTabbyClient, connections: ConnectionCounter
) -> None:
    server.faults.fail_next(1, status=503, detail="proxy", path=LOAD)
    with pytest.raises(ServerError):
        await client.models.load(model_name="alpha")
    assert server.count("POST", LOAD) == 1
    server.faults.reset_mid_body(1, path="/v1/model/embedding/load")
    with pytest.raises(TabbyConnectionError):
        await client.models.load_embedding(embedding_model_name="embed-a")
    assert server.count("POST", "/v1/model/embedding/load") == 1
    server.faults.drop_stream(after_events=1)
    with pytest.raises(StreamError):
        await client.models.load(model_name="alpha")
    assert server.count("POST", LOAD) == 2
    assert connections.held == 0


async def test_read_only_call_retries_a_reset_mid_body(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.faults.reset_mid_body(1, path=LIST)
    assert "alpha" in (await client.models.list()).ids
    assert server.count("GET", LIST) == 2


@pytest.mark.parametrize("value", ["2", -1, True, 1.5])
async def test_a_bad_per_call_max_retries_is_refused_before_sending(
    server: TabbyEmulator, client: AsyncTabbyClient, value: object
) -> None:
    for call in (client.models.list, client.models.get, client.models.list_embedding):
        with pytest.raises(InvalidInputError) as info:
            await call(max_retries=value)  # type: ignore[arg-type]
        assert info.value.field == "max_retries"
    assert server.requests == []


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


async def test_a_proxy_502_on_a_retried_read_reads_well(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.faults.fail_next(3, status=502, body=NGINX_502, path=LIST)
    with pytest.raises(ServerError) as info:
        await client.models.list()
    assert server.count("GET", LIST) == 3
    assert str(info.value) == (
        f"502 Bad Gateway: an HTML page '502 Bad Gateway' ({len(NGINX_502)} bytes), "
        "not TabbyAPI's answer (tried 3 times) (GET /v1/model/list)"
    )
    assert info.value.body == NGINX_502.decode()  # the page itself stays available


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        ({"retry-after": "0.5"}, {"Retry-After": "0.5"}),
        ({"RETRY-AFTER": "1", "location": "/x"}, {"Retry-After": "1", "Location": "/x"}),
        ({"Content-Type": "text/html", "Server": "nginx"}, {"Content-Type": "text/html"}),
        ({"Set-Cookie": "s=1", "x-admin-key": "k"}, {}),
    ],
)
def test_kept_headers_whatever_their_case(headers: dict[str, str], kept: dict[str, str]) -> None:
    assert kept_headers(CIMultiDictProxy(CIMultiDict(headers))) == kept


async def test_retry_after_is_obeyed_whatever_its_case() -> None:
    answers = [web.Response(status=429, headers={"retry-after": "0.5"})]

    async def listing(request: web.Request) -> web.Response:
        return answers.pop() if answers else web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_get(LIST, listing)
    async with serve_app(app) as url, AsyncTabbyClient(url) as client:
        started = time.monotonic()
        await client.models.list()
        # The first backoff alone is at most 0.25 s: the wait came from the header.
        assert time.monotonic() - started >= 0.5
