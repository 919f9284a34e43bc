"""The gateway against hostile nodes, clients that leave, shutdowns, failed swaps and odd bodies.

A hostile node is a raw socket that answers the gateway's probes as an
emulator holding ``m1`` does (the answers are recorded from one), so the
gateway routes to it, and then answers inference its own way. Each test
judges by what the client got and what the nodes saw; waits are on events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import aiohttp
import pytest

from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import (
    ConnectionCounter,
    gateway_node,
    guarded,
    raw_server,
    run_gateway,
    stream_events,
)

M1 = "[models.m1]\n"
PROBES = ("/health", "/v1/model", "/v1/model/embedding")
Inference = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def streamed(model: str = "m1", max_tokens: int = 5) -> dict[str, object]:
    return {"model": model, "prompt": "hi", "max_tokens": max_tokens, "stream": True}


def plain(model: str = "m1") -> dict[str, object]:
    return {"model": model, "prompt": "hi", "max_tokens": 3}


async def probe_answers(factory: EmulatorFactory) -> dict[str, bytes]:
    """What an emulator holding m1 answers to each probe, as raw HTTP responses."""
    node = await gateway_node(factory)
    node.preload("m1")
    answers: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as http:
        for path in PROBES:
            headers = {"Authorization": f"Bearer {node.admin_key}"}
            async with http.get(node.url + path, headers=headers) as r:
                body = await r.read()
                kind = r.headers.get("Content-Type", "application/json")
                answers[path] = (
                    f"HTTP/1.1 {r.status} {r.reason}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
    await node.close()
    return answers


async def read_head(reader: asyncio.StreamReader) -> tuple[str, bytes] | None:
    """The path and body of the next request on a connection, or None at its end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return path, await reader.readexactly(length)


@pytest.fixture
async def hostile(
    tabby_emulator_factory: EmulatorFactory,
) -> AsyncIterator[Callable[[Inference], Awaitable[str]]]:
    """Start hostile nodes: ``await hostile(inference)`` is a node's URL."""
    answers = await probe_answers(tabby_emulator_factory)
    async with AsyncExitStack() as stack:

        async def start(inference: Inference) -> str:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                while (request := await read_head(reader)) is not None:
                    path, _ = request
                    if path in answers:
                        writer.write(answers[path])
                        await writer.drain()
                        continue
                    await inference(reader, writer)
                    return

            return await stack.enter_async_context(raw_server(handle))

        yield start


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def head_then_garbage(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(SSE_HEAD + chunk(b"{{{ not an event at all\n\n") + b"0\r\n\r\n")
    await writer.drain()


async def head_then_close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(SSE_HEAD)
    await writer.drain()


async def json_head_then_close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
    )
    await writer.drain()


async def pings_forever(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(SSE_HEAD)
    while True:
        writer.write(chunk(b": ping - now\r\n\r\n"))
        await writer.drain()
        await asyncio.sleep(0.01)  # the node's own pace, not a synchronisation


async def not_http(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
    await writer.drain()


async def huge_body(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    block = chunk(b" " * 1024 * 1024)
    while True:  # an answer that never ends
        writer.write(block)
        await writer.drain()


async def head_then_silence(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    await asyncio.Event().wait()


STALL = "[gateway]\nstall_timeout = 0.3\n"


@pytest.mark.parametrize(
    "inference",
    [head_then_garbage, head_then_close, pings_forever],
    ids=["garbage", "closed-after-head", "pings-only"],
)
async def test_a_hostile_stream_ends_in_an_error_event(
    hostile: Callable[[Inference], Awaitable[str]],
    connections: ConnectionCounter,
    http: aiohttp.ClientSession,
    inference: Inference,
) -> None:
    url_of_node = await hostile(inference)
    async with run_gateway({"a": url_of_node}, M1 + STALL) as (url, gateway):
        assert gateway.nodes["a"].holds("m1", "model")
        async with http.post(url + "/v1/completions", json=streamed()) as response:
            events = await guarded(stream_events(response))
        assert gateway.nodes["a"].slots["model"].in_flight == 0
        assert connections.held == 0
    assert events[-1]["error"]["code"] == "upstream_error"
    assert "[DONE]" not in events
    assert connections.held == 0


@pytest.mark.parametrize(
    "inference",
    [not_http, json_head_then_close, huge_body, head_then_silence],
    ids=["not-http", "closed-after-head", "huge", "silent-body"],
)
async def test_a_hostile_answer_to_a_plain_request_is_a_502(
    hostile: Callable[[Inference], Awaitable[str]],
    connections: ConnectionCounter,
    http: aiohttp.ClientSession,
    inference: Inference,
) -> None:
    url_of_node = await hostile(inference)
    async with run_gateway({"a": url_of_node}, M1 + STALL) as (url, gateway):
        async with http.post(url + "/v1/completions", json=plain()) as response:
            status = response.status
            data = await guarded(response.json(content_type=None))
        assert gateway.nodes["a"].slots["model"].in_flight == 0
        assert connections.held == 0
    assert status == 502
    assert data["error"]["code"] == "upstream_error"
    assert set(data["error"]) == {"message", "type", "code", "param"}


CAPPED = "[gateway]\nmax_answer_bytes = 1000\n"


def json_answer(size: int, *, chunked: bool) -> Inference:
    """A node answering a plain request with a JSON body of ``size`` bytes."""
    body = b'{"text": "' + b"x" * (size - 12) + b'"}'
    assert len(body) == size

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if chunked:  # in pieces, so no length is known up front
            pieces = b"".join(chunk(body[i : i + 100]) for i in range(0, size, 100))
            writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n" + pieces + b"0\r\n\r\n")
        else:
            writer.write(head + b"Content-Length: %d\r\n\r\n" % size + body)
        await writer.drain()

    return answer


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize(("size", "status"), [(1000, 200), (1001, 502)])
async def test_a_plain_answer_is_passed_up_to_max_answer_bytes(
    hostile: Callable[[Inference], Awaitable[str]],
    http: aiohttp.ClientSession,
    chunked: bool,
    size: int,
    status: int,
) -> None:
    url_of_node = await hostile(json_answer(size, chunked=chunked))
    async with run_gateway({"a": url_of_node}, M1 + CAPPED) as (url, gateway):
        async with http.post(url + "/v1/completions", json=plain()) as response:
            got = response.status
            body = await response.read()
        assert gateway.nodes["a"].slots["model"].in_flight == 0
    assert got == status
    if status == 200:
        assert len(body) == size  # passed on unchanged
    else:
        assert b'"upstream_error"' in body
        assert b"over 1000 bytes" in body
