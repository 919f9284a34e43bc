"""The emulator's inference routes checked against the real server's source, over raw HTTP.

``/v1/completions``, ``/v1/chat/completions`` (whole and streamed: shapes, SSE
framing, the usage chunk, ``[DONE]``), ``/v1/embeddings``, their errors (no
model, a named model with none loaded, no template, a streamed completion
without ``max_tokens``, bad bodies, a prompt over the context), the api key,
and what happens to a generation when its client goes away, on an explicit
unload and on a swap. Then the ``openai`` client against it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import openai
import pytest

from tabby_async.testing import EmulatedModel, Generations, GenerationStats, TabbyEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import guarded, run_cli
from tests.test_emulator import PING_RE, admin, api

pytestmark = pytest.mark.emulator(
    models=["m", "n", "org/exl3/4.0bpw", EmulatedModel("bare", prompt_template=None)],
    embeddings=["e"],
    reply_tokens=3,
    ping_interval=0.05,
)

for_chat = {"prompt_template": "chatml"}
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
ID_RE = re.compile(r"[0-9a-f]{32}")
FRAME_END = b"\r\n\r\n"
NO_MODEL = (503, {"detail": "No models are currently loaded."})


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    server: TabbyEmulator,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """``(status, body)``: JSON parsed, plain text as text."""
    headers = api(server) if headers is None else headers
    async with http.post(server.url + path, json=body, headers=headers) as r:
        raw = await r.read()
        if r.headers["Content-Type"] == "application/json":
            return r.status, msgspec.json.decode(raw)
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        return r.status, raw.decode()


async def stream(
    http: aiohttp.ClientSession, server: TabbyEmulator, path: str, body: Any
) -> list[bytes]:
    """The events of a whole SSE answer (pings left out), each without its CRLF CRLF."""
    async with http.post(server.url + path, json=body, headers=api(server)) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        raw = await r.read()
    assert raw.endswith(FRAME_END)
    return [e for e in raw.split(FRAME_END)[:-1] if not e.startswith(b": ping - ")]


def chunks(events: list[bytes]) -> list[dict[str, Any]]:
    """The JSON of ``data:`` events before ``[DONE]``, which must end the stream."""
    assert events[-1] == b"data: [DONE]"
    out = []
    for event in events[:-1]:
        assert event.startswith(b"data: {")
        out.append(json.loads(event[len(b"data: ") :]))
    return out


async def load_stream(http: aiohttp.ClientSession, server: TabbyEmulator, name: str) -> bytes:
    """The whole body of a model load's stream."""
    body = {"model_name": name}
    async with http.post(server.url + "/v1/model/load", json=body, headers=admin(server)) as r:
        assert r.status == 200
        return await r.read()


async def next_event(resp: aiohttp.ClientResponse) -> bytes:
    return await guarded(resp.content.readuntil(FRAME_END))


def started(n: int = 1) -> Any:
    return lambda g: g.stats().started >= n


# --------------------------------------------------------------------------- completions


