"""``client.inference``: the OpenAI routes passed through raw, with the api key, never twice."""

from __future__ import annotations

import json
import socket

import pytest

from tabby_async import (
    AsyncTabbyClient,
    InvalidInputError,
    ModelNotLoadedError,
    TabbyConnectionError,
    Timeout,
)
from tabby_async.testing import TabbyEmulator

pytestmark = pytest.mark.emulator(models=["m"], reply_tokens=3)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_a_stream_comes_back_open_with_the_servers_frames(server: TabbyEmulator) -> None:
    server.preload("m", prompt_template="chatml")
    async with AsyncTabbyClient(
        server.url, api_key=server.api_key, admin_key=server.admin_key
    ) as client:
        body = json.dumps({**CHAT, "stream": True}).encode()
        async with await client.inference.chat_completions(body) as response:
            assert response.status == 200
            assert response.content_type == "text/event-stream"
            raw = await response.read()
    assert raw.endswith(b"data: [DONE]\r\n\r\n")
    assert b"m:1 " in raw and b"m:3 " in raw
    sent = [r for r in server.requests if r.path == "/v1/chat/completions"]
    assert len(sent) == 1
    # The plain api key only: inference never carries the admin key.
    assert "x-admin-key" not in sent[0].headers and "x-api-key" in sent[0].headers
    assert sent[0].raw == body


async def test_an_error_status_raises_the_sdks_error_once(server: TabbyEmulator) -> None:
    async with AsyncTabbyClient(server.url, api_key=server.api_key) as client:
        with pytest.raises(ModelNotLoadedError):
            await client.inference.completions(b'{"prompt": "x", "max_tokens": 2}')
    assert server.count("POST", "/v1/completions") == 1


async def test_a_refused_connection_says_nothing_was_sent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncTabbyClient(f"http://127.0.0.1:{port}", api_key="k") as client:
        with pytest.raises(TabbyConnectionError) as caught:
            await client.inference.embeddings(b"{}", timeout=Timeout(connect=5))
    assert caught.value.sent is False


async def test_a_body_that_is_not_bytes_is_refused_before_sending(server: TabbyEmulator) -> None:
    async with AsyncTabbyClient(server.url, api_key=server.api_key) as client:
        with pytest.raises(InvalidInputError) as caught:
            await client.inference.completions({"prompt": "x"})  # type: ignore[arg-type]
    assert caught.value.field == "body"
    assert server.count("POST", "/v1/completions") == 0


async def test_a_body_over_1_mib_reaches_the_server_whole(server: TabbyEmulator) -> None:
    # aiohttp warns of raw bytes past 1 MiB (an error under this suite's filters):
    # the SDK sends such a body in chunks, and the server, like TabbyAPI, takes any size.
    server.preload("m")
    # An unknown field the server ignores: the prompt stays within the context.
    fields = {"model": "m", "prompt": "x", "max_tokens": 2, "pad": "y" * (3 << 20)}
    body = json.dumps(fields).encode()
    async with AsyncTabbyClient(server.url, api_key=server.api_key) as client:
        response = await client.inference.completions(body)
        status = response.status
        response.close()
    assert status == 200
    sent = [r for r in server.requests if r.path == "/v1/completions"]
    assert [len(r.raw) for r in sent] == [len(body)]
