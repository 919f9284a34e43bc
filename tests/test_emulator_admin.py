"""The emulator's other admin routes (LoRA, templates, sampler overrides, tokens, service
info) checked against the real server's behaviour, over raw HTTP (never the SDK).

Each route's keys, its check order (malformed JSON 422, the key, the no-model 503,
the body's 422, the route's own 400s), its state and every error answer. The 422
bodies are compared, entry for entry, with what FastAPI and pydantic answer for
request models declared as the server declares them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, Optional, Union

import aiohttp
import msgspec
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import AliasChoices, BaseModel, Field

from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.testing._fixtures import DEFAULT_LORAS, DEFAULT_PRESETS, DEFAULT_TEMPLATES
from tests.test_emulator import admin, api

pytestmark = pytest.mark.emulator(
    models=["m", "n", EmulatedModel("own", prompt_template="own-t", chat_template="{{ own }}")],
    drafts=["d"],
)

NO_MODEL = (503, {"detail": "No models are currently loaded."})
PLAIN_500 = (500, "Internal Server Error")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def admin_view(server: TabbyEmulator) -> dict[str, str]:
    """The admin key where a listing reads it: the api header."""
    return {"x-api-key": server.admin_key}


def both(server: TabbyEmulator) -> dict[str, str]:
    """The admin key in both headers: every route lets it through."""
    return {**admin(server), **admin_view(server)}


async def call(
    http: aiohttp.ClientSession,
    server: TabbyEmulator,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    json: Any = None,
    data: bytes | None = None,
) -> tuple[int, Any]:
    """``(status, body)``: the body parsed as JSON, or its text when it is not JSON."""
    async with http.request(method, server.url + path, headers=headers, json=json, data=data) as r:
        raw = await r.read()
        if r.headers.get("Content-Type") == "application/json":
            return r.status, msgspec.json.decode(raw)
        assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
        return r.status, raw.decode()


# --------------------------------------------------------------------------- the reference
# The server's request models as it declares them, served by FastAPI: what a
# bad body gets there is what the emulator must answer.


class LoraLoadInfo(BaseModel):
    name: str
    scaling: Optional[float] = 1.0  # noqa: UP045 - pydantic reads the annotation


class LoraLoadRequest(BaseModel):
    loras: list[LoraLoadInfo]
    skip_queue: bool = False


class TemplateSwitchRequest(BaseModel):
    prompt_template_name: str


class SamplerOverrideSwitchRequest(BaseModel):
    preset: Optional[str] = None  # noqa: UP045
    overrides: Optional[dict] = None  # type: ignore[type-arg]  # noqa: UP045


class ChatCompletionImageUrl(BaseModel):
    url: str


class ChatCompletionMessagePart(BaseModel):
    type: Literal["text", "image_url"] = "text"
    text: Optional[str] = None  # noqa: UP045
    image_url: Optional[ChatCompletionImageUrl] = None  # noqa: UP045


class Tool(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str = "call_0"
    function: Tool
    type: Literal["function"] = "function"
    index: Optional[int] = None  # noqa: UP045


class ChatCompletionMessage(BaseModel):
    role: str = "user"
    content: Optional[Union[str, list[ChatCompletionMessagePart]]] = None  # noqa: UP007, UP045
    reasoning_content: Optional[str] = None  # noqa: UP045
    tool_calls: Optional[list[ToolCall]] = None  # noqa: UP045
    tool_call_id: Optional[str] = None  # noqa: UP045


class CommonTokenRequest(BaseModel):
    add_bos_token: bool = True
    encode_special_tokens: bool = True
    decode_special_tokens: bool = True


class TokenEncodeRequest(CommonTokenRequest):
    text: Union[str, list[ChatCompletionMessage]]  # noqa: UP007
    template_vars: Optional[dict] = Field(  # type: ignore[type-arg]  # noqa: UP045
        default_factory=dict,
        validation_alias=AliasChoices("template_vars", "chat_template_kwargs"),
    )


class TokenDecodeRequest(CommonTokenRequest):
    tokens: list[int]


reference = FastAPI()


@reference.post("/v1/lora/load")
def _lora_load(data: LoraLoadRequest) -> None: ...


@reference.post("/v1/template/switch")
def _template_switch(data: TemplateSwitchRequest) -> None: ...


@reference.post("/v1/sampling/override/switch")
def _sampling_switch(data: SamplerOverrideSwitchRequest) -> None: ...


@reference.post("/v1/token/encode")
def _token_encode(data: TokenEncodeRequest) -> None: ...


@reference.post("/v1/token/decode")
def _token_decode(data: TokenDecodeRequest) -> None: ...


@pytest.fixture(scope="module")
def fastapi_answers() -> Iterator[TestClient]:
    with TestClient(reference) as client:
        yield client


def msg(role: Any = "user", **fields: Any) -> dict[str, Any]:
    return {"role": role, **fields}


INVALID_BODIES: list[tuple[str, Any]] = [
    ("/v1/lora/load", {}),
    ("/v1/lora/load", {"loras": "lora-a"}),
    ("/v1/lora/load", {"loras": {"name": "lora-a"}}),
    ("/v1/lora/load", {"loras": [{"scaling": 1.0}, "x", {"name": 5, "scaling": "big"}]}),
    ("/v1/lora/load", {"loras": [{"name": "a"}], "skip_queue": None}),
    ("/v1/lora/load", {"loras": [{"name": "a"}], "skip_queue": "maybe"}),
    ("/v1/lora/load", []),
    ("/v1/template/switch", {}),
    ("/v1/template/switch", {"name": "chatml"}),  # the old alias is gone
    ("/v1/template/switch", {"prompt_template_name": None}),
    ("/v1/template/switch", {"prompt_template_name": 3}),
    ("/v1/sampling/override/switch", {"preset": 5}),
    ("/v1/sampling/override/switch", {"overrides": [1, 2]}),
    ("/v1/sampling/override/switch", {"preset": ["a"], "overrides": "x"}),
    ("/v1/sampling/override/switch", "preset"),
    ("/v1/token/encode", {}),
    ("/v1/token/encode", {"text": 5}),
    ("/v1/token/encode", {"text": None}),
    (
        "/v1/token/encode",
        {
            "text": "x",
            "add_bos_token": None,
            "encode_special_tokens": None,
            "decode_special_tokens": "?",
        },
    ),
    ("/v1/token/encode", {"text": [msg(content=5)]}),
    ("/v1/token/encode", {"text": [msg(role=None), "hi", 7]}),
    ("/v1/token/encode", {"text": [msg(content=[{"type": "video"}, {"text": 1}, "x"])]}),
    ("/v1/token/encode", {"text": [msg(content=[{"type": None, "image_url": {}}])]}),
    ("/v1/token/encode", {"text": [msg(reasoning_content=1, tool_call_id=2)]}),
    (
        "/v1/token/encode",
        {"text": [msg(tool_calls=[{"function": {"name": "f"}}, {"id": None, "type": "x"}, 1])]},
    ),
    ("/v1/token/encode", {"text": [msg(tool_calls={"function": {}})]}),
    ("/v1/token/encode", {"text": "x", "template_vars": []}),
    ("/v1/token/encode", {"text": "x", "chat_template_kwargs": "y"}),  # loc names the alias
    ("/v1/token/encode", {"add_bos_token": "no", "text": 1, "template_vars": 2}),
    ("/v1/token/decode", {}),
    ("/v1/token/decode", {"tokens": "1 2"}),
    ("/v1/token/decode", {"tokens": [1, "x", 2.5, None], "decode_special_tokens": None}),
]


@pytest.mark.parametrize(("path", "body"), INVALID_BODIES)
async def test_invalid_bodies_get_fastapis_422(
    server: TabbyEmulator,
    http: aiohttp.ClientSession,
    fastapi_answers: TestClient,
    path: str,
    body: Any,
) -> None:
    expected = fastapi_answers.post(path, json=body)
    assert expected.status_code == 422
    server.preload("m")
    assert await call(http, server, "POST", path, both(server), json=body) == (
        422,
        expected.json(),
    )


@pytest.mark.parametrize("path", sorted({p for p, _ in INVALID_BODIES}))
@pytest.mark.parametrize("raw", [b"{oops", b'{"text": "x",}', b"", b"null"])
async def test_malformed_or_missing_bodies_get_fastapis_422_before_the_key(
    server: TabbyEmulator,
    http: aiohttp.ClientSession,
    fastapi_answers: TestClient,
    path: str,
    raw: bytes,
) -> None:
    expected = fastapi_answers.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert expected.status_code == 422
    headers = {"Content-Type": "application/json"}
    answer = await call(http, server, "POST", path, headers, data=raw)  # no key, no model
    if raw in (b"{oops", b'{"text": "x",}'):
        assert answer == (422, expected.json())  # before the key is looked at
    else:
        assert answer[0] == 401  # a body that parses is checked after the key
        server.preload("m")
        assert await call(http, server, "POST", path, {**headers, **both(server)}, data=raw) == (
            422,
            expected.json(),
        )


def test_the_reference_gives_the_union_locs_the_server_gives(
    fastapi_answers: TestClient,
) -> None:
    # The reference itself, against the locs seen on the wire.
    body = {"text": [msg(content=[{"type": "audio"}])]}
    locs = [e["loc"] for e in fastapi_answers.post("/v1/token/encode", json=body).json()["detail"]]
    assert locs == [
        ["body", "text", "str"],
        ["body", "text", "list[ChatCompletionMessage]", 0, "content", "str"],
        [
            "body",
            "text",
            "list[ChatCompletionMessage]",
            0,
            "content",
            "list[ChatCompletionMessagePart]",
            0,
            "type",
        ],
    ]


# --------------------------------------------------------------------------- keys and order

API_ROUTES = [
    ("GET", "/v1/loras", None),
    ("GET", "/v1/lora/list", None),
    ("GET", "/v1/lora", None),
    ("GET", "/v1/templates", None),
    ("GET", "/v1/template/list", None),
    ("GET", "/v1/sampling/overrides", None),
    ("GET", "/v1/sampling/override/list", None),
    ("POST", "/v1/token/encode", {"text": "hi"}),
    ("POST", "/v1/token/decode", {"tokens": [1]}),
]
ADMIN_ROUTES = [
    ("POST", "/v1/lora/load", {"loras": [{"name": "lora-a"}]}),
    ("POST", "/v1/lora/unload", None),
    ("POST", "/v1/template/switch", {"prompt_template_name": "chatml"}),
    ("POST", "/v1/template/unload", None),
    ("POST", "/v1/sampling/override/switch", {"preset": "fast"}),
    ("POST", "/v1/sampling/override/unload", None),
]
#: The routes that need a loaded model (503 without one).
NEEDS_MODEL = {
    "/v1/lora",
    "/v1/lora/load",
    "/v1/lora/unload",
    "/v1/template/switch",
    "/v1/template/unload",
    "/v1/token/encode",
    "/v1/token/decode",
}


async def check_keys(
    http: aiohttp.ClientSession,
    server: TabbyEmulator,
    route: tuple[str, str, Any],
    refused: list[tuple[dict[str, str], tuple[int, Any]]],
    accepted: list[dict[str, str]],
) -> None:
    """Each refused set of headers gets its 401; each accepted one a 200."""
    method, path, body = route
    for headers, expected in refused:
        assert await call(http, server, method, path, headers, json=body) == expected
    for headers in accepted:
        assert (await call(http, server, method, path, headers, json=body))[0] == 200


@pytest.mark.parametrize("route", API_ROUTES)
async def test_api_routes_take_an_api_key(
    server: TabbyEmulator, http: aiohttp.ClientSession, route: tuple[str, str, Any]
) -> None:
    server.preload("m")
    no_key = (401, {"detail": "Please provide an API key"})
    refused = [
        ({}, no_key),
        ({"x-api-key": "wrong"}, (401, {"detail": "Invalid API key"})),
        (admin(server), no_key),
    ]
    bearer = {"Authorization": f"bearer {server.api_key}"}
    await check_keys(http, server, route, refused, [api(server), admin_view(server), bearer])


@pytest.mark.parametrize("route", ADMIN_ROUTES)
async def test_admin_routes_take_the_admin_key(
    server: TabbyEmulator, http: aiohttp.ClientSession, route: tuple[str, str, Any]
) -> None:
    server.preload("m")
    no_key = (401, {"detail": "Please provide an admin key"})
    bad_key = (401, {"detail": "Invalid admin key"})
    refused = [
        ({}, no_key),
        (api(server), no_key),
        (admin_view(server), no_key),
        ({"x-admin-key": "wrong"}, bad_key),
        ({"Authorization": f"Bearer {server.api_key}"}, bad_key),
    ]
    bearer = {"Authorization": f"Bearer {server.admin_key}"}
    await check_keys(http, server, route, refused, [])
    assert server.sampler_overrides == (None, {})  # nothing was switched
    await check_keys(http, server, route, [], [admin(server), bearer])


@pytest.mark.parametrize(("method", "path", "body"), API_ROUTES + ADMIN_ROUTES)
async def test_the_key_comes_before_the_model_and_the_model_before_the_body(
    server: TabbyEmulator, http: aiohttp.ClientSession, method: str, path: str, body: Any
) -> None:
    key = admin(server) if (method, path, body) in ADMIN_ROUTES else api(server)
    assert (await call(http, server, method, path, json=body))[0] == 401  # no model, no key
    answer = await call(http, server, method, path, key, json=body)
    if path not in NEEDS_MODEL:
        assert answer[0] == 200  # needs no model
        return
    assert answer == NO_MODEL
    if method == "POST" and body is not None:
        # A body that fails validation: still the 503 first.
        assert await call(http, server, method, path, key, json={"x": 1}) == NO_MODEL


async def test_a_model_that_is_loading_is_no_model(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    server.add_model(EmulatedModel("slow", modules=50, delay=0.05))
    async with http.post(
        server.url + "/v1/model/load", json={"model_name": "slow"}, headers=admin(server)
    ) as r:
        await r.content.readuntil(b"\r\n\r\n")
        assert server.is_loading
        for method, path, body in API_ROUTES + ADMIN_ROUTES:
            key = api(server) if (method, path, body) in API_ROUTES else admin(server)
            if path in NEEDS_MODEL:
                assert await call(http, server, method, path, key, json=body) == NO_MODEL


@pytest.mark.parametrize(
    "path",
    ["/v1/loras", "/v1/lora/list", "/v1/templates", "/v1/sampling/override/list"],
)
async def test_a_listing_with_a_wrong_admin_key_beside_a_valid_api_key_is_a_plain_500(
    server: TabbyEmulator, http: aiohttp.ClientSession, path: str
) -> None:
    headers = {"x-api-key": server.api_key, "x-admin-key": "wrong"}
    assert await call(http, server, "GET", path, headers) == PLAIN_500


# --------------------------------------------------------------------------- service info

SERVICE_INFO = {
    "version": 0.1,
    "software": {
        "name": "TabbyAPI",
        "repository": "https://github.com/theroyallab/tabbyAPI",
        "homepage": "https://github.com/theroyallab/tabbyAPI",
    },
    "api": {
        "openai": {
            "name": "OpenAI API",
            "relative_url": "/v1",
            "documentation": "https://theroyallab.github.io/tabbyAPI",
            "version": 1,
        },
        "koboldai": {
            "name": "KoboldAI API",
            "relative_url": "/api",
            "documentation": "https://theroyallab.github.io/tabbyAPI",
            "version": 1,
        },
    },
}


async def test_service_info_is_fixed_and_needs_no_key(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    for headers in ({}, {"x-api-key": "wrong", "x-admin-key": "wrong"}, {"Authorization": "x"}):
        assert await call(http, server, "GET", "/.well-known/serviceinfo", headers) == (
            200,
            SERVICE_INFO,
        )
    server.preload("m")
    assert (await call(http, server, "GET", "/.well-known/serviceinfo"))[1] == SERVICE_INFO
    async with http.post(server.url + "/.well-known/serviceinfo") as r:
        assert (r.status, await r.json(), r.headers["Allow"]) == (
            405,
            {"detail": "Method Not Allowed"},
            "GET",
        )


# --------------------------------------------------------------------------- LoRA


async def test_lora_listings(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    for path in ("/v1/loras", "/v1/lora/list"):
        status, listing = await call(http, server, "GET", path, admin_view(server))
        assert status == 200 and listing["object"] == "list"
        assert [card["id"] for card in listing["data"]] == list(DEFAULT_LORAS)
        card = listing["data"][0]
        assert list(card) == ["id", "object", "created", "owned_by", "scaling"]
        assert (card["object"], card["owned_by"], card["scaling"]) == ("lora", "tabbyAPI", None)
        assert isinstance(card["created"], int)
        # The api view is the active adapters: never any on this backend.
        assert await call(http, server, "GET", path, api(server)) == (
            200,
            {"object": "list", "data": []},
        )
    server.preload("m")
    assert await call(http, server, "GET", "/v1/lora", admin_view(server)) == (
        200,
        {"object": "list", "data": []},
    )


async def test_a_lora_load_fails_every_adapter_with_a_200(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    server.preload("m")
    body = {
        "loras": [
            {"name": "lora-b", "scaling": 0.5},
            {"name": "lora-a", "scaling": None},  # null scaling is accepted
            {"name": "lora-b"},
            {"name": "no-such-lora"},
            {"name": ""},
        ],
        "skip_queue": True,
    }
    assert await call(http, server, "POST", "/v1/lora/load", admin(server), json=body) == (
        200,
        {"success": [], "failure": ["lora-b", "lora-a", "lora-b", "no-such-lora", ""]},
    )
    assert (await call(http, server, "GET", "/v1/lora", api(server)))[1]["data"] == []
    assert await call(http, server, "POST", "/v1/lora/unload", admin(server)) == (200, None)


async def test_a_lora_load_of_no_adapters_is_a_400(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    server.preload("m")
    assert await call(http, server, "POST", "/v1/lora/load", admin(server), json={"loras": []}) == (
        400,
        {"detail": "List of loras to load is not found."},
    )


@pytest.mark.emulator(models=["m"], loras=None)
async def test_without_a_lora_folder(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    assert await call(http, server, "GET", "/v1/lora/list", admin(server)) == (
        401,
        {"detail": "Please provide an API key"},
    )
    assert await call(http, server, "GET", "/v1/lora/list", admin_view(server)) == PLAIN_500
    assert (await call(http, server, "GET", "/v1/loras", api(server)))[1]["data"] == []
    server.preload("m")
    load = "/v1/lora/load"
    # The empty list is checked first, then the folder.
    assert await call(http, server, "POST", load, admin(server), json={"loras": []}) == (
        400,
        {"detail": "List of loras to load is not found."},
    )
    assert await call(
        http, server, "POST", load, admin(server), json={"loras": [{"name": "a"}]}
    ) == (
        400,
        {"detail": "A parent lora directory does not exist for load. Check your config.yml?"},
    )


@pytest.mark.emulator(models=["m"], downloadable={"org/style-lora": 0, "org/model-x": 0})
async def test_a_downloaded_lora_is_a_lora_folder_not_a_model(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    body = {"repo_id": "org/style-lora", "repo_type": "lora"}
    assert await call(http, server, "POST", "/v1/download", admin(server), json=body) == (
        200,
        {"download_path": "loras/style-lora"},
    )
    listing = (await call(http, server, "GET", "/v1/lora/list", admin_view(server)))[1]
    assert [card["id"] for card in listing["data"]] == [*DEFAULT_LORAS, "style-lora"]
    assert "style-lora" not in server.models
    assert await call(http, server, "POST", "/v1/download", admin(server), json=body) == (
        400,
        {"detail": "[Errno 17] File exists: 'loras/style-lora'"},
    )


# --------------------------------------------------------------------------- templates


async def card_template(http: aiohttp.ClientSession, server: TabbyEmulator) -> tuple[Any, ...]:
    """``(prompt_template, prompt_template_content, /props chat_template)``."""
    _, card = await call(http, server, "GET", "/v1/model", api(server))
    _, props = await call(http, server, "GET", "/props", api(server))
    params = card["parameters"]
    return params["prompt_template"], params["prompt_template_content"], props["chat_template"]


async def switch(http: aiohttp.ClientSession, server: TabbyEmulator, name: Any) -> tuple[int, Any]:
    body = {"prompt_template_name": name}
    return await call(http, server, "POST", "/v1/template/switch", admin(server), json=body)


async def test_template_listings(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    every = {"object": "list", "data": list(DEFAULT_TEMPLATES)}
    none: dict[str, Any] = {"object": "list", "data": []}
    for path in ("/v1/templates", "/v1/template/list"):
        assert await call(http, server, "GET", path, admin_view(server)) == (200, every)
        assert await call(http, server, "GET", path, api(server)) == (200, none)
    server.preload("m", prompt_template="alpaca")
    assert await call(http, server, "GET", "/v1/templates", api(server)) == (
        200,
        {"object": "list", "data": ["alpaca"]},
    )


@pytest.mark.parametrize(
    ("name", "reported", "text_of"),
    [
        ("chatml", "chatml", "chatml"),
        ("chatml.jinja", "chatml", "chatml"),
        ("alpaca.txt", "alpaca.txt", "alpaca"),  # another extension: .jinja in its place
        ("sub/../chatml.jinja", "chatml", None),  # names are not sanitised: no such file here
    ],
)
async def test_template_switch(
    server: TabbyEmulator,
    http: aiohttp.ClientSession,
    name: str,
    reported: str,
    text_of: str | None,
) -> None:
    server.preload("m")
    if text_of is None:
        assert await switch(http, server, name) == PLAIN_500
        return
    assert await switch(http, server, name) == (200, None)
    text = DEFAULT_TEMPLATES[text_of]
    assert await card_template(http, server) == (reported, text, text)
    assert server.template == reported


async def test_template_switch_errors(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    server.preload("m", prompt_template="alpaca")
    assert await switch(http, server, "") == (400, {"detail": "New template name not found."})
    # An unknown name is the server's plain-text 500, and nothing changes.
    for unknown in ("nope", "nope.jinja", "CHATML", ".", ".."):
        assert await switch(http, server, unknown) == PLAIN_500
    assert server.template == "alpaca"


async def test_template_unload(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    server.preload("m", prompt_template="chatml")
    assert await call(http, server, "POST", "/v1/template/unload", admin(server)) == (200, None)
    assert await card_template(http, server) == (None, None, "")
    assert (await call(http, server, "GET", "/v1/templates", api(server)))[1]["data"] == []


async def load(http: aiohttp.ClientSession, server: TabbyEmulator, **body: Any) -> None:
    async with http.post(server.url + "/v1/model/load", json=body, headers=admin(server)) as r:
        assert r.status == 200
        assert b'"status":"finished"' in await r.read()


async def test_the_template_follows_the_loaded_model(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    alpaca, chatml = DEFAULT_TEMPLATES["alpaca"], DEFAULT_TEMPLATES["chatml"]
    await load(http, server, model_name="m", prompt_template="alpaca")
    assert await card_template(http, server) == ("alpaca", alpaca, alpaca)
    assert await switch(http, server, "chatml") == (200, None)
    await load(http, server, model_name="m", prompt_template="alpaca")  # a no-op reload keeps it
    assert await card_template(http, server) == ("chatml", chatml, chatml)
    await load(http, server, model_name="n", prompt_template="alpaca.jinja")  # a load replaces it
    assert await card_template(http, server) == ("alpaca", alpaca, alpaca)
    await load(http, server, model_name="m", prompt_template="missing")  # silently unused
    assert await card_template(http, server) == (None, None, "")
    await load(http, server, model_name="own")  # the model's own template
    assert await card_template(http, server) == ("own-t", "{{ own }}", "{{ own }}")
    await load(http, server, model_name="n", prompt_template="missing")  # the model's own, if any
    assert await card_template(http, server) == (None, None, "")
    await load(http, server, model_name="own", prompt_template="chatml")
    assert await card_template(http, server) == ("chatml", chatml, chatml)
    assert await call(http, server, "POST", "/v1/model/unload", admin(server)) == (200, None)
    assert (await call(http, server, "GET", "/v1/templates", api(server)))[1]["data"] == []
    assert server.template is None


@pytest.mark.emulator(models=["m"], templates={})
async def test_without_templates(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    assert (await call(http, server, "GET", "/v1/templates", admin_view(server)))[1]["data"] == []
    await load(http, server, model_name="m", prompt_template="chatml")  # silently unused
    assert await card_template(http, server) == (None, None, "")
    assert await switch(http, server, "chatml") == PLAIN_500


@pytest.mark.emulator(models=["m"], templates={"x.v2": "{{ v2 }}", "llama3": "{{ l3 }}"})
async def test_templates_are_a_fixture(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    listing = await call(http, server, "GET", "/v1/template/list", admin_view(server))
    assert listing == (200, {"object": "list", "data": ["x.v2", "llama3"]})
    server.preload("m")
    assert await switch(http, server, "x.v2.jinja") == (200, None)
    assert await card_template(http, server) == ("x.v2", "{{ v2 }}", "{{ v2 }}")
    assert await switch(http, server, "x.v2") == PLAIN_500  # ".v2" is replaced: x.jinja
    assert await switch(http, server, "chatml") == PLAIN_500


# --------------------------------------------------------------------------- sampling

OVERRIDES = "/v1/sampling/override/list"


async def overrides(http: aiohttp.ClientSession, server: TabbyEmulator) -> Any:
    return (await call(http, server, "GET", OVERRIDES, admin_view(server)))[1]


async def sampling_switch(
    http: aiohttp.ClientSession, server: TabbyEmulator, body: Any
) -> tuple[int, Any]:
    return await call(
        http, server, "POST", "/v1/sampling/override/switch", admin(server), json=body
    )


async def test_sampling_listings(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    for path in ("/v1/sampling/overrides", OVERRIDES):
        assert await call(http, server, "GET", path, admin_view(server)) == (
            200,
            {"selected_preset": None, "overrides": {}, "presets": list(DEFAULT_PRESETS)},
        )
        assert await call(http, server, "GET", path, api(server)) == (
            200,
            {"selected_preset": None, "overrides": {}, "presets": []},
        )


async def test_selected_preset_is_the_last_preset_loaded(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    assert await sampling_switch(http, server, {"preset": "fast"}) == (200, None)
    assert await overrides(http, server) == {
        "selected_preset": "fast",
        "overrides": DEFAULT_PRESETS["fast"],
        "presets": list(DEFAULT_PRESETS),
    }
    # The preset wins over overrides sent beside it.
    assert await sampling_switch(http, server, {"preset": "precise", "overrides": {"a": 1}}) == (
        200,
        None,
    )
    assert server.sampler_overrides == ("precise", DEFAULT_PRESETS["precise"])
    # A dict replaces the overrides and leaves selected_preset as it was.
    assert await sampling_switch(http, server, {"preset": "", "overrides": {"top_p": 1}}) == (
        200,
        None,
    )
    assert server.sampler_overrides == ("precise", {"top_p": 1})
    # Unload empties the dict and keeps it too.
    assert await call(http, server, "POST", "/v1/sampling/override/unload", admin(server)) == (
        200,
        None,
    )
    assert server.sampler_overrides == ("precise", {})


@pytest.mark.parametrize("body", [{}, {"preset": ""}, {"overrides": {}}, {"preset": None}])
async def test_a_switch_without_preset_or_overrides_is_a_400(
    server: TabbyEmulator, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    assert await sampling_switch(http, server, body) == (
        400,
        {"detail": "A sampler override preset or dictionary wasn't provided."},
    )


@pytest.mark.parametrize("name", ["nope", "fast.yml", "FAST"])
async def test_an_unknown_preset_is_a_400_naming_it(
    server: TabbyEmulator, http: aiohttp.ClientSession, name: str
) -> None:
    assert await sampling_switch(http, server, {"preset": name, "overrides": {"a": 1}}) == (
        400,
        {"detail": f"Sampler override preset with name {name} does not exist. Check the spelling?"},
    )
    assert server.sampler_overrides == (None, {})


@pytest.mark.emulator(models=["m"], presets={"x.yml": {"t": 1}, "p": {"a": None, "b": [None]}})
async def test_presets_are_a_fixture(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    # "x.yml" reads the file x.yml.yml: here a preset named "x.yml" has it.
    assert await sampling_switch(http, server, {"preset": "x.yml"}) == (200, None)
    assert server.sampler_overrides == ("x.yml", {"t": 1})
    assert await sampling_switch(http, server, {"preset": "p"}) == (200, None)
    assert server.sampler_overrides == ("p", {"b": []})  # a preset's nulls go too


async def test_overrides_lose_their_nulls_and_are_not_checked(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    sent = {
        "top_k": {"override": None, "force": True},
        "min_p": None,
        "banned": {"override": [1, None, {"x": None}], "nested": {"a": None, "b": 2}},
        "made_up": "anything",
    }
    assert await sampling_switch(http, server, {"overrides": sent}) == (200, None)
    assert (await overrides(http, server))["overrides"] == {
        "top_k": {"force": True},
        "banned": {"override": [1, {}], "nested": {"b": 2}},
        "made_up": "anything",
    }


async def test_overrides_need_no_model_and_survive_loads(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    assert await sampling_switch(http, server, {"preset": "fast"}) == (200, None)
    await load(http, server, model_name="m")
    await load(http, server, model_name="n")
    assert await call(http, server, "POST", "/v1/model/unload", admin(server)) == (200, None)
    assert server.sampler_overrides == ("fast", DEFAULT_PRESETS["fast"])


@pytest.mark.emulator(models=["m"], override_preset="precise")
async def test_a_startup_preset(server: TabbyEmulator) -> None:
    assert server.sampler_overrides == ("precise", DEFAULT_PRESETS["precise"])


@pytest.mark.emulator(models=["m"], override_preset="missing")
async def test_a_missing_startup_preset_is_ignored(server: TabbyEmulator) -> None:
    assert server.sampler_overrides == (None, {})


@pytest.mark.emulator(models=["m"], presets={})
async def test_without_presets(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    assert (await overrides(http, server))["presets"] == []
    assert (await sampling_switch(http, server, {"preset": "fast"}))[0] == 400
    assert await sampling_switch(http, server, {"overrides": {"a": 1}}) == (200, None)


# --------------------------------------------------------------------------- tokens


async def encode(
    http: aiohttp.ClientSession, server: TabbyEmulator, **body: Any
) -> tuple[int, Any]:
    return await call(http, server, "POST", "/v1/token/encode", api(server), json=body)


async def decode(
    http: aiohttp.ClientSession, server: TabbyEmulator, **body: Any
) -> tuple[int, Any]:
    return await call(http, server, "POST", "/v1/token/decode", api(server), json=body)


def toy(text: str) -> list[int]:
    """The toy tokenizer's ids: UTF-8 bytes, each plus 3."""
    return [b + 3 for b in text.encode()]


