"""The transport against servers that misbehave: typed errors, no secret in reach.

Raw asyncio servers stand in for what the emulator cannot be: an SSH daemon on
the wrong port, a server that never answers, a body cut short, a proxy's page.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from tabby_async import (
    AsyncTabbyClient,
    ClientStateError,
    DownloadRequest,
    ServerError,
    TabbyConnectionError,
    TabbyError,
    TabbyTimeoutError,
    Timeout,
)
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tests.helpers import RawHandler, raw_server, reachable_text, serve_app

API_KEY = "api-key-SECRET-aaaa"
ADMIN_KEY = "admin-key-SECRET-bbbb"
HF_TOKEN = "hf_SECRET_cccc"
SECRETS = (API_KEY, ADMIN_KEY, HF_TOKEN)
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP request, head and body (by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


def answer(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    """A whole HTTP/1.1 answer that closes the connection."""
    head = (
        f"HTTP/1.1 {status} Whatever\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def ssh_daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(SSH_BANNER)  # an SSH server speaks first
    await writer.drain()
    await reader.read(65536)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.Event().wait()


def replies(data: bytes) -> RawHandler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(data)
        await writer.drain()

    return handler


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
CUT_BODY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    b'{"object":"list"'
)
BAD_CHUNKS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nnot a chunk\r\n"
)
STREAM_CUT = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    b'data: {"model_type":"model","module":1,"modules":4,"status":"processing"}\r\n\r\n'
)

#: Hostile servers, by the failure they cause.
HOSTILE: dict[str, RawHandler] = {
    "not HTTP (an SSH banner)": ssh_daemon,
    "no answer (timeouts)": silent,
    "401": replies(answer(401, b'{"detail":"Invalid admin key"}')),
    "a proxy's HTML 502": replies(answer(502, NGINX_502, "text/html")),
    "body cut short": replies(CUT_BODY),
    "broken chunked encoding": replies(BAD_CHUNKS),
    "stream cut mid-load": replies(STREAM_CUT),
}

Call = Callable[[AsyncTabbyClient], Awaitable[object]]


async def _stream_all(client: AsyncTabbyClient) -> None:
    async with client.models.load_stream(model_name="m", timeout=Timeout(read=0.3)) as stream:
        async for _ in stream:
            pass


#: One call per key kind: api route, admin route, a body with the HF token, the stream.
CALLS: dict[str, Call] = {
    "list": lambda c: c.models.list(timeout=Timeout(total=30, read=0.3)),
    "load": lambda c: c.models.load(model_name="m", timeout=Timeout(read=0.3)),
    "download": lambda c: c.models.download(
        DownloadRequest(repo_id="org/x", token=HF_TOKEN), timeout=Timeout(read=0.3)
    ),
    "load_stream": _stream_all,
}


def assert_nothing_secret(err: BaseException) -> None:
    text = reachable_text(err)
    assert str(err) in text  # the walk did reach the error itself
    leaked = [s for s in SECRETS if s in text]
    assert leaked == [], f"{type(err).__name__} lets {leaked} be reached: {text[:2000]}"


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_no_secret_is_reachable_from_an_error(kind: str, call: str) -> None:
    async with (
        raw_server(HOSTILE[kind]) as url,
        AsyncTabbyClient(url, api_key=API_KEY, admin_key=ADMIN_KEY) as client,
    ):
        with pytest.raises(TabbyError) as info:
            await asyncio.wait_for(CALLS[call](client), 60)
    assert_nothing_secret(info.value)


@pytest.mark.parametrize("call", list(CALLS))
async def test_no_secret_is_reachable_when_the_connection_is_refused(call: str) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncTabbyClient(
        f"http://127.0.0.1:{port}", api_key=API_KEY, admin_key=ADMIN_KEY, max_retries=1
    ) as client:
        with pytest.raises(TabbyConnectionError) as info:
            await asyncio.wait_for(CALLS[call](client), 60)
    assert info.value.sent is False
    assert_nothing_secret(info.value)


async def test_a_reply_that_is_not_http_is_a_connection_error_on_one_line() -> None:
    async with (
        raw_server(ssh_daemon) as url,
        AsyncTabbyClient(url, admin_key=ADMIN_KEY) as client,
    ):
        with pytest.raises(TabbyConnectionError) as info:
            await client.models.load(model_name="m")
    err = info.value
    assert "not valid HTTP" in str(err) and "SSH-2.0" in str(err)
    assert "\n" not in str(err)
    # Raised on its own: aiohttp's error (request headers and all) is not chained.
    assert err.__cause__ is None and err.__context__ is None


async def test_timeouts_keep_their_kind_and_chain_nothing() -> None:
    async with raw_server(silent) as url, AsyncTabbyClient(url, admin_key=ADMIN_KEY) as client:
        with pytest.raises(TabbyTimeoutError) as read:
            await client.models.list(timeout=Timeout(total=30, read=0.2))
        with pytest.raises(TabbyTimeoutError) as total:
            await client.models.list(timeout=0.3)
    assert (read.value.kind, total.value.kind) == ("read", "total")
    for err in (read.value, total.value):
        assert err.__cause__ is None and err.__context__ is None


# --- a session of another event loop ------------------------------------------------------


def test_a_session_of_another_loop_is_refused_before_sending() -> None:
    seen: list[str] = []

    async def health(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"status": "healthy", "issues": []})

    async def make_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    async def use(session: aiohttp.ClientSession) -> None:
        app = web.Application()
        app.router.add_get("/health", health)
        async with serve_app(app) as url:
            client = AsyncTabbyClient(url, session=session)
            with pytest.raises(ClientStateError, match="another event loop"):
                await client.health()

    other = asyncio.new_event_loop()
    try:
        session = other.run_until_complete(make_session())
        asyncio.run(use(session))
        other.run_until_complete(session.close())
    finally:
        other.close()
    assert seen == []


async def test_a_session_of_this_loop_is_used() -> None:
    async with TabbyEmulator(models=["m"]) as server, aiohttp.ClientSession() as session:
        client = AsyncTabbyClient(server.url, session=session)
        assert (await client.health()).healthy
        await client.aclose()
        assert not session.closed  # the user's session stays theirs


# --- long loads do not starve control calls -------------------------------------------------


async def test_open_load_streams_leave_room_for_control_calls() -> None:
    limit = 3
    async with (
        TabbyEmulator(
            models=[EmulatedModel(f"slow{i}", modules=2, delay=600) for i in range(4)]
        ) as server,
        AsyncTabbyClient(server.url, admin_key=server.admin_key, connection_limit=limit) as client,
    ):
        streams = [client.models.load_stream(model_name=f"slow{i}") for i in range(limit)]
        try:
            for stream in streams:  # each holds a connection of the load pool from here on
                await stream.__aenter__()
            # With one shared pool this waited for a free connection until the
            # total timeout; the control calls have their own pool.
            listing = await client.models.list(timeout=20)
            assert "slow0" in listing.ids
            assert (await client.health(timeout=20)).healthy
        finally:
            for stream in streams:
                await stream.aclose()


# --- /health: the server's 503 is an answer, a proxy's is an outage ---------------------

UNHEALTHY = {
    "status": "unhealthy",
    "issues": [{"time": "2026-11-30T10:00:00Z", "description": "CUDA error: out of memory"}],
}
PROXY_503 = [
    (NGINX_502.replace(b"502 Bad Gateway", b"503 Service Unavailable"), "text/html"),
    (b'{"detail":"upstream down"}', "application/json"),
    (b'{"status":"error","message":"no healthy upstream"}', "application/json"),
    (b'{"status":"unhealthy"}', "application/json"),
    (b'{"status":"unhealthy","issues":"none"}', "application/json"),
    (b"no healthy upstream", "text/plain"),
    (b"", "text/plain"),
]


def health_app(answers: list[web.Response]) -> tuple[web.Application, list[str]]:
    """An app whose /health gives ``answers`` in turn, then healthy; and its request log."""
    seen: list[str] = []

    async def health(request: web.Request) -> web.Response:
        seen.append(request.path)
        if answers:
            return answers.pop(0)
        return web.json_response({"status": "healthy", "issues": []})

    app = web.Application()
    app.router.add_get("/health", health)
    return app, seen


async def test_health_returns_the_servers_unhealthy_answer() -> None:
    app, seen = health_app([web.json_response(UNHEALTHY, status=503)])
    async with serve_app(app) as url, AsyncTabbyClient(url) as client:
        health = await client.health()
    assert not health.healthy and health.status == "unhealthy"
    assert [i.description for i in health.issues] == ["CUDA error: out of memory"]
    assert len(seen) == 1  # an answer: not retried


@pytest.mark.parametrize(("body", "content_type"), PROXY_503)
async def test_a_proxy_503_on_health_is_retried(body: bytes, content_type: str) -> None:
    proxy = [web.Response(status=503, body=body, content_type=content_type) for _ in range(2)]
    app, seen = health_app(proxy)
    async with serve_app(app) as url, AsyncTabbyClient(url) as client:
        assert (await client.health()).healthy
    assert len(seen) == 3


@pytest.mark.parametrize(("body", "content_type"), PROXY_503)
async def test_a_lasting_proxy_503_on_health_is_a_server_error(
    body: bytes, content_type: str
) -> None:
    proxy = [web.Response(status=503, body=body, content_type=content_type) for _ in range(3)]
    app, seen = health_app(proxy)
    async with serve_app(app) as url, AsyncTabbyClient(url) as client:
        with pytest.raises(ServerError) as info:
            await client.health()
    err = info.value
    assert err.status == 503 and len(seen) == 3
    assert "tried 3 times" in str(err)
    assert "<" not in str(err) and "\n" not in str(err)