async def test_completion_whole_has_the_servers_shape(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.preload("org/exl3/4.0bpw")
    status, body = await post(http, server, "/v1/completions", {"prompt": "hi", "max_tokens": 5})
    assert status == 200
    assert list(body) == ["id", "choices", "created", "model", "object", "usage"]
    assert body["id"].startswith("cmpl-") and ID_RE.fullmatch(body["id"][5:])
    assert isinstance(body["created"], int)
    # The card id: the folder's last segment. Three tokens, then EOS.
    assert body["model"] == "4.0bpw" and body["object"] == "text_completion"
    assert body["choices"] == [
        {
            "index": 0,
            "finish_reason": "stop",
            "eos_reason": "stop_token",
            "logprobs": None,
            "text": "4.0bpw:1 4.0bpw:2 4.0bpw:3 ",
        }
    ]
    assert body["usage"] is None  # only with stream_options.include_usage


async def test_completion_usage_and_length_when_max_tokens_stops_it(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.preload("m")
    request = {"prompt": "hi", "max_tokens": 2, "stream_options": {"include_usage": True}}
    status, body = await post(http, server, "/v1/completions", request)
    assert status == 200
    assert body["choices"][0]["text"] == "m:1 m:2 "
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["eos_reason"] == "max_new_tokens"
    # "hi" with a BOS: three toy tokens.
    assert body["usage"] == {
        "prompt_tokens": 3,
        "prompt_time": 0.0,
        "prompt_tokens_per_sec": "Indeterminate",
        "completion_tokens": 2,
        "completion_time": 0.0,
        "completion_tokens_per_sec": "Indeterminate",
        "total_tokens": 5,
        "total_time": 0.0,
    }
    assert server.generations.stats("m").finished == 1


async def test_completion_aliases_list_prompts_and_n(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.preload("m")
    request = {"prompt": ["a", "b"], "n": 2, "max_completion_tokens": 1}
    status, body = await post(http, server, "/v1/completions", request)
    assert status == 200
    assert [(c["index"], c["text"]) for c in body["choices"]] == [(i, "m:1 ") for i in range(4)]


async def test_completion_stream_frames(http: aiohttp.ClientSession, server: TabbyEmulator) -> None:
    server.preload("m")
    events = await stream(
        http, server, "/v1/completions", {"prompt": "hi", "max_tokens": 2, "stream": True}
    )
    # Python's json.dumps: a space after every ':' and ','.
    assert events[0].startswith(b'data: {"id": "chatcmpl-')
    got = chunks(events)
    rid = got[0]["id"]
    assert ID_RE.fullmatch(rid[len("chatcmpl-") :])
    for chunk in got:
        assert list(chunk) == ["id", "object", "choices", "created", "model_name"]
        assert chunk["id"] == rid and chunk["object"] == "text_completion"
        assert chunk["model_name"] == "m"
    assert [c["choices"] for c in got] == [
        [{"index": 0, "text": "m:1 ", "finish_reason": None}],
        [{"index": 0, "text": "m:2 ", "finish_reason": None}],
        [{"index": 0, "text": "", "finish_reason": "length", "eos_reason": "max_new_tokens"}],
    ]


async def test_completion_stream_usage_chunk_carries_the_finish(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.preload("m")
    request = {
        "prompt": "hi",
        "max_tokens": 9,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    got = chunks(await stream(http, server, "/v1/completions", request))
    assert [c["choices"][0]["text"] for c in got] == ["m:1 ", "m:2 ", "m:3 ", ""]
    last = got[-1]
    assert list(last) == ["id", "object", "choices", "created", "usage", "model_name"]
    assert last["choices"] == [{"index": 0, "text": "", "finish_reason": "stop"}]
    assert last["usage"]["completion_tokens"] == 3 and last["usage"]["total_tokens"] == 6


async def test_streamed_choices_get_five_more_tokens_each(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    # The server raises a streamed completion's max_tokens by 5 per choice.
    server.preload("m")
    request = {"prompt": "hi", "max_tokens": 1, "n": 2, "stream": True}
    got = chunks(await stream(http, server, "/v1/completions", request))
    texts: dict[int, str] = {0: "", 1: ""}
    finishes = {}
    for chunk in got:
        choice = chunk["choices"][0]
        texts[choice["index"]] += choice["text"]
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "m:1 ", 1: "m:1 m:2 m:3 "}
    assert finishes == {0: "length", 1: "stop"}


async def test_streamed_completion_without_max_tokens_fails_in_the_stream(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.preload("m")
    events = await stream(http, server, "/v1/completions", {"prompt": "hi", "stream": True})
    assert events == [
        b'data: {"error":{"message":"Completion aborted. Please check the server console.",'
        b'"trace":null}}'
    ]
    assert server.generations.stats().started == 0
    # Whole, it fills the room left in the context; a sampler default also does.
    status, body = await post(http, server, "/v1/completions", {"prompt": "hi"})
    assert (status, body["choices"][0]["finish_reason"]) == (200, "stop")
    overrides = {"overrides": {"max_tokens": {"override": 1}}}
    switched = await post(http, server, "/v1/sampling/override/switch", overrides, admin(server))
    assert switched[0] == 200
    got = chunks(await stream(http, server, "/v1/completions", {"prompt": "hi", "stream": True}))
    assert got[-1]["choices"][0]["finish_reason"] == "length"


# --------------------------------------------------------------------------- chat


async def test_chat_whole_has_the_servers_shape(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.preload("m", **for_chat)
    request = {**CHAT, "stream_options": {"include_usage": True}}
    status, body = await post(http, server, "/v1/chat/completions", request)
    assert status == 200
    assert list(body) == ["id", "choices", "created", "model", "object", "usage"]
    assert body["id"].startswith("cmpl-")  # the server's chat answers use it too
    assert body["object"] == "chat.completion" and body["model"] == "m"
    assert body["choices"] == [
        {
            "index": 0,
            "finish_reason": "stop",
            "eos_reason": "stop_token",
            "stop_str": "</s>",
            "message": {
                "role": "assistant",
                "content": "m:1 m:2 m:3 ",
                "reasoning_content": None,
                "tool_calls": None,
                "tool_call_id": None,
            },
            "logprobs": None,
        }
    ]
    # The toy render "user: hi\n" (9 bytes) and a BOS.
    assert body["usage"]["prompt_tokens"] == 10 and body["usage"]["completion_tokens"] == 3


async def test_chat_stream_frames(http: aiohttp.ClientSession, server: TabbyEmulator) -> None:
    server.preload("m", **for_chat)
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    got = chunks(await stream(http, server, "/v1/chat/completions", request))
    for chunk in got[:-1]:
        assert list(chunk) == ["id", "object", "created", "choices", "model"]
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == "m"
    assert [c["choices"][0]["delta"] for c in got] == [
        {"content": "m:1 "},
        {"content": "m:2 "},
        {"content": "m:3 "},
        {},
    ]
    assert list(got[-1]) == ["id", "object", "created", "choices", "usage", "model"]
    assert got[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    # Without usage the finish has its own chunk, with the eos reason.
    got = chunks(await stream(http, server, "/v1/chat/completions", {**CHAT, "stream": True}))
    assert got[-1]["choices"] == [
        {"index": 0, "delta": {}, "finish_reason": "stop", "eos_reason": "stop_token"}
    ]
    assert "usage" not in got[-1]


async def test_chat_without_a_template_is_refused(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.preload("bare")
    for request in (CHAT, {**CHAT, "stream": True}):
        assert await post(http, server, "/v1/chat/completions", request) == (
            422,
            {"detail": "Chat completions are disabled because a prompt template is not set."},
        )


# --------------------------------------------------------------------------- no model, bad bodies


async def test_no_model_loaded(http: aiohttp.ClientSession, server: TabbyEmulator) -> None:
    for path, body in (("/v1/completions", {"prompt": "hi"}), ("/v1/chat/completions", CHAT)):
        assert await post(http, server, path, body) == NO_MODEL
        assert await post(http, server, path, {**body, "stream": True}) == NO_MODEL
        # Naming a model with none loaded: the server's crash, a bare 500.
        assert await post(http, server, path, {**body, "model": "m"}) == (
            500,
            "Internal Server Error",
        )


async def test_model_field_is_ignored_without_inline_loading(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.preload("m")
    status, body = await post(
        http, server, "/v1/completions", {"prompt": "x", "model": "n"}, admin(server) | api(server)
    )
    assert (status, body["model"], server.loaded) == (200, "m", "m")
    assert server.count("POST", "/v1/model/load") == 0


async def test_inline_loading_needs_the_admin_key(
    http: aiohttp.ClientSession, tabby_emulator_factory: EmulatorFactory
) -> None:
    server = await tabby_emulator_factory(models=["m", "n"], inline_model_loading=True)
    server.preload("m")
    status, body = await post(http, server, "/v1/completions", {"prompt": "x", "model": "n"})
    assert status == 401
    assert body == {"detail": "Unable to switch model to n because an admin key isn't provided"}
    headers = {"x-api-key": server.admin_key}
    status, body = await post(
        http, server, "/v1/completions", {"prompt": "x", "model": "n"}, headers
    )
    assert (status, body["model"], server.loaded) == (200, "n", "n")
    # A name that is no folder is skipped: the loaded model answers.
    status, body = await post(
        http, server, "/v1/completions", {"prompt": "x", "model": "zz"}, headers
    )
    assert (status, body["model"]) == (200, "n")


async def test_bad_bodies(http: aiohttp.ClientSession, server: TabbyEmulator) -> None:
    status, body = await post(http, server, "/v1/completions", {"max_tokens": -1, "n": 0})
    assert status == 422  # before the no-model 503
    assert body["detail"] == [
        {
            "type": "greater_than_equal",
            "loc": ["body", "max_tokens"],
            "msg": "Input should be greater than or equal to 0",
            "input": -1,
            "ctx": {"ge": 0},
        },
        {
            "type": "greater_than_equal",
            "loc": ["body", "n"],
            "msg": "Input should be greater than or equal to 1",
            "input": 0,
            "ctx": {"ge": 1},
        },
        {
            "type": "missing",
            "loc": ["body", "prompt"],
            "msg": "Field required",
            "input": {"max_tokens": -1, "n": 0},
        },
    ]
    status, body = await post(http, server, "/v1/chat/completions", {})
    assert status == 422 and [e["loc"] for e in body["detail"]] == [["body", "messages"]]


async def test_a_prompt_over_the_context_is_a_400(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.preload("m", max_seq_len=8)
    for stream_it in (False, True):
        request = {"prompt": "x" * 8, "max_tokens": 1, "stream": stream_it}
        assert await post(http, server, "/v1/completions", request) == (
            400,
            {"detail": "Prompt length 9 exceeds the available context size of 8 tokens"},
        )


# --------------------------------------------------------------------------- auth


async def test_inference_routes_take_the_api_key(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.preload("m", **for_chat)
    for path, body in (
        ("/v1/completions", {"prompt": "hi"}),
        ("/v1/chat/completions", CHAT),
        ("/v1/embeddings", {"input": "hi"}),
    ):
        missing = (401, {"detail": "Please provide an API key"})
        assert await post(http, server, path, body, {}) == missing
        assert await post(http, server, path, body, admin(server)) == missing
        wrong = {"x-api-key": "nope"}
        assert await post(http, server, path, body, wrong) == (401, {"detail": "Invalid API key"})
        bearer = {"Authorization": f"Bearer {server.api_key}"}
        assert (await post(http, server, path, body, bearer))[0] != 401
        assert (await post(http, server, path, body, {"x-api-key": server.admin_key}))[0] != 401


# --------------------------------------------------------------------------- embeddings


async def test_embeddings(http: aiohttp.ClientSession, server: TabbyEmulator) -> None:
    assert await post(http, server, "/v1/embeddings", {"input": "hi"}) == (
        503,
        {"detail": "No embedding models are currently loaded."},
    )
    loaded = await post(
        http, server, "/v1/model/embedding/load", {"embedding_model_name": "e"}, admin(server)
    )
    assert loaded[0] == 200
    status, body = await post(http, server, "/v1/embeddings", {"input": ["hi", "there"]})
    assert status == 200
    assert list(body) == ["object", "data", "model", "usage"]
    assert body["object"] == "list" and body["model"] == "e"
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7, "completion_tokens": 0}
    first, second = body["data"]
    assert (first["object"], first["index"], second["index"]) == ("embedding", 0, 1)
    assert len(first["embedding"]) == 8 and first["embedding"] != second["embedding"]
    # Deterministic, and base64 is the same float32 values.
    again = await post(http, server, "/v1/embeddings", {"input": "hi", "encoding_format": "base64"})
    packed = base64.b64decode(again[1]["data"][0]["embedding"])
    assert list(struct.unpack("<8f", packed)) == first["embedding"]
    status, body = await post(http, server, "/v1/embeddings", {"inputs": "x"})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "input"]


# --------------------------------------------------------------------------- cancellation


async def test_a_client_that_goes_away_cancels_its_generation(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.add_model(EmulatedModel("slow", token_delay=3600))
    server.preload("slow")
    books: Generations = server.generations
    for body in ({"prompt": "hi", "max_tokens": 4, "stream": True}, {"prompt": "hi"}):
        task = asyncio.create_task(post(http, server, "/v1/completions", body))
        await books.wait_for(lambda g: len(g.running) == 1)
        (running,) = books.running
        assert (running.model, running.route) == ("slow", "/v1/completions")
        assert running.stream is bool(body.get("stream"))
        task.cancel()  # closes the connection
        await asyncio.gather(task, return_exceptions=True)
        await books.wait_for(lambda g: not g.running)
        assert running.outcome == "cancelled"
    assert books.stats("slow").cancelled == 2 and books.stats("slow").finished == 0


async def test_an_unload_cancels_a_stream_which_then_only_pings(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.add_model(EmulatedModel("chatty", token_delay=0.01, reply_tokens=10**6))
    server.preload("chatty")
    body = {"prompt": "hi", "max_tokens": 10**6, "stream": True}
    async with http.post(server.url + "/v1/completions", json=body, headers=api(server)) as r:
        assert (await next_event(r)).startswith(b"data: {")
        unloaded = await post(http, server, "/v1/model/unload", None, admin(server))
        assert unloaded == (200, None)
        assert server.generations.stats("chatty").cancelled == 1
        stats = server.generations.stats("chatty")
        pings = 0
        while pings < 3:  # what comes now: chunks queued before the unload, then pings
            event = await next_event(r)
            if PING_RE.fullmatch(event):
                pings += 1
            else:
                assert pings == 0 and b'"finish_reason": null' in event
        assert not r.content.at_eof()  # still open: no finish, no [DONE]
    assert stats.running == 0


async def test_an_unload_cuts_a_whole_answer_short_as_stopped(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.add_model(EmulatedModel("chatty", token_delay=0.01, reply_tokens=10**6))
    server.preload("chatty")
    body = {"prompt": "hi", "stream_options": {"include_usage": True}}
    task = asyncio.create_task(post(http, server, "/v1/completions", body))
    await server.generations.wait_for(lambda g: bool(g.running) and g.running[0].tokens >= 2)
    assert (await post(http, server, "/v1/model/unload", None, admin(server)))[0] == 200
    status, answer = await guarded(task)
    assert status == 200
    (choice,) = answer["choices"]
    assert choice["text"].startswith("chatty:1 chatty:2 ")
    assert (choice["finish_reason"], choice["eos_reason"], answer["usage"]) == ("stop", None, None)


async def test_a_swap_waits_for_running_generations(
    http: aiohttp.ClientSession, server: TabbyEmulator
) -> None:
    server.add_model(EmulatedModel("slow", token_delay=3600))
    server.preload("slow")
    books = server.generations
    body = {"prompt": "hi", "max_tokens": 4, "stream": True}
    async with http.post(server.url + "/v1/completions", json=body, headers=api(server)) as gen:
        await books.wait_for(started())
        load = asyncio.create_task(load_stream(http, server, "n"))
        await books.wait_for(lambda g: g.swap_waiting)
        # The old model stays loaded and in use meanwhile; nothing is cancelled.
        assert server.loaded == "slow" and not server.is_loading
        assert books.stats("slow").running == 1
        # A request that comes in now gets its head, and fails once the old model is gone.
        async with http.post(
            server.url + "/v1/completions", json=body, headers=api(server)
        ) as late:
            assert late.status == 200
            gen.close()  # its client goes away: the last generation ends
            await guarded(server.wait_loaded("n"))
            assert await guarded(late.read()) == (
                b'data: {"error":{"message":"Completion aborted. Please check the server '
                b'console.","trace":null}}\r\n\r\n'
            )
    assert (await guarded(load)).endswith(
        b'data: {"model_type":"model","module":4,"modules":4,"status":"finished"}\r\n\r\n'
    )
    assert books.stats("slow") == GenerationStats(started=1, finished=0, cancelled=1)


# --------------------------------------------------------------------------- a real client


async def test_the_openai_client_talks_to_it(server: TabbyEmulator) -> None:
    server.preload("m", **for_chat)
    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.api_key) as client:
        reply = await client.chat.completions.create(
            model="anything", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert reply.choices[0].message.content == "m:1 m:2 "
        assert reply.choices[0].finish_reason == "length" and reply.model == "m"
        parts = []
        finish = None
        usage = None
        events = await client.chat.completions.create(
            model="anything",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for event in events:
            for choice in event.choices:
                parts.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
            usage = event.usage or usage
        assert "".join(parts) == "m:1 m:2 m:3 " and finish == "stop"
        assert usage is not None and usage.completion_tokens == 3


async def test_the_emulator_command_takes_a_token_delay(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[dict[str, Any]] = []

    class Recorder(TabbyEmulator):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(kwargs)
            raise ValueError("token_delay recorded")

    monkeypatch.setattr("tabby_async.testing.TabbyEmulator", Recorder)
    result = await run_cli(capsys, "emulator", "--token-delay", "0.25", "--port", "0")
    assert built[0]["token_delay"] == 0.25
    assert result.code == 2 and "token_delay recorded" in result.err
    result = await run_cli(capsys, "emulator", "--token-delay", "-1")
    assert result.code == 2