async def test_encode_and_decode_text(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    server.preload("m")
    assert await encode(http, server, text="Hé!") == (
        200,
        {"tokens": [1, *toy("Hé!")], "length": 5},
    )
    assert await encode(http, server, text="Hé!", add_bos_token=False) == (
        200,
        {"tokens": toy("Hé!"), "length": 4},
    )
    assert await encode(http, server, text="") == (200, {"tokens": [1], "length": 1})
    # Special tokens' texts are read as special tokens unless told otherwise.
    assert (await encode(http, server, text="a</s>", add_bos_token=0))[1]["tokens"] == [
        *toy("a"),
        2,
    ]
    plain = await encode(http, server, text="a</s>", add_bos_token=0, encode_special_tokens=0)
    assert plain[1]["tokens"] == toy("a</s>")
    # Decoding is the inverse.
    assert await decode(http, server, tokens=[1, *toy("Hé!"), 2]) == (200, {"text": "<s>Hé!</s>"})
    assert await decode(http, server, tokens=[1, *toy("Hé!")], decode_special_tokens=False) == (
        200,
        {"text": "Hé!"},
    )
    assert await decode(http, server, tokens=["72", 9999, -1]) == (200, {"text": "E\ufffd\ufffd"})
    assert await decode(http, server, tokens=[]) == (200, {"text": ""})


async def test_messages_need_a_template(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    server.preload("m")  # "m" has no template of its own
    # The server's 422 with a string detail, not a list.
    assert await encode(http, server, text=[{"role": "user", "content": "Hi"}]) == (
        422,
        {"detail": "Cannot tokenize chat completion message because a prompt template is not set."},
    )
    assert await encode(http, server, text="Hi") == (200, {"tokens": [1, *toy("Hi")], "length": 3})


async def test_messages_are_rendered_by_the_toy_renderer(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    server.preload("m", prompt_template="chatml")
    text = [
        {"role": "system", "content": "Be brief."},
        {"content": [{"type": "text", "text": "Hi "}, {"text": "there"}]},  # role "user"
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "content": "second", "tool_call_id": "c2"},
        {"role": "tool", "content": "other", "tool_call_id": "c9"},
        {"role": "tool", "content": "first", "tool_call_id": "c1"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "x"}}, {"text": "!"}],
        },
    ]
    status, encoded = await encode(
        http, server, text=text, add_bos_token=False, chat_template_kwargs={"x": 1}
    )
    assert status == 200
    prompt = (
        "system: Be brief.\nuser: Hi there\nassistant: \n"
        "tool: first\ntool: second\ntool: other\nuser: !\n"  # results in the calls' order
    )
    assert encoded == {"tokens": toy(prompt), "length": len(prompt.encode())}
    assert await decode(http, server, tokens=encoded["tokens"]) == (200, {"text": prompt})
    assert await encode(http, server, text=[], add_bos_token=False) == (
        200,
        {"tokens": [], "length": 0},
    )


