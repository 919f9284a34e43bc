"""The gateway given odd input: bodies, keys and routes a client should not send.

Every answer is OpenAI's error shape with one of the gateway's documented
codes, never an HTML or plain-text page, and never carries a key it was sent.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from tabby_async.gateway import GatewayCode
from tabby_async.testing import TabbyEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import forwarded, gateway_node, guarded, run_gateway, stream_events

KEY = "client-key-1"
CODES = set(GatewayCode.__args__)  # type: ignore[attr-defined]


@pytest.fixture
async def node(tabby_emulator_factory: EmulatorFactory) -> TabbyEmulator:
    server = await gateway_node(tabby_emulator_factory)
    server.preload("m1")
    return server


@pytest.fixture
async def gateway_url(node: TabbyEmulator) -> AsyncIterator[str]:
    async with run_gateway({"a": node}, "[models.m1]\n", api_keys=[KEY]) as (url, _):
        yield url


AUTH = {"Authorization": f"Bearer {KEY}"}


async def error_of(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """The ``error`` of an OpenAI-shaped error answer with ``status`` and a documented code."""
    raw = await response.read()
    assert response.status == status, raw[:300]
    assert response.content_type == "application/json", raw[:300]
    assert KEY.encode() not in raw
    error: dict[str, Any] = msgspec.json.decode(raw)["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["code"] in CODES
    return error


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[1, 2]",
        b'"m1"',
        b"null",
        b"{",
        b'{"model": 7, "prompt": "x"}',
        b'{"model": null, "prompt": "x"}',
        b'{"model": ["m1"], "prompt": "x"}',
        b'{"model": {"name": "m1"}, "prompt": "x"}',
        b'{"prompt": "x"}',
        b'{"model": "m\xff1", "prompt": "x"}',
        b'\xef\xbb\xbf{"model": "m1"}',
    ],
    ids=[
        "empty",
        "list",
        "string",
        "null",
        "truncated",
        "model-number",
        "model-null",
        "model-list",
        "model-object",
        "no-model",
        "invalid-utf8",
        "bom",
    ],
)
async def test_a_body_that_names_no_model_is_a_400_and_never_reaches_a_node(
    gateway_url: str, node: TabbyEmulator, http: aiohttp.ClientSession, body: bytes
) -> None:
    async with http.post(gateway_url + "/v1/completions", data=body, headers=AUTH) as r:
        error = await error_of(r, 400)
    assert error["code"] == "invalid_request"
    assert forwarded(node) == []


async def test_duplicate_keys_count_as_the_last_one_as_the_server_reads_them(
    gateway_url: str, node: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    body = b'{"model": "nope", "prompt": "x", "max_tokens": 2, "model": "m1"}'
    async with http.post(gateway_url + "/v1/completions", data=body, headers=AUTH) as r:
        assert r.status == 200
    assert [b["model"] for b in forwarded(node)] == ["m1"]


async def test_stream_given_as_a_string_that_the_node_takes_for_true_is_passed_as_a_stream(
    gateway_url: str, node: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    body = {"model": "m1", "prompt": "x", "max_tokens": 2, "stream": "true"}
    async with http.post(gateway_url + "/v1/completions", json=body, headers=AUTH) as r:
        assert r.status == 200
        assert r.content_type == "text/event-stream"
        events = await guarded(stream_events(r))
    assert events[-1] == "[DONE]"
    assert [b["stream"] for b in forwarded(node)] == ["true"]


async def test_a_body_of_10_mb_is_passed_to_the_node(
    gateway_url: str, node: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    # Sent as a file-like body, as aiohttp asks of large ones.
    body = {"model": "m1", "prompt": "x", "max_tokens": 2, "pad": "y" * (10 << 20)}
    data = io.BytesIO(msgspec.json.encode(body))
    async with http.post(gateway_url + "/v1/completions", data=data, headers=AUTH) as r:
        assert r.status == 200
    assert [len(b["pad"]) for b in forwarded(node)] == [10 << 20]


async def test_a_body_over_the_gateways_bound_is_a_413_in_openais_shape(
    gateway_url: str, node: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    body = io.BytesIO(b'{"model": "m1", "prompt": "' + b"y" * (65 << 20) + b'"}')
    async with http.post(gateway_url + "/v1/completions", data=body, headers=AUTH) as r:
        error = await error_of(r, 413)
    assert error["code"] == "body_too_large"
    assert forwarded(node) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer"},
        {"Authorization": KEY},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"x-api-key": ""},
        {"x-api-key": "wrong", "Authorization": f"Bearer {KEY}"},
        {"x-api-key": f"{KEY} extra"},
        {"Authorization": f"Bearer  {KEY}"},
        {"Authorization": f"Bearer\t{KEY}"},
    ],
    ids=[
        "none",
        "empty-bearer",
        "bare-bearer",
        "no-scheme",
        "basic",
        "longer",
        "empty-x-api-key",
        "wrong-x-api-key-right-bearer",
        "key-with-a-word-more",
        "two-spaces",
        "tab",
    ],
)
async def test_a_request_without_a_valid_key_is_a_401(
    gateway_url: str, node: TabbyEmulator, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    # x-api-key is read first when it is not empty, as the server reads it; the
    # key is the word after "Bearer" and one space.
    body = {"model": "m1", "prompt": "x"}
    async with http.post(gateway_url + "/v1/completions", json=body, headers=headers) as r:
        error = await error_of(r, 401)
    assert error["code"] == "unauthorized" and error["type"] == "authentication_error"
    assert forwarded(node) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"bearer {KEY}"},
        {"Authorization": f"Bearer {KEY} more words"},
        {"x-api-key": KEY, "Authorization": "Bearer wrong"},
        {"x-api-key": "", "Authorization": f"Bearer {KEY}"},
    ],
    ids=["lower-case", "words-after", "x-api-key-first", "empty-x-api-key-then-bearer"],
)
async def test_a_valid_key_is_found_as_the_server_finds_it(
    gateway_url: str, node: TabbyEmulator, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    body = {"model": "m1", "prompt": "x", "max_tokens": 2}
    async with http.post(gateway_url + "/v1/completions", json=body, headers=headers) as r:
        assert r.status == 200
    assert len(forwarded(node)) == 1


async def test_a_key_that_is_not_utf8_is_a_401_not_a_500(
    gateway_url: str, node: TabbyEmulator
) -> None:
    host, port = gateway_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"model": "m1", "prompt": "x"}'
    writer.write(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xff\xfe" + KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    answer = await guarded(reader.read())
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b'"code":"unauthorized"' in answer
    assert forwarded(node) == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/completions", 405),
        ("PUT", "/v1/chat/completions", 405),
        ("DELETE", "/v1/embeddings", 405),
        ("OPTIONS", "/v1/chat/completions", 405),  # a browser's preflight
        ("POST", "/v1/models", 405),
        ("GET", "/v1/nothing", 404),
        ("POST", "/v1/model/load", 404),
        ("GET", "/", 404),
    ],
)
async def test_an_unknown_route_or_method_is_an_openai_shaped_error(
    gateway_url: str, http: aiohttp.ClientSession, method: str, path: str, status: int
) -> None:
    headers = {**AUTH, "Origin": "http://example.test", "Access-Control-Request-Method": "POST"}
    async with http.request(method, gateway_url + path, headers=headers) as r:
        error = await error_of(r, status)
        assert not [h for h in r.headers if h.lower().startswith("access-control-")]
    assert error["code"] == ("method_not_allowed" if status == 405 else "not_found")
    if status == 405:
        assert r.headers["Allow"]
