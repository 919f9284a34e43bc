"""Tests of ``tabby_async.testing``: the emulator checked against PROTOCOL.md.

Everything goes over real HTTP with a raw ``aiohttp.ClientSession`` (never the SDK),
so these tests pin down the bytes a client of the real TabbyAPI server would see.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import msgspec
import pytest

from tabby_async import cli
from tabby_async.testing import EmulatedModel, TabbyEmulator, run_emulator, serve_forever
from tabby_async.testing import pytest_plugin as _plugin

# The plugin's fixtures, also when the package is not installed (no entry point).
tabby_emulator = _plugin.tabby_emulator
tabby_emulator_factory = _plugin.tabby_emulator_factory

Factory = _plugin.EmulatorFactory

PING_RE = re.compile(rb": ping - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\+00:00\r\n\r\n")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def admin(server: TabbyEmulator) -> dict[str, str]:
    return {"x-admin-key": server.admin_key}


def api(server: TabbyEmulator) -> dict[str, str]:
    return {"x-api-key": server.api_key}


def frame(model_type: str, module: int, modules: int, status: str) -> bytes:
    return b'data: {"model_type":"%s","module":%d,"modules":%d,"status":"%s"}\r\n\r\n' % (
        model_type.encode(),
        module,
        modules,
        status.encode(),
    )


def progress(model_type: str, n: int) -> list[bytes]:
    return [frame(model_type, i, n, "processing") for i in range(1, n + 1)] + [
        frame(model_type, n, n, "finished")
    ]


def error_frame(message: str) -> bytes:
    return b'data: {"error":{"message":"%s","trace":null}}\r\n\r\n' % message.encode()


async def read_http_chunks(resp: aiohttp.ClientResponse) -> list[bytes]:
    """The body split at HTTP chunk boundaries (fails if a chunk spans two events)."""
    chunks: list[bytes] = []
    buffer = b""
    async for data, end_of_chunk in resp.content.iter_chunks():
        buffer += data
        if end_of_chunk and buffer:
            chunks.append(buffer)
            buffer = b""
    assert buffer == b""
    return chunks


async def load(
    http: aiohttp.ClientSession, server: TabbyEmulator, **body: Any
) -> tuple[aiohttp.ClientResponse, list[bytes]]:
    async with http.post(server.url + "/v1/model/load", json=body, headers=admin(server)) as r:
        return r, await read_http_chunks(r)


async def get_json(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.get(url, headers=headers) as r:
        return r.status, await r.json(content_type=None)


# --------------------------------------------------------------------------- auth


API_ROUTES = [
    ("GET", "/v1/model/list"),
    ("GET", "/v1/models"),
    ("GET", "/v1/model/draft/list"),
    ("GET", "/v1/model/embedding/list"),
    ("GET", "/v1/auth/permission"),
]


@pytest.mark.parametrize(
    ("kind", "expect"),
    [
        ("none", (401, "Please provide an API key")),
        ("api", (200, None)),
        ("admin_as_api", (200, None)),
        ("bearer_api", (200, None)),
        ("bearer_lower", (200, None)),
        ("bearer_admin", (200, None)),
        ("bad_api", (401, "Invalid API key")),
        ("admin_header_only", (401, "Please provide an API key")),
        ("bearer_no_token", (401, "Invalid API key")),
        ("basic_scheme", (401, "Invalid API key")),
        ("x_api_wins", (401, "Invalid API key")),
    ],
)
async def test_api_key_matrix(
    tabby_emulator: TabbyEmulator,
    http: aiohttp.ClientSession,
    kind: str,
    expect: tuple[int, str | None],
) -> None:
    s = tabby_emulator
    headers = {
        "none": {},
        "api": {"x-api-key": s.api_key},
        "admin_as_api": {"x-api-key": s.admin_key},
        "bearer_api": {"Authorization": f"Bearer {s.api_key}"},
        "bearer_lower": {"Authorization": f"bEARER {s.api_key}"},
        "bearer_admin": {"Authorization": f"Bearer {s.admin_key}"},
        "bad_api": {"x-api-key": "nope"},
        "admin_header_only": {"x-admin-key": s.admin_key},
        "bearer_no_token": {"Authorization": "Bearer"},
        "basic_scheme": {"Authorization": f"Basic {s.api_key}"},
        # x-api-key present: Authorization is not looked at, even when it is valid.
        "x_api_wins": {"x-api-key": "wrong", "Authorization": f"Bearer {s.admin_key}"},
    }[kind]
    for method, path in API_ROUTES:
        async with http.request(method, s.url + path, headers=headers) as r:
            assert r.status == expect[0], (path, kind)
            assert "WWW-Authenticate" not in r.headers
            assert r.headers["Content-Type"] == "application/json"
            if expect[1] is not None:
                assert await r.json() == {"detail": expect[1]}


@pytest.mark.parametrize(
    ("kind", "status", "message"),
    [
        ("none", 401, "Please provide an admin key"),
        ("admin", 200, None),
        ("bearer_admin", 200, None),
        ("bad_admin", 401, "Invalid admin key"),
        ("api_in_x_api", 401, "Please provide an admin key"),
        ("admin_in_x_api", 401, "Please provide an admin key"),
        ("bearer_api", 401, "Invalid admin key"),
        ("bearer_empty", 401, "Invalid admin key"),
    ],
)
async def test_admin_key_matrix(
    tabby_emulator: TabbyEmulator,
    http: aiohttp.ClientSession,
    kind: str,
    status: int,
    message: str | None,
) -> None:
    s = tabby_emulator
    headers = {
        "none": {},
        "admin": {"x-admin-key": s.admin_key},
        "bearer_admin": {"Authorization": f"BEARER {s.admin_key}"},
        "bad_admin": {"x-admin-key": s.api_key},
        "api_in_x_api": {"x-api-key": s.api_key},
        "admin_in_x_api": {"x-api-key": s.admin_key},
        "bearer_api": {"Authorization": f"Bearer {s.api_key}"},
        "bearer_empty": {"Authorization": "Bearer "},
    }[kind]
    s.preload("alpha")
    async with http.post(s.url + "/v1/model/unload", headers=headers) as r:
        assert r.status == status
        assert "WWW-Authenticate" not in r.headers
        body = await r.read()
        if message is None:
            assert body == b"null"
            assert s.loaded is None
        else:
            assert msgspec.json.decode(body) == {"detail": message}
            assert s.loaded == "alpha"


async def test_auth_disabled_makes_everyone_admin(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(models=["m1", "m2"], auth=False)
    status, body = await get_json(http, s.url + "/v1/auth/permission")
    assert (status, body) == (200, {"permission": "admin"})
    status, body = await get_json(http, s.url + "/v1/model/list")
    assert [c["id"] for c in body["data"]] == ["m1", "m2"]
    r, _ = await load(http, s, model_name="m2", modules=1)
    assert r.status == 200 and s.loaded == "m2"


async def test_permission_route(tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    s = tabby_emulator
    url = s.url + "/v1/auth/permission"
    assert await get_json(http, url, api(s)) == (200, {"permission": "api"})
    assert await get_json(http, url, {"x-api-key": s.admin_key}) == (200, {"permission": "admin"})
    both = {"x-api-key": s.api_key, "x-admin-key": s.admin_key}
    assert await get_json(http, url, both) == (200, {"permission": "admin"})
    bearer = {"Authorization": f"Bearer {s.admin_key}"}
    assert await get_json(http, url, bearer) == (200, {"permission": "admin"})
    # A wrong x-admin-key next to a valid x-api-key: 400, not 401.
    status, body = await get_json(http, url, {"x-api-key": s.api_key, "x-admin-key": "bad"})
    assert status == 400 and isinstance(body["detail"], str) and body["detail"]


async def test_extra_api_keys_and_fixed_keys(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(api_key="k1", admin_key="adm", extra_api_keys=["k2"])
    assert (s.api_key, s.admin_key) == ("k1", "adm")
    for key in ("k1", "k2"):
        assert (await get_json(http, s.url + "/v1/auth/permission", {"x-api-key": key}))[0] == 200
    other = await tabby_emulator_factory()
    assert len(other.api_key) == 32 and other.api_key != other.admin_key


# --------------------------------------------------------------------------- errors


async def test_malformed_json_is_422_before_auth(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = tabby_emulator
    for path in ("/v1/model/load", "/v1/model/embedding/load", "/v1/download"):
        async with http.post(
            s.url + path, data=b'{"model_name": ', headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 422
            assert r.headers["Content-Type"] == "application/json"
            assert await r.json() == {
                "detail": [
                    {
                        "type": "json_invalid",
                        "loc": ["body", 15],
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": "Expecting value"},
                    }
                ]
            }
    # A well-formed but invalid body is only validated after auth.
    async with http.post(s.url + "/v1/model/load", json={"nope": 1}) as r:
        assert r.status == 401
        assert await r.json() == {"detail": "Please provide an admin key"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # No body at all is a missing body...
        (b"", {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}),
        # ...but a JSON null is a body: one that is not an object.
        (
            b"null",
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": None,
            },
        ),
    ],
)
async def test_an_empty_body_is_missing_and_a_null_body_is_not_an_object(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession, raw: bytes, expected: Any
) -> None:
    s = tabby_emulator
    headers = {**admin(s), "Content-Type": "application/json"}
    async with http.post(s.url + "/v1/model/load", data=raw, headers=headers) as r:
        assert (r.status, await r.json()) == (422, {"detail": [expected]})


async def test_validation_errors_have_pydantic_shape(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = tabby_emulator
    url = s.url + "/v1/model/load"
    body = {"max_seq_len": "lots", "extra": True}
    async with http.post(url, json=body, headers=admin(s)) as r:
        assert r.status == 422
        assert await r.json() == {
            "detail": [
                {
                    "type": "missing",
                    "loc": ["body", "model_name"],
                    "msg": "Field required",
                    "input": body,
                },
                {
                    "type": "int_parsing",
                    "loc": ["body", "max_seq_len"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": "lots",
                },
            ]
        }
    async with http.post(
        url, json={"model_name": "alpha", "rope_alpha": "x"}, headers=admin(s)
    ) as r:
        detail = (await r.json())["detail"]
        assert r.status == 422
        assert [e["loc"] for e in detail] == [
            ["body", "rope_alpha", "float"],
            ["body", "rope_alpha", "literal['auto']"],
        ]
        assert detail[1]["type"] == "literal_error"
        assert detail[1]["ctx"] == {"expected": "'auto'"}
        assert detail[0]["type"] == "float_parsing"
    async with http.post(url, data=b"", headers=admin(s)) as r:
        assert r.status == 422
        assert (await r.json())["detail"] == [
            {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
        ]
    bad_draft = {"model_name": "alpha", "draft_model": "draft-small", "gpu_split": [1, "x"]}
    async with http.post(url, json=bad_draft, headers=admin(s)) as r:
        detail = (await r.json())["detail"]
        assert [(e["type"], e["loc"]) for e in detail] == [
            ("float_parsing", ["body", "gpu_split", 1]),
            ("model_attributes_type", ["body", "draft_model"]),
        ]
    assert s.count("POST", "/v1/model/load") == 4
    assert s.loaded is None


async def test_lax_validation_coerces_and_ignores_unknown_keys(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = tabby_emulator
    r, chunks = await load(
        http,
        s,
        model_name="alpha",
        max_seq_len="2048",
        cache_size=4096.0,
        rope_alpha="auto",
        rope_scale="2.5",
        vision="false",
        whatever={"x": 1},
    )
    assert r.status == 200 and chunks == progress("model", 4)
    status, card = await get_json(http, s.url + "/v1/model", api(s))
    assert status == 200
    params = card["parameters"]
    assert params["max_seq_len"] == 2048
    assert params["cache_size"] == 4096
    assert params["rope_scale"] == 1.0  # taken, but the card always says 1.0
    assert params["use_vision"] is False


async def test_load_400s(tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    s = tabby_emulator
    cases = [
        ("/v1/model/load", {"model_name": ""}, "A model name was not provided for load."),
        (
            "/v1/model/load",
            {"model_name": "missing"},
            "Could not find the model path for load. Check model name or config.yml?",
        ),
        (
            "/v1/model/embedding/load",
            {"embedding_model_name": "alpha"},
            "Could not find the embedding model path for load. Check model name or config.yml?",
        ),
        (
            "/v1/model/embedding/load",
            {"embedding_model_name": ""},
            "A model name was not provided for load.",
        ),
    ]
    for path, body, message in cases:
        async with http.post(s.url + path, json=body, headers=admin(s)) as r:
            assert r.status == 400
            assert r.headers["Content-Type"] == "application/json"
            assert await r.json() == {"detail": message}


async def test_not_found_method_not_allowed_and_slash_redirect(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = tabby_emulator
    async with http.get(s.url + "/v1/nothing", headers=api(s)) as r:
        assert r.status == 404
        assert await r.read() == b'{"detail":"Not Found"}'
        assert r.headers["Content-Type"] == "application/json"
    async with http.get(s.url + "/v1/model/load", headers=admin(s)) as r:
        assert r.status == 405
        assert await r.read() == b'{"detail":"Method Not Allowed"}'
        assert r.headers["Allow"] == "POST"
    async with http.post(s.url + "/v1/model/list") as r:
        assert r.status == 405
    async with http.get(s.url + "/v1/model/list/?a=1", allow_redirects=False) as r:
        assert r.status == 307
        assert r.headers["Location"] == f"{s.url}/v1/model/list?a=1"
    # Following it lands on the real route (which then wants a key).
    async with http.get(s.url + "/v1/model/list/", headers=api(s)) as r:
        assert r.status == 200
        assert str(r.url) == s.url + "/v1/model/list"
    async with http.get(s.url + "/v1/nothing/", allow_redirects=False) as r:
        assert r.status == 404


# --------------------------------------------------------------------------- shapes


async def test_listings_and_cards(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = tabby_emulator
    full = {"x-api-key": s.admin_key}
    before = int(time.time())
    for path, names in [
        ("/v1/model/list", ["alpha", "beta"]),
        ("/v1/models", ["alpha", "beta"]),
        ("/v1/model/draft/list", ["draft-small"]),
        ("/v1/model/embedding/list", ["embed-a"]),
    ]:
        status, body = await get_json(http, s.url + path, full)
        assert status == 200
        assert body["object"] == "list"
        assert [c["id"] for c in body["data"]] == names
        for card in body["data"]:
            assert set(card) == {"id", "object", "created", "owned_by", "logging", "parameters"}
            assert card["object"] == "model" and card["owned_by"] == "tabbyAPI"
            assert card["logging"] is None and card["parameters"] is None
            assert before <= card["created"] <= int(time.time())
    # An api key only sees what is loaded.
    assert (await get_json(http, s.url + "/v1/model/list", api(s)))[1]["data"] == []
    s.preload("beta", draft_model={"draft_model_name": "draft-small"})
    _, body = await get_json(http, s.url + "/v1/model/list", api(s))
    assert [c["id"] for c in body["data"]] == ["beta"]
    _, body = await get_json(http, s.url + "/v1/model/draft/list", api(s))
    assert [c["id"] for c in body["data"]] == ["draft-small"]


async def test_model_card_props_and_unload(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    model = EmulatedModel(
        "m",
        modules=2,
        max_seq_len=8192,
        max_batch_size=2,
        prompt_template="chatml",
        chat_template="{{ x }}",
    )
    s = await tabby_emulator_factory(models=[model], drafts=["d"])
    for path in ("/v1/model", "/props"):
        assert await get_json(http, s.url + path, api(s)) == (
            503,
            {"detail": "No models are currently loaded."},
        )
    async with http.post(s.url + "/v1/model/unload", headers=admin(s)) as r:
        assert r.status == 503
    r, _ = await load(
        http,
        s,
        model_name="m",
        cache_mode="Q4",
        max_batch_size=3,
        draft_model={"draft_model_name": "d", "draft_rope_alpha": 2},
    )
    status, card = await get_json(http, s.url + "/v1/model", api(s))
    assert status == 200
    params = card["parameters"]
    assert list(params) == [
        "max_seq_len",
        "cache_size",
        "cache_mode",
        "rope_scale",
        "rope_alpha",
        "max_batch_size",
        "chunk_size",
        "prompt_template",
        "prompt_template_content",
        "use_vision",
        "draft",
    ]
    assert params["max_seq_len"] == 8192 and params["cache_mode"] == "Q4"
    assert params["prompt_template"] == "chatml"
    assert params["draft"] is None  # loaded (see s.loaded_draft), never reported
    assert s.loaded_draft == "d"
    status, props = await get_json(http, s.url + "/props", api(s))
    # The load request has no max_batch_size: the server drops the 3.
    assert props == {
        "total_slots": 2,
        "chat_template": "{{ x }}",
        "default_generation_settings": {"n_ctx": 8192},
    }
    async with http.post(s.url + "/v1/model/unload", headers=admin(s)) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/json"
        assert await r.read() == b"null"
    assert s.loaded is None


# What the real server's card reports back after a load: (sent, reported), one
# row per line of the protocol's table. Unlisted parameters keep their defaults.
CARD_ROWS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"draft_model": {"draft_model_name": "d"}}, {"draft": None}),
    ({"rope_scale": 2.5, "rope_alpha": 3.0}, {"rope_scale": 1.0, "rope_alpha": 1.0}),
    ({"rope_alpha": "auto"}, {"rope_alpha": 1.0}),
    (
        {"draft_model": {"draft_model_name": "d", "draft_rope_alpha": 2.0, "draft_gpu_split": [1]}},
        {"draft": None},
    ),
    # Not rounded to 256; the 4096 context is cut to the cache (from the source).
    ({"cache_size": 1000}, {"cache_size": 1000, "max_seq_len": 1000}),
    ({"prompt_template": "chatml.jinja"}, {"prompt_template": "chatml"}),
    ({"prompt_template": "alpaca"}, {"prompt_template": "alpaca"}),
    ({"draft_model": {"draft_model_name": "d", "draft_cache_mode": 5}}, {"draft": None}),
    (
        {
            "gpu_split": [10.0, 12.0],
            "gpu_split_auto": False,
            "autosplit_reserve": [96],
            "tensor_parallel": True,
            "tensor_parallel_backend": "nccl",
            "backend": "exllamav3",
            "output_chunking": False,
            "skip_queue": True,
        },
        {},
    ),
]
_DEFAULT_PARAMS = {
    "max_seq_len": 4096,
    "cache_size": 4096,
    "cache_mode": "FP16",
    "rope_scale": 1.0,
    "rope_alpha": 1.0,
    "max_batch_size": 1,
    "chunk_size": 2048,
    "prompt_template": None,
    "prompt_template_content": None,
    "use_vision": False,
    "draft": None,
}


@pytest.mark.parametrize(("sent", "reported"), CARD_ROWS)
async def test_card_reports_what_the_real_server_reports(
    tabby_emulator_factory: Factory,
    http: aiohttp.ClientSession,
    sent: dict[str, Any],
    reported: dict[str, Any],
) -> None:
    s = await tabby_emulator_factory(
        models=[EmulatedModel("m", max_seq_len=4096)], drafts=["d"], ping_interval=0
    )
    r, chunks = await load(http, s, model_name="m", **sent)
    assert r.status == 200 and chunks[-1] == frame("model", 4, 4, "finished")
    status, card = await get_json(http, s.url + "/v1/model", api(s))
    assert status == 200
    expected = {**_DEFAULT_PARAMS, **reported}
    if "prompt_template" in reported:
        expected["prompt_template_content"] = card["parameters"]["prompt_template_content"]
        assert expected["prompt_template_content"] is not None
    assert card["parameters"] == expected
    if "draft_model" in sent:
        assert s.loaded_draft == "d"  # it was loaded, only not reported
        assert any(c.startswith(b'data: {"model_type":"draft"') for c in chunks)


async def test_nested_model_names(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(
        models=["org/model/4.0bpw", "org/model/6.0bpw", "other/x/4.0bpw", "flat"],
        ping_interval=0,
    )
    status, listing = await get_json(http, s.url + "/v1/model/list", admin_api(s))
    assert status == 200
    assert [c["id"] for c in listing["data"]] == ["org", "other", "flat"]  # top level only
    _, chunks = await load(http, s, model_name="org/model/4.0bpw")
    assert chunks[-1] == frame("model", 4, 4, "finished")
    status, card = await get_json(http, s.url + "/v1/model", api(s))
    assert card["id"] == "4.0bpw"  # the folder's own name
    status, listing = await get_json(http, s.url + "/v1/model/list", api(s))
    assert [c["id"] for c in listing["data"]] == ["4.0bpw"]
    # The server compares resolved paths: another folder with the same last
    # segment is a real load (tests/test_emulator_fidelity.py has the details).
    _, chunks = await load(http, s, model_name="other/x/4.0bpw")
    assert chunks == progress("model", 4)
    assert s.loaded == "other/x/4.0bpw"


def admin_api(server: TabbyEmulator) -> dict[str, str]:
    """The admin key on an api route: the listing shows every folder."""
    return {"x-api-key": server.admin_key}


async def test_health(tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    s = tabby_emulator
    assert await get_json(http, s.url + "/health") == (200, {"status": "healthy", "issues": []})
    s.add_health_issue("GPU on fire")
    status, body = await get_json(http, s.url + "/health")
    assert status == 503 and body["status"] == "unhealthy"
    assert body["issues"][0]["description"] == "GPU on fire" and "time" in body["issues"][0]
    s.clear_health_issues()
    assert (await get_json(http, s.url + "/health"))[0] == 200


async def test_embeddings(tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    s = tabby_emulator
    url = s.url + "/v1/model/embedding"
    assert await get_json(http, url, api(s)) == (
        503,
        {"detail": "No embedding models are currently loaded."},
    )
    async with http.post(
        url + "/load", json={"embedding_model_name": "embed-a"}, headers=admin(s)
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/json"
        assert await r.read() == (
            b'{"model_type":"embedding_model","module":1,"modules":1,"status":"finished"}'
        )
    status, card = await get_json(http, url, api(s))
    assert status == 200 and card["id"] == "embed-a" and card["parameters"] is None
    assert s.loaded_embedding == "embed-a"
    async with http.post(url + "/unload", headers=admin(s)) as r:
        assert (r.status, await r.read()) == (200, b"null")
    async with http.post(url + "/unload", headers=admin(s)) as r:
        assert r.status == 503


async def test_embedding_errors(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(
        embeddings=[EmulatedModel("e", modules=2, delay=0.5), "f"], ping_interval=0
    )
    url = s.url + "/v1/model/embedding/load"
    async with http.post(url, json={"embedding_model_name": "f"}, headers=admin(s)) as r:
        assert r.status == 200
    async with http.post(url, json={"embedding_model_name": "f"}, headers=admin(s)) as r:
        assert (r.status, await r.json()) == (
            400,
            {"detail": 'Embeddings model "f" is already loaded! Aborting.'},
        )
    # A disconnect cancels an embedding load; the old model was unloaded first.
    with pytest.raises(asyncio.TimeoutError):
        await http.post(
            url,
            json={"embedding_model_name": "e"},
            headers=admin(s),
            timeout=aiohttp.ClientTimeout(total=0.1),
        )
    await asyncio.sleep(0.6)
    assert s.loaded_embedding is None
    bare = await tabby_emulator_factory(embeddings=["e"], embeddings_available=False)
    async with http.post(
        bare.url + "/v1/model/embedding/load", json={"name": "e"}, headers=admin(bare)
    ) as r:
        assert r.status == 422  # the field is embedding_model_name
    async with http.post(
        bare.url + "/v1/model/embedding/load",
        json={"embedding_model_name": "e"},
        headers=admin(bare),
    ) as r:
        assert r.status == 400
        assert (await r.json())["detail"].startswith("Skipping embeddings because")


async def test_listing_with_conflicting_keys_is_a_plain_500(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = tabby_emulator
    headers = {"x-api-key": s.api_key, "x-admin-key": "wrong"}
    async with http.get(s.url + "/v1/model/list", headers=headers) as r:
        assert r.status == 500
        assert r.headers["Content-Type"].startswith("text/plain")
        assert await r.read() == b"Internal Server Error"


# --------------------------------------------------------------------------- load stream


async def test_load_stream_bytes_and_one_chunk_per_event(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = tabby_emulator
    r, chunks = await load(http, s, model_name="alpha")
    assert r.status == 200
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Accel-Buffering"] == "no"
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert chunks == [
        b'data: {"model_type":"model","module":1,"modules":4,"status":"processing"}\r\n\r\n',
        b'data: {"model_type":"model","module":2,"modules":4,"status":"processing"}\r\n\r\n',
        b'data: {"model_type":"model","module":3,"modules":4,"status":"processing"}\r\n\r\n',
        b'data: {"model_type":"model","module":4,"modules":4,"status":"processing"}\r\n\r\n',
        b'data: {"model_type":"model","module":4,"modules":4,"status":"finished"}\r\n\r\n',
    ]
    assert s.loaded == "alpha"
    # Loading it again: exactly processing 1/1 and finished 1/1, new params ignored.
    r, chunks = await load(
        http, s, model_name="alpha", max_seq_len=99, draft_model={"draft_model_name": "draft-small"}
    )
    assert chunks == [frame("model", 1, 1, "processing"), frame("model", 1, 1, "finished")]
    _, card = await get_json(http, s.url + "/v1/model", api(s))
    assert card["parameters"]["max_seq_len"] == 4096 and card["parameters"]["draft"] is None


async def test_pings_on_fixed_timer(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(
        models=[EmulatedModel("slow", modules=2, delay=0.25)], ping_interval=0.1
    )
    started = time.monotonic()
    stamps: list[tuple[float, bytes]] = []
    async with http.post(
        s.url + "/v1/model/load", json={"model_name": "slow"}, headers=admin(s)
    ) as r:
        buffer = b""
        async for data, end in r.content.iter_chunks():
            buffer += data
            if end and buffer:
                stamps.append((time.monotonic() - started, buffer))
                buffer = b""
    pings = [(t, c) for t, c in stamps if c.startswith(b":")]
    events = [c for _, c in stamps if not c.startswith(b":")]
    assert events == progress("model", 2)
    assert 3 <= len(pings) <= 6
    for _, chunk in pings:
        assert PING_RE.fullmatch(chunk), chunk
    # Fixed timer: the server's own stamps sit on a 0.1 s grid (no drift).
    sent = [datetime.fromisoformat(c[len(b": ping - ") : -4].decode()) for _, c in pings]
    offsets = [(t - sent[0]).total_seconds() for t in sent]
    for k, offset in enumerate(offsets):
        assert abs(offset - 0.1 * k) < 0.06, offsets
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(pings)]
    assert all(0.02 < g < 0.3 for g in gaps), gaps


async def test_no_pings_when_disabled(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(
        models=[EmulatedModel("slow", modules=2, delay=0.1)], ping_interval=0
    )
    _, chunks = await load(http, s, model_name="slow")
    assert chunks == progress("model", 2)


async def test_vision_draft_model_order(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(
        models=[EmulatedModel("vl", modules=3, vision_modules=2)],
        drafts=[EmulatedModel("d", modules=2)],
    )
    _, chunks = await load(
        http, s, model_name="vl", vision=True, draft_model={"draft_model_name": "d"}
    )
    assert chunks == progress("vision", 2) + progress("draft", 2) + progress("model", 3)
    _, card = await get_json(http, s.url + "/v1/model", api(s))
    assert card["parameters"]["use_vision"] is True
    # Without vision=true no vision component loads.
    s.preload("vl")
    await http.post(s.url + "/v1/model/unload", headers=admin(s))
    _, chunks = await load(http, s, model_name="vl")
    assert chunks == progress("model", 3)


async def test_failures_leave_nothing_loaded(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(
        models=[
            "good",
            EmulatedModel("mid", modules=5, fail_at=2, fail_message="CUDA out of memory"),
            EmulatedModel("noconf", config_error="no config.json"),
        ],
        drafts=["d"],
    )
    for name, draft, expected in [
        (
            "mid",
            None,
            [
                frame("model", 1, 5, "processing"),
                frame("model", 2, 5, "processing"),
                error_frame("CUDA out of memory"),
            ],
        ),
        ("noconf", None, [error_frame("no config.json")]),
        (
            "good",
            None,
            [error_frame("Invalid backend 'vllm'. Available backends: ['exllamav2', 'exllamav3']")],
        ),
        ("good", "missing-draft", None),
    ]:
        s.preload("mid" if name == "good" else "good")  # something else is loaded
        body: dict[str, Any] = {"model_name": name}
        if draft:
            body["draft_model"] = {"draft_model_name": draft}
        elif name == "good":
            body["backend"] = "vllm"
        r, chunks = await load(http, s, **body)
        assert r.status == 200
        if expected is not None:
            assert chunks == expected
        else:
            assert len(chunks) == 1 and chunks[0].startswith(b'data: {"error":{"message":"')
            assert chunks[0].endswith(b'","trace":null}}\r\n\r\n')
        assert s.loaded is None
        assert (await get_json(http, s.url + "/v1/model", api(s)))[0] == 503


async def test_load_lock_serialises_and_503_while_loading(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(
        models=[EmulatedModel("a", modules=3, delay=0.1), EmulatedModel("b", modules=2)],
        ping_interval=0.05,
    )
    s.preload("b")
    order: list[tuple[str, bytes]] = []
    a_started = asyncio.Event()

    async def run(name: str) -> None:
        async with http.post(
            s.url + "/v1/model/load", json={"model_name": name}, headers=admin(s)
        ) as r:
            assert r.status == 200  # head at once, even when queued
            async for data, _ in r.content.iter_chunks():
                if data:
                    order.append((name, data))
                    a_started.set()

    first = asyncio.create_task(run("a"))
    await asyncio.wait_for(a_started.wait(), 30)  # "a"'s first frame: it holds the lock
    assert s.is_loading
    second = asyncio.create_task(run("b"))
    await asyncio.sleep(0.1)
    assert s.loaded is None  # "b" was unloaded before "a" started
    for method, path, key in [
        ("GET", "/v1/model", api(s)),
        ("GET", "/props", api(s)),
        ("POST", "/v1/model/unload", admin(s)),
    ]:
        async with http.request(method, s.url + path, headers=key) as r:
            assert r.status == 503
            assert await r.json() == {"detail": "No models are currently loaded."}
    await asyncio.gather(first, second)
    b_data = [d for n, d in order if n == "b" and d.startswith(b"data:")]
    a_finished = next(i for i, (n, d) in enumerate(order) if n == "a" and b"finished" in d)
    first_b = next(i for i, (n, d) in enumerate(order) if n == "b" and d.startswith(b"data:"))
    assert first_b > a_finished
    # Before its load starts the queued request only gets pings.
    assert any(n == "b" and d.startswith(b": ping") for n, d in order[:a_finished])
    assert b_data == progress("model", 2)
    assert s.loaded == "b"


async def test_disconnect_does_not_cancel_load(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(models=[EmulatedModel("m", modules=4, delay=0.05)])
    async with http.post(s.url + "/v1/model/load", json={"model_name": "m"}, headers=admin(s)) as r:
        first = await r.content.readuntil(b"\r\n\r\n")
        assert first == frame("model", 1, 4, "processing")
        r.close()  # drop the connection mid-stream
    assert s.loaded is None
    await s.wait_loaded("m")
    status, card = await get_json(http, s.url + "/v1/model", api(s))
    assert status == 200 and card["id"] == "m"


async def test_close_cuts_open_streams(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(models=[EmulatedModel("m", modules=50, delay=0.05)])
    async with http.post(s.url + "/v1/model/load", json={"model_name": "m"}, headers=admin(s)) as r:
        await r.content.readuntil(b"\r\n\r\n")
        await s.close()
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    await s.close()  # idempotent
    assert not s.is_loading


# --------------------------------------------------------------------------- download


async def test_download(tabby_emulator_factory: Factory, http: aiohttp.ClientSession) -> None:
    s = await tabby_emulator_factory(
        models=["old"], downloadable={"org/new-model": 0.05, "org/slow": 5.0, "org/old": 0}
    )
    url = s.url + "/v1/download"
    async with http.post(
        url, json={"repo_id": "org/new-model", "token": "hf_secret"}, headers=admin(s)
    ) as r:
        assert r.status == 200
        assert await r.json() == {"download_path": "models/new-model"}
    _, listing = await get_json(http, s.url + "/v1/model/list", {"x-api-key": s.admin_key})
    assert [c["id"] for c in listing["data"]] == ["old", "new-model"]
    async with http.post(
        url, json={"repo_id": "org/new-model", "folder_name": "copy"}, headers=admin(s)
    ) as r:
        assert await r.json() == {"download_path": "models/copy"}
    async with http.post(url, json={"repo_id": "org/old"}, headers=admin(s)) as r:
        assert r.status == 400
        assert "File exists" in (await r.json())["detail"]
    async with http.post(url, json={"repo_id": "nobody/nothing"}, headers=admin(s)) as r:
        assert r.status == 400
        assert await r.json() == {"detail": "[Errno -2] Name or service not known"}
    async with http.post(url, json={"repo_id": 5}, headers=admin(s)) as r:
        assert r.status == 422
    # A disconnect cancels the download: nothing is added.
    with pytest.raises(asyncio.TimeoutError):
        await http.post(
            url,
            json={"repo_id": "org/slow"},
            headers=admin(s),
            timeout=aiohttp.ClientTimeout(total=0.1),
        )
    await asyncio.sleep(0.1)
    assert "slow" not in s.models
    # The token is redacted in the recording.
    record = next(r for r in s.requests if r.path == "/v1/download")
    assert record.body == {"repo_id": "org/new-model", "token": "<redacted>"}
    assert record.json() == record.body and b"hf_secret" not in record.raw
    assert record.headers["x-admin-key"] == "<redacted>"


# --------------------------------------------------------------------------- recording


async def test_recording(tabby_emulator_factory: Factory, http: aiohttp.ClientSession) -> None:
    s = await tabby_emulator_factory(models=["a"])
    await http.get(
        s.url + "/v1/model/list?x=1", headers={"Authorization": "Bearer zzz", "X-Custom": "1"}
    )
    await http.post(s.url + "/v1/model/load", data=b"{oops", headers=admin(s))
    assert [(r.method, r.path) for r in s.requests] == [
        ("GET", "/v1/model/list"),
        ("POST", "/v1/model/load"),
    ]
    first, second = s.requests
    assert first.headers["authorization"] == "<redacted>"
    assert first.headers["x-custom"] == "1" and first.query == "x=1"
    assert second.raw == b"{oops" and second.body == b"{oops"  # not JSON: bytes
    assert second.headers["x-admin-key"] == "<redacted>"
    assert first.raw == b"" and first.body is None
    assert first.time <= second.time
    assert s.count("get", "/v1/model/list") == 1 and s.count("GET", "/nope") == 0
    s.reset_requests()
    assert s.requests == []
    quiet = await tabby_emulator_factory(record=False)
    await http.get(quiet.url + "/health")
    assert quiet.requests == [] and quiet.count("GET", "/health") == 0


# --------------------------------------------------------------------------- faults


async def test_fail_next_counts_down_exactly_under_concurrency(
    tabby_emulator: TabbyEmulator,
) -> None:
    s = tabby_emulator
    fault = s.faults.fail_next(
        25, status=429, detail="slow down", headers={"Retry-After": "2"}, path="/health"
    )
    other = s.faults.fail_next(1, status=502, path="/v1/model/list", method="POST")
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> tuple[int, str | None, bytes]:
            async with http.get(s.url + "/health") as r:
                return r.status, r.headers.get("Retry-After"), await r.read()

        results = await asyncio.gather(*(one() for _ in range(200)))
        async with http.get(s.url + "/v1/model/list", headers=api(s)) as r:
            assert r.status == 200  # method filter: the POST-only fault does not fire
    hits = [r for r in results if r[0] == 429]
    assert len(hits) == 25
    assert all(h[1] == "2" and h[2] == b'{"detail":"slow down"}' for h in hits)
    assert sum(1 for r in results if r[0] == 200) == 175
    assert fault.fired == 25 and fault.exhausted and s.faults.pending == [other]
    s.faults.clear()
    assert s.faults.pending == []


async def test_fail_next_does_not_run_the_route(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = tabby_emulator
    s.faults.fail_next(1, status=500, detail="boom", path="/v1/model/load")
    async with http.post(
        s.url + "/v1/model/load", json={"model_name": "alpha"}, headers=admin(s)
    ) as r:
        assert (r.status, await r.json()) == (500, {"detail": "boom"})
    assert s.loaded is None and not s.is_loading
    _, chunks = await load(http, s, model_name="alpha")
    assert chunks == progress("model", 4)


@pytest.mark.parametrize("stop_load", [True, False])
async def test_drop_stream(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession, stop_load: bool
) -> None:
    s = await tabby_emulator_factory(models=[EmulatedModel("m", modules=4, delay=0.02)])
    s.faults.drop_stream(after_events=2, stop_load=stop_load)
    received: list[bytes] = []
    async with http.post(s.url + "/v1/model/load", json={"model_name": "m"}, headers=admin(s)) as r:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for data, _ in r.content.iter_chunks():
                received.append(data)
    assert b"".join(received) == b"".join(progress("model", 4)[:2])
    await s.wait_idle()
    assert s.loaded == (None if stop_load else "m")
    assert not s.is_loading
    # Only the next stream is affected.
    _, chunks = await load(http, s, model_name="m")
    expected = progress("model", 4) if stop_load else progress("model", 1)
    assert chunks == expected


async def test_delay_head(tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    s = tabby_emulator
    s.faults.delay_head(0.3, n=1, path="/health")
    started = time.monotonic()
    async with http.get(s.url + "/health") as r:
        assert r.status == 200
    assert time.monotonic() - started >= 0.28
    started = time.monotonic()
    await http.get(s.url + "/health")
    assert time.monotonic() - started < 0.25


async def test_malformed_json(tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    s = tabby_emulator
    s.faults.malformed_json(n=2, path="/v1/model/list")
    for _ in range(2):
        async with http.get(s.url + "/v1/model/list") as r:  # would have been a 401
            assert r.status == 200
            assert r.headers["Content-Type"] == "application/json"
            raw = await r.read()
            assert raw and int(r.headers["Content-Length"]) == len(raw)
            with pytest.raises(msgspec.DecodeError):
                msgspec.json.decode(raw)
    async with http.get(s.url + "/v1/model/list") as r:
        assert r.status == 401


async def test_slow_body(tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    s = tabby_emulator
    s.faults.slow_body(0.03, path="/v1/model/list", chunk_size=8)
    started = time.monotonic()
    async with http.get(s.url + "/v1/model/list", headers={"x-api-key": s.admin_key}) as r:
        head_at = time.monotonic() - started
        body = await r.json()
    total = time.monotonic() - started
    assert [c["id"] for c in body["data"]] == ["alpha", "beta"]
    # ~170 bytes in 8-byte pieces, 30 ms each; the head comes before the first piece.
    assert total > 0.3 and head_at < total / 3


async def test_reset_mid_body(tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    s = tabby_emulator
    s.faults.reset_mid_body(path="/health")
    async with http.get(s.url + "/health") as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    assert (await get_json(http, s.url + "/health"))[0] == 200


async def test_drop_stream_with_a_clean_end(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(models=[EmulatedModel("m", modules=4, delay=0.02)])
    s.faults.drop_stream(after_events=2, clean_end=True)
    _, chunks = await load(http, s, model_name="m")  # no ClientPayloadError: an orderly end
    assert chunks == progress("model", 4)[:2]
    await s.wait_idle()
    assert s.loaded is None  # stop_load: the load was cancelled too


@pytest.mark.parametrize(
    ("status", "title"),
    [
        (502, b"502 Bad Gateway"),
        (503, b"503 Service Temporarily Unavailable"),
        (504, b"504 Gateway Time-out"),
    ],
)
async def test_proxy_error(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession, status: int, title: bytes
) -> None:
    s = tabby_emulator
    fault = s.faults.proxy_error(status, n=2, path="/v1/model/load")
    for _ in range(2):
        async with http.post(
            s.url + "/v1/model/load", json={"model_name": "alpha"}, headers=admin(s)
        ) as r:
            assert r.status == status
            assert r.headers["Content-Type"] == "text/html"
            assert r.headers["Server"].startswith("nginx/")
            page = await r.read()
    assert page.startswith(b"<html>") and b"<title>" + title + b"</title>" in page
    assert fault.exhausted and s.loaded is None  # the route did not run
    assert (await get_json(http, s.url + "/health"))[0] == 200  # other routes: untouched


async def test_not_http(tabby_emulator: TabbyEmulator) -> None:
    s = tabby_emulator
    s.faults.not_http(path="/v1/model/list")
    reader, writer = await asyncio.open_connection(s.host, s.port)
    writer.write(b"GET /v1/model/list HTTP/1.1\r\nHost: x\r\n\r\n")
    banner = await asyncio.wait_for(reader.read(), 30)  # to the end: then it closes
    assert banner.startswith(b"SSH-2.0-OpenSSH_") and banner.endswith(b"\r\n")
    writer.close()
    s.faults.not_http(banner=b"\x00\x01garbage")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientResponseError):
            await http.get(s.url + "/health")
        assert (await get_json(http, s.url + "/health"))[0] == 200


@pytest.mark.parametrize("status", [204, 200])
async def test_empty_stream(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession, status: int
) -> None:
    s = tabby_emulator
    s.faults.empty_stream(status)
    body = {"model_name": "alpha"}
    async with http.post(s.url + "/v1/model/load", json=body, headers=admin(s)) as r:
        assert r.status == status
        assert r.content_type == "text/event-stream"
        assert await r.read() == b""
    assert s.loaded is None and not s.is_loading  # the load did not run
    with pytest.raises(ValueError):
        s.faults.empty_stream(500)


async def test_bom_and_sse_retry_come_before_the_first_frame(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = tabby_emulator
    s.faults.bom()
    s.faults.sse_retry(20000)
    _, chunks = await load(http, s, model_name="alpha")
    assert chunks[0] == b"\xef\xbb\xbfretry: 20000\r\n\r\n"
    assert chunks[1:] == progress("model", 4)
    # Already loaded: the no-op load's two frames follow.
    s.faults.sse_retry("9" * 30)
    _, chunks = await load(http, s, model_name="alpha")
    assert chunks == [b"retry: " + b"9" * 30 + b"\r\n\r\n", *progress("model", 1)]
    s.faults.bom()
    _, chunks = await load(http, s, model_name="alpha")
    assert b"".join(chunks) == b"\xef\xbb\xbf" + b"".join(progress("model", 1))


@pytest.mark.parametrize("count", [3, None])
async def test_frames_after_finished(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession, count: int | None
) -> None:
    s = tabby_emulator
    s.faults.frames_after_finished(count=count, interval=0.01)
    finished = frame("model", 4, 4, "finished")
    body = {"model_name": "alpha"}
    async with http.post(s.url + "/v1/model/load", json=body, headers=admin(s)) as r:
        if count is not None:
            assert await read_http_chunks(r) == progress("model", 4) + [finished] * count
            return
        received = b""
        while received.count(finished) < 20:  # no end: frames keep coming
            received += await asyncio.wait_for(r.content.readany(), 30)
    assert received.startswith(b"".join(progress("model", 4)))
    assert s.loaded == "alpha"


# --------------------------------------------------------------------------- serving


async def test_run_emulator_serves_until_cancelled(http: aiohttp.ClientSession) -> None:
    ready: asyncio.Future[TabbyEmulator] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_emulator(
            host="127.0.0.1",
            port=0,
            models=["x"],
            drafts=[],
            embeddings=[],
            auth=True,
            api_key="k",
            admin_key="a",
            ping_interval=15.0,
            ready=ready.set_result,
        )
    )
    server = await asyncio.wait_for(ready, 5)
    assert await get_json(http, server.url + "/v1/auth/permission", {"x-api-key": "a"}) == (
        200,
        {"permission": "admin"},
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(server.url + "/health")


async def test_serve_forever_serves_until_stop_is_set(http: aiohttp.ClientSession) -> None:
    server = TabbyEmulator(models=["x"])
    stop, bound = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_forever(server, ready=lambda _e: bound.set(), stop=stop))
    await asyncio.wait_for(bound.wait(), 30)
    assert (await get_json(http, server.url + "/health"))[0] == 200
    stop.set()
    await asyncio.wait_for(task, 30)  # returns, closed
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(server.url + "/health")


async def test_serve_forever_raises_a_bind_error_before_ready() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = TabbyEmulator(port=busy.getsockname()[1])
        ready: list[TabbyEmulator] = []
        with pytest.raises(OSError):
            await serve_forever(server, ready=ready.append)
    assert ready == []


async def test_cli_emulator_on_a_busy_port_is_a_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The command serves through serve_forever: its bind error becomes a message.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = await asyncio.to_thread(cli.main, ["emulator", "--port", str(port)])
    err = capsys.readouterr().err
    assert code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


# --------------------------------------------------------------------------- waiting


async def test_wait_loaded_is_woken_by_a_background_load(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(models=[EmulatedModel("m", modules=3, delay=0.02), "n"])
    s.preload("n")
    await s.wait_loaded("n")  # already loaded: at once
    await s.wait_idle()  # nothing queued: at once
    async with http.post(s.url + "/v1/model/load", json={"model_name": "m"}, headers=admin(s)) as r:
        await r.content.readuntil(b"\r\n\r\n")
        r.close()  # the load goes on without its client
    waiter = asyncio.create_task(s.wait_loaded("m"))
    await s.wait_idle()
    await asyncio.wait_for(waiter, 30)
    assert s.loaded == "m" and not s.is_loading


async def test_wait_loaded_times_out_when_the_model_never_loads(
    tabby_emulator_factory: Factory, http: aiohttp.ClientSession
) -> None:
    s = await tabby_emulator_factory(models=[EmulatedModel("m", fail_at=1)])
    _, chunks = await load(http, s, model_name="m")
    assert chunks[-1] == error_frame("Emulated load failure")
    with pytest.raises(asyncio.TimeoutError):
        await s.wait_loaded("m", timeout=0.05)
    s.preload("m")
    await s.wait_loaded("m", timeout=0.05)  # no waiting when it holds


async def test_wait_loaded_is_woken_by_the_change_it_waits_for(
    tabby_emulator: TabbyEmulator,
) -> None:
    s = tabby_emulator
    waiter = asyncio.create_task(s.wait_loaded("beta"))
    s.preload("alpha")  # a change, but not the awaited one
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done()
    s.preload("beta")
    await asyncio.wait_for(waiter, 30)