async def test_image_parts_need_vision(server: TabbyEmulator, http: aiohttp.ClientSession) -> None:
    server.add_model(EmulatedModel("v", vision_modules=2))
    server.preload("v", vision=True, prompt_template="chatml")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    status, encoded = await encode(
        http, server, text=[{"content": [{"text": "a"}, image]}], add_bos_token=False
    )
    assert (status, encoded["tokens"]) == (200, toy("user: a<image>\n"))


async def test_a_text_part_without_text_is_a_plain_500(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    server.preload("m", prompt_template="chatml")
    assert await encode(http, server, text=[{"content": [{"type": "text"}]}]) == PLAIN_500
    assert await encode(http, server, text=[{"content": [{"text": None}]}]) == PLAIN_500


# --------------------------------------------------------------------------- faults


async def test_the_fault_hooks_reach_the_admin_routes(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    # A backend that applies LoRAs, or a proxy in front: any route can be scripted.
    server.preload("m")
    body = b'{"success":["lora-a"],"failure":[]}'
    server.faults.fail_next(1, status=200, body=body, path="/v1/lora/load")
    assert await call(
        http, server, "POST", "/v1/lora/load", admin(server), json={"loras": [{"name": "lora-a"}]}
    ) == (200, {"success": ["lora-a"], "failure": []})
    server.faults.malformed_json(path="/v1/sampling/override/list")
    async with http.get(server.url + OVERRIDES, headers=api(server)) as r:
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(await r.read())
