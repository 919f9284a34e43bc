"""The gateway over emulated nodes: routing, loads on demand, queues, by what the nodes saw."""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
import pytest

from tabby_async.testing import EmulatedModel
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import (
    forwarded,
    gateway_node,
    guarded,
    node_loads,
    node_unloads,
    post_completion,
    run_gateway,
    started,
    stream_events,
)


def chat(model: str, *, stream: bool = False) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


CATALOG = """
[models.m1]
[models.m2]
[models.m3]
"""


async def test_a_cold_model_is_loaded_on_demand_and_answers(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    async with run_gateway({"a": a}, CATALOG) as (url, _):
        status, data, _ = await guarded(post_completion(http, url, "m1"))
    assert status == 200
    assert data["choices"][0]["text"].startswith("m1:1 ")
    assert node_loads(a) == ["m1"]
    # The forwarded body names the folder; the rest of it is the client's.
    assert forwarded(a) == [{"model": "m1", "prompt": "hello", "max_tokens": 3}]


async def test_waiting_requests_share_one_load_and_are_released_together(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    async with run_gateway({"a": a}, CATALOG) as (url, _):
        answers = await guarded(
            asyncio.gather(*(post_completion(http, url, "m2") for _ in range(6)))
        )
    assert [s for s, _, _ in answers] == [200] * 6
    assert all(d["choices"][0]["text"].startswith("m2:1 ") for _, d, _ in answers)
    assert node_loads(a) == ["m2"]


async def test_a_loaded_model_goes_to_the_node_with_the_fewest_requests_in_flight(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory, token_delay=0.05)
    b = await gateway_node(tabby_emulator_factory, token_delay=0.05)
    a.preload("m1")
    b.preload("m1")
    catalog = "[models.m1]\nmax_replicas = 2\n"
    async with run_gateway({"a": a, "b": b}, catalog) as (url, _):
        first = asyncio.ensure_future(post_completion(http, url, "m1", max_tokens=20))
        await guarded(started([a, b], 1))
        second = asyncio.ensure_future(post_completion(http, url, "m1", max_tokens=20))
        await guarded(started([a, b], 2))
        await guarded(asyncio.gather(first, second))
    # One each: the second went where nothing was running.
    assert a.generations.stats().started == 1
    assert b.generations.stats().started == 1
    assert node_loads(a) == node_loads(b) == []


async def test_a_model_outside_the_catalog_is_a_404_and_a_bad_body_a_400(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    async with run_gateway({"a": a}, CATALOG) as (url, _):
        missing = await post_completion(http, url, "m4")
        async with http.post(url + "/v1/completions", data=b"[1, 2") as r:
            broken = r.status, await r.json()
        async with http.post(url + "/v1/completions", json={"prompt": "x"}) as r:
            nameless = r.status, await r.json()
        async with http.post(url + "/v1/embeddings", json={"model": "m1", "input": "x"}) as r:
            wrong_kind = r.status, await r.json()
    assert missing[0] == 404 and missing[1]["error"]["code"] == "model_not_found"
    assert missing[1]["error"]["type"] == "invalid_request_error"
    assert broken[0] == 400 and broken[1]["error"]["code"] == "invalid_request"
    assert nameless[0] == 400 and "'model'" in nameless[1]["error"]["message"]
    assert wrong_kind[0] == 404
    assert a.requests == [r for r in a.requests if not r.path.startswith("/v1/c")]
    assert node_loads(a) == []


async def test_client_keys_are_checked_as_tabbyapi_takes_them(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    a.preload("m1")
    body = {"model": "m1", "prompt": "x", "max_tokens": 2}
    async with run_gateway({"a": a}, CATALOG, api_keys=["k1", "k2"]) as (url, _):
        none = await http.post(url + "/v1/completions", json=body)
        wrong = await http.post(url + "/v1/completions", json=body, headers={"x-api-key": "k3"})
        bearer = await http.post(
            url + "/v1/completions", json=body, headers={"Authorization": "Bearer k2"}
        )
        header = await http.post(url + "/v1/completions", json=body, headers={"x-api-key": "k1"})
        listing = await http.get(url + "/v1/models")
        health = await http.get(url + "/health")
        metrics = await http.get(url + "/metrics")
        refused = await none.json()
    assert [none.status, wrong.status, bearer.status, header.status] == [401, 401, 200, 200]
    assert refused["error"]["code"] == "unauthorized"
    assert listing.status == 401
    # /health and /metrics carry no secret and need no key.
    assert health.status == 200 and metrics.status == 200
    assert len(forwarded(a)) == 2


async def test_no_key_reaches_a_client_a_metric_or_a_log(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = await gateway_node(
        tabby_emulator_factory,
        api_key="node-api-secret",
        admin_key="node-admin-secret",
        models=[EmulatedModel("m1", fail_at=0, fail_message="failed with node-admin-secret")],
    )
    caplog.set_level(logging.DEBUG)
    client = {"Authorization": "Bearer client-secret"}
    seen: list[str] = []
    async with run_gateway({"a": a}, CATALOG, api_keys=["client-secret"]) as (url, gateway):
        for path in ("/v1/completions", "/v1/chat/completions"):
            async with http.post(url + path, json=chat("m1"), headers=client) as r:
                seen.append(await r.text() + str(dict(r.headers)))
        for path in ("/v1/models", "/health", "/metrics", "/status"):
            async with http.get(url + path, headers=client) as r:
                seen.append(await r.text())
        seen.append(repr(gateway) + repr(gateway.status()))
    seen.append(caplog.text)
    for secret in ("node-api-secret", "node-admin-secret", "client-secret"):
        assert not [text for text in seen if secret in text], secret
    assert node_loads(a)  # the load really ran (and failed), so the admin key was used


async def test_v1_models_lists_the_catalog_and_where_each_model_is_loaded(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    b = await gateway_node(tabby_emulator_factory)
    a.preload("m2")
    catalog = CATALOG + '[models.e]\nkind = "embedding"\nmodel_name = "bge"\n'
    b_emb = await gateway_node(tabby_emulator_factory, embeddings=["bge"])
    async with run_gateway({"a": a, "b": b, "c": b_emb}, catalog) as (url, _):
        listing = await (await http.get(url + "/v1/models")).json()
        status = await (await http.get(url + "/status")).json()
    assert listing["object"] == "list"
    rows = {row["id"]: row for row in listing["data"]}
    assert list(rows) == ["m1", "m2", "m3", "e"]
    assert rows["m2"]["loaded_on"] == ["a"] and rows["m1"]["loaded_on"] == []
    assert rows["e"]["kind"] == "embedding" and rows["m1"]["object"] == "model"
    assert [n["name"] for n in status["nodes"]] == ["a", "b", "c"]
    assert status["nodes"][0]["model"]["model"] == "m2"
    assert status["queues"] == {"m1": 0, "m2": 0, "m3": 0, "e": 0}


async def test_embeddings_go_to_a_node_with_that_embedding_model_beside_its_llm(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory, embeddings=["bge"])
    a.preload("m1")
    catalog = CATALOG + '[models.e]\nkind = "embedding"\nmodel_name = "bge"\n'
    async with run_gateway({"a": a}, catalog) as (url, gateway):
        async with http.post(url + "/v1/embeddings", json={"model": "e", "input": "x"}) as r:
            status, data = r.status, await r.json()
        assert gateway.nodes["a"].holds("m1", "model")
    assert status == 200 and data["object"] == "list" and data["data"][0]["embedding"]
    assert a.loaded_embedding == "bge" and a.loaded == "m1"
    assert forwarded(a, "/v1/embeddings") == [{"model": "bge", "input": "x"}]


async def test_a_streamed_chat_is_passed_through_event_by_event(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    a.preload("m1", prompt_template="chatml")
    async with (
        run_gateway({"a": a}, CATALOG) as (url, _),
        http.post(url + "/v1/chat/completions", json=chat("m1", stream=True)) as r,
    ):
        assert r.headers["Content-Type"].startswith("text/event-stream")
        through = await r.read()
    async with http.post(
        a.url + "/v1/chat/completions",
        json=chat("m1", stream=True),
        headers={"x-api-key": a.api_key},
    ) as r:
        direct = await r.read()
    # Byte for byte but for the ids and times in each chunk.
    shape = re.compile(rb'"(id|created)": ?("[^"]*"|[\d.]+)|: ping[^\r]*')
    assert shape.sub(b"", through) == shape.sub(b"", direct)
    assert through.endswith(b"data: [DONE]\r\n\r\n")


async def test_a_streamed_completion_without_max_tokens_gets_the_servers_error_event(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    a.preload("m1")
    async with run_gateway({"a": a}, CATALOG) as (url, _):
        body = {"model": "m1", "prompt": "x", "stream": True}
        async with http.post(url + "/v1/completions", json=body) as r:
            status, events = r.status, await stream_events(r)
    assert status == 200
    # The server's own error event, passed on as it is, with nothing after it.
    assert len(events) == 1 and "error" in events[0] and "trace" in events[0]["error"]


async def test_a_change_made_outside_the_gateway_is_followed_by_the_refresh(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    async with run_gateway({"a": a}, CATALOG) as (url, gateway):
        a.preload("m3")
        await gateway.refresh()
        status, data, _ = await guarded(post_completion(http, url, "m3"))
    assert status == 200 and data["choices"][0]["text"].startswith("m3:1 ")
    assert node_loads(a) == []


@pytest.mark.parametrize(("evict_unknown", "status"), [(False, 503), (True, 200)])
async def test_a_model_outside_the_catalog_is_left_alone_unless_eviction_is_allowed(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    evict_unknown: bool,
    status: int,
) -> None:
    a = await gateway_node(tabby_emulator_factory, models=["m1", "theirs"])
    a.preload("theirs")
    catalog = f"[models.m1]\n[gateway]\nevict_unknown = {str(evict_unknown).lower()}\n"
    async with run_gateway({"a": a}, catalog) as (url, _):
        got = await guarded(post_completion(http, url, "m1"))
    assert got[0] == status
    assert node_loads(a) == ([] if status == 503 else ["m1"])
    assert a.loaded == ("theirs" if status == 503 else "m1")


async def test_a_nested_folder_the_card_cannot_prove_is_left_to_the_server(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    # The card says only "4.0bpw": the gateway claims nothing, sends the load,
    # and the server's "already loaded" no-op proves the folder.
    a = await gateway_node(tabby_emulator_factory)
    a.preload("org/nested/4.0bpw")
    catalog = '[models.n]\nmodel_name = "org/nested/4.0bpw"\n'
    async with run_gateway({"a": a}, catalog) as (url, gateway):
        assert gateway.status()["nodes"][0]["model"]["unverified"] == "4.0bpw"
        status, data, _ = await guarded(post_completion(http, url, "n"))
    assert status == 200 and data["choices"][0]["text"].startswith("4.0bpw:1 ")
    assert node_loads(a) == ["org/nested/4.0bpw"]
    assert node_unloads(a) == 0 and a.loaded == "org/nested/4.0bpw"
