"""The emulator's model loads checked against what TabbyAPI's source does with each field.

Over raw HTTP (never the SDK): how loads compare folders (resolved paths), how the
card's context, cache and chunk sizes follow from the request, what ``cache_mode``,
``vision`` and ``prompt_template`` do, a folder's own ``tabby_config.yml`` winning
over the request, the draft listing, and the load requests' validation compared,
body for body, with FastAPI and pydantic models declared as the server declares
them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, Optional, Union

import aiohttp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from tabby_async.testing import EmulatedModel, TabbyEmulator
from tests.test_emulator import admin, api, frame, get_json, load, progress

pytestmark = pytest.mark.emulator(
    models=[
        EmulatedModel("org/model/4.0bpw", modules=2, max_seq_len=8192),
        EmulatedModel("other-org/model/4.0bpw", modules=3, max_seq_len=16384),
        "m",
    ],
    drafts=["org/draft/4.0bpw", "other/draft"],
    embeddings=["a/embed", "b/embed"],
    ping_interval=0,
)

NO_OP = [frame("model", 1, 1, "processing"), frame("model", 1, 1, "finished")]
NO_PATH = {"detail": "Could not find the model path for load. Check model name or config.yml?"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def card(http: aiohttp.ClientSession, server: TabbyEmulator) -> dict[str, Any]:
    """The loaded model's card parameters (asserting that one is loaded)."""
    status, body = await get_json(http, server.url + "/v1/model", api(server))
    assert status == 200, body
    params: dict[str, Any] = body["parameters"]
    return params


async def post(
    http: aiohttp.ClientSession, server: TabbyEmulator, path: str, body: Any
) -> tuple[int, Any]:
    async with http.post(server.url + path, json=body, headers=admin(server)) as r:
        return r.status, await r.json(content_type=None)


# --------------------------------------------------------------------------- folders


async def test_loads_compare_resolved_paths_not_folder_names(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = server
    _, chunks = await load(http, s, model_name="org/model/4.0bpw")
    assert chunks == progress("model", 2)
    # Same last segment, another folder: unloaded and replaced, with its parameters.
    _, chunks = await load(http, s, model_name="other-org/model/4.0bpw", cache_mode="Q8")
    assert chunks == progress("model", 3)
    assert s.loaded == "other-org/model/4.0bpw"
    params = await card(http, s)
    assert (params["cache_mode"], params["max_seq_len"]) == ("Q8", 16384)
    # Spellings of the loaded folder are the no-op, ignoring the new parameters.
    for spelling in (
        "other-org/model/4.0bpw",
        "other-org/model/../model/4.0bpw",
        "other-org//model/./4.0bpw",
        "org/../other-org/model/4.0bpw",
    ):
        _, chunks = await load(http, s, model_name=spelling, cache_mode="Q4")
        assert chunks == NO_OP, spelling
    assert s.loaded == "other-org/model/4.0bpw"
    assert (await card(http, s))["cache_mode"] == "Q8"


@pytest.mark.parametrize(
    "name",
    [
        "nope/../m",  # a ".." resolves only out of a folder that exists
        "../m",  # out of the model folder
        "org/model",  # a parent folder, not a model of the emulator
        "/m",
    ],
)
async def test_names_that_find_no_model_folder(
    server: TabbyEmulator, http: aiohttp.ClientSession, name: str
) -> None:
    assert await post(http, server, "/v1/model/load", {"model_name": name}) == (400, NO_PATH)


async def test_embedding_loads_compare_resolved_paths(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = server
    path = "/v1/model/embedding/load"
    done = {"model_type": "embedding_model", "module": 1, "modules": 1, "status": "finished"}
    assert await post(http, s, path, {"embedding_model_name": "a/embed"}) == (200, done)
    already = {"detail": 'Embeddings model "embed" is already loaded! Aborting.'}
    for spelling in ("a/embed", "a/./embed", "b/../a/embed"):
        assert await post(http, s, path, {"embedding_model_name": spelling}) == (400, already)
    assert s.loaded_embedding == "a/embed"
    # Another folder with the same last segment replaces the loaded one.
    assert await post(http, s, path, {"embedding_model_name": "b/embed"}) == (200, done)
    assert s.loaded_embedding == "b/embed"
    status, body = await get_json(http, s.url + "/v1/model/embedding", api(s))
    assert (status, body["id"]) == (200, "embed")


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("native", "sent", "expected"),
    [
        (8192, {}, (8192, 8192)),
        (8192, {"max_seq_len": 0}, (8192, 8192)),  # 0 counts as not set
        (8192, {"max_seq_len": -1}, (8192, 8192)),  # -1: the model's own
        (8192, {"max_seq_len": 2048}, (2048, 2048)),  # cache_size follows the context
        (8192, {"max_seq_len": 2048, "cache_size": 0}, (2048, 2048)),
        (8192, {"max_seq_len": 2048, "cache_size": 6000}, (2048, 6000)),
        (8192, {"max_seq_len": 16384, "cache_size": 4096}, (4096, 4096)),  # cut to the cache
        (8192, {"max_seq_len": -1, "cache_size": 4096}, (4096, 4096)),
        (8192, {"cache_size": 1000}, (1000, 1000)),
        (None, {}, (8192, 8192)),  # a config without max_position_embeddings
        (None, {"max_seq_len": -1}, (4096, 4096)),
    ],
)
@pytest.mark.emulator(ping_interval=0)
async def test_context_and_cache_size(
    server: TabbyEmulator,
    http: aiohttp.ClientSession,
    native: int | None,
    sent: dict[str, Any],
    expected: tuple[int, int],
) -> None:
    server.add_model(EmulatedModel("x", max_seq_len=native))
    _, chunks = await load(http, server, model_name="x", **sent)
    assert chunks[-1] == frame("model", 4, 4, "finished")
    params = await card(http, server)
    assert (params["max_seq_len"], params["cache_size"]) == expected
    _, props = await get_json(http, server.url + "/props", api(server))
    assert props["default_generation_settings"] == {"n_ctx": expected[0]}


@pytest.mark.parametrize(
    ("sent", "reported"),
    [(None, 2048), (0, 256), (-5, 256), (256, 256), (300, 512), (1000, 1024), (4096, 4096)],
)
async def test_chunk_size_is_at_least_256_and_rounded_up(
    server: TabbyEmulator, http: aiohttp.ClientSession, sent: int | None, reported: int
) -> None:
    await load(http, server, model_name="m", chunk_size=sent)
    assert (await card(http, server))["chunk_size"] == reported


@pytest.mark.parametrize("sent", ["q4", "Q4", "4, 4", "8,2", "9,9", "FP8", "banana", ""])
async def test_cache_mode_is_reported_as_sent(
    server: TabbyEmulator, http: aiohttp.ClientSession, sent: str
) -> None:
    _, chunks = await load(http, server, model_name="m", cache_mode=sent)
    assert chunks[-1] == frame("model", 4, 4, "finished")
    assert (await card(http, server))["cache_mode"] == sent


async def test_cache_mode_absent_or_null_is_fp16(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    await load(http, server, model_name="m", cache_mode=None)
    assert (await card(http, server))["cache_mode"] == "FP16"


# --------------------------------------------------------------------------- vision, templates


async def test_vision_on_a_model_without_a_vision_component_is_off(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    _, chunks = await load(http, server, model_name="m", vision=True)
    assert chunks == progress("model", 4)  # no vision frames
    assert (await card(http, server))["use_vision"] is False


@pytest.mark.emulator(
    models=[
        EmulatedModel("own", prompt_template="from_tokenizer_config", chat_template="{{ own }}"),
        "bare",
    ],
    templates={"chatml": "chatml-text"},
    ping_interval=0,
)
@pytest.mark.parametrize(
    ("model", "requested", "reported"),
    [
        ("own", "missing", ("from_tokenizer_config", "{{ own }}")),
        ("own", None, ("from_tokenizer_config", "{{ own }}")),
        ("bare", "missing", (None, None)),
        ("bare", None, (None, None)),
        ("bare", "chatml.jinja", ("chatml", "chatml-text")),
    ],
)
async def test_a_missing_prompt_template_falls_back_to_the_models_own_or_none(
    server: TabbyEmulator,
    http: aiohttp.ClientSession,
    model: str,
    requested: str | None,
    reported: tuple[str | None, str | None],
) -> None:
    _, chunks = await load(http, server, model_name=model, prompt_template=requested)
    assert chunks[-1] == frame("model", 4, 4, "finished")  # never an error
    params = await card(http, server)
    assert (params["prompt_template"], params["prompt_template_content"]) == reported
    _, props = await get_json(http, server.url + "/props", api(server))
    assert props["chat_template"] == (reported[1] or "")


# --------------------------------------------------------------------------- folder config


@pytest.mark.emulator(
    models=[
        EmulatedModel(
            "tuned",
            modules=2,
            max_seq_len=32768,
            folder_config={
                "cache_mode": "4,4",
                "max_seq_len": -1,
                "max_batch_size": 16,
                "draft_model": {"draft_model_name": "d"},
            },
        ),
        EmulatedModel("broken", folder_config={"backend": "exllamav1"}),
    ],
    drafts=[EmulatedModel("d", modules=1)],
    ping_interval=0,
)
async def test_the_folders_tabby_config_wins_over_the_request(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = server
    _, chunks = await load(
        http, s, model_name="tuned", cache_mode="Q4", max_seq_len=1024, max_batch_size=2
    )
    assert chunks == progress("draft", 1) + progress("model", 2)  # the folder adds a draft
    assert s.loaded_draft == "d"
    params = await card(http, s)
    assert params["cache_mode"] == "4,4"
    assert (params["max_seq_len"], params["cache_size"]) == (32768, 32768)
    assert params["max_batch_size"] == 16
    # The folder's values apply on real loads only, and break them like the request's.
    _, chunks = await load(http, s, model_name="broken")
    assert chunks == [
        b'data: {"error":{"message":"Invalid backend \'exllamav1\'. Available backends: '
        b"['exllamav2', 'exllamav3']\",\"trace\":null}}\r\n\r\n"
    ]
    assert s.loaded is None
    s.preload("tuned", cache_mode="Q8")
    params = await card(http, s)
    assert (params["cache_mode"], params["max_batch_size"]) == ("4,4", 16)


def test_folder_config_is_a_private_copy() -> None:
    config: dict[str, Any] = {"cache_mode": "Q6", "draft_model": {"draft_model_name": "d"}}
    model = EmulatedModel("x", folder_config=config)
    config["cache_mode"] = "Q8"
    config["draft_model"]["draft_model_name"] = "e"
    assert model.folder_config == {"cache_mode": "Q6", "draft_model": {"draft_model_name": "d"}}
    assert hash(model) == hash(EmulatedModel("x", folder_config={"cache_mode": "Q4"}))


# --------------------------------------------------------------------------- draft list


async def test_draft_list_shows_the_loaded_drafts_folder_name_to_an_api_key(
    server: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    s = server
    url = s.url + "/v1/model/draft/list"
    assert (await get_json(http, url, api(s)))[1]["data"] == []
    draft = {"draft_model_name": "org/draft/../draft/4.0bpw"}
    _, chunks = await load(http, s, model_name="m", draft_model=draft)
    assert chunks == progress("draft", 4) + progress("model", 4)
    assert s.loaded_draft == "org/draft/4.0bpw"
    _, body = await get_json(http, url, api(s))
    assert [(c["id"], c["parameters"]) for c in body["data"]] == [("4.0bpw", None)]
    # The admin key sees every folder of the draft folder (its top level).
    _, body = await get_json(http, url, {"x-api-key": s.admin_key})
    assert [c["id"] for c in body["data"]] == ["org", "other"]
    # A model without a draft: nothing.
    await load(http, s, model_name="org/model/4.0bpw")
    assert (await get_json(http, url, api(s)))[1]["data"] == []


# --------------------------------------------------------------------------- validation
# The server's load request models as it declares them, served by FastAPI: the
# emulator must accept what they accept and answer the same 422 for the rest.


class DraftModelLoadRequest(BaseModel):
    draft_model_name: str
    draft_rope_scale: Optional[float] = None  # noqa: UP045 - pydantic reads the annotation
    draft_rope_alpha: Optional[Union[float, Literal["auto"]]] = None  # noqa: UP007, UP045
    draft_gpu_split: Optional[list[float]] = Field(default_factory=list)  # noqa: UP045


class ModelLoadRequest(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    backend: Optional[str] = None  # noqa: UP045
    max_seq_len: Optional[int] = None  # noqa: UP045
    cache_size: Optional[int] = None  # noqa: UP045
    cache_mode: Optional[str] = None  # noqa: UP045
    tensor_parallel: Optional[bool] = None  # noqa: UP045
    tensor_parallel_backend: Optional[str] = "native"  # noqa: UP045
    gpu_split_auto: Optional[bool] = None  # noqa: UP045
    autosplit_reserve: Optional[list[float]] = None  # noqa: UP045
    gpu_split: Optional[list[float]] = Field(default_factory=list)  # noqa: UP045
    rope_scale: Optional[float] = None  # noqa: UP045
    rope_alpha: Optional[Union[float, Literal["auto"]]] = None  # noqa: UP007, UP045
    chunk_size: Optional[int] = None  # noqa: UP045
    output_chunking: Optional[bool] = True  # noqa: UP045
    prompt_template: Optional[str] = None  # noqa: UP045
    vision: Optional[bool] = None  # noqa: UP045
    draft_model: Optional[DraftModelLoadRequest] = None  # noqa: UP045
    skip_queue: Optional[bool] = False  # noqa: UP045


class EmbeddingModelLoadRequest(BaseModel):
    embedding_model_name: str
    embeddings_device: Optional[str] = None  # noqa: UP045


reference = FastAPI()


@reference.post("/v1/model/load")
def _load(data: ModelLoadRequest) -> None: ...


@reference.post("/v1/model/embedding/load")
def _load_embedding(data: EmbeddingModelLoadRequest) -> None: ...


@pytest.fixture(scope="module")
def fastapi_answers() -> Iterator[TestClient]:
    with TestClient(reference) as client:
        yield client


def body(**fields: Any) -> dict[str, Any]:
    return {"model_name": "m", **fields}


ACCEPTED: list[tuple[str, Any]] = [
    ("/v1/model/load", body(autosplit_reserve=[-96, 0, 1.5, "2"])),
    ("/v1/model/load", body(max_seq_len=-1)),
    ("/v1/model/load", body(max_seq_len=-7, cache_size=-3)),
    ("/v1/model/load", body(cache_size=1000, chunk_size=0)),
    ("/v1/model/load", body(max_seq_len="2048", cache_size=4096.0, vision="yes")),
    ("/v1/model/load", body(cache_mode="q4", tensor_parallel_backend="anything")),
    ("/v1/model/load", body(skip_queue=None, tensor_parallel_backend=None, output_chunking=None)),
    ("/v1/model/load", body(gpu_split=[-1, 0], rope_alpha="auto", rope_scale="1.5")),
    # Keys the server's request lacks are dropped, whatever their value.
    ("/v1/model/load", body(max_batch_size="many", tool_format=[1], draft_mode=None)),
    ("/v1/model/load", body(draft_model={"draft_model_name": "other/draft", "draft_mode": 5})),
    ("/v1/model/embedding/load", {"embedding_model_name": "a/embed", "embeddings_device": "tpu"}),
]

REFUSED: list[tuple[str, Any]] = [
    ("/v1/model/load", body(max_seq_len=1.5)),
    ("/v1/model/load", body(max_seq_len=None, cache_size="big", chunk_size=[256])),
    ("/v1/model/load", body(autosplit_reserve=96)),
    ("/v1/model/load", body(autosplit_reserve=[1, "x", None, True])),
    ("/v1/model/load", body(gpu_split="24,20")),
    ("/v1/model/load", body(cache_mode=4)),
    ("/v1/model/load", body(cache_mode="Q4", backend=3, prompt_template=False)),
    ("/v1/model/load", body(rope_alpha="AUTO", rope_scale="x")),
    ("/v1/model/load", body(vision="maybe", tensor_parallel=2, skip_queue="later")),
    ("/v1/model/load", body(draft_model={})),
    ("/v1/model/load", body(draft_model="d")),
    ("/v1/model/load", body(draft_model={"draft_model_name": "d", "draft_rope_alpha": "AUTO"})),
    ("/v1/model/load", body(draft_model={"draft_model_name": None, "draft_gpu_split": ["a"]})),
    ("/v1/model/load", {"max_seq_len": -1}),
    ("/v1/model/embedding/load", {}),
    ("/v1/model/embedding/load", {"embedding_model_name": 5, "embeddings_device": 3}),
]


@pytest.mark.parametrize(("path", "sent"), ACCEPTED)
async def test_the_emulator_accepts_what_the_servers_models_accept(
    server: TabbyEmulator,
    http: aiohttp.ClientSession,
    fastapi_answers: TestClient,
    path: str,
    sent: Any,
) -> None:
    assert fastapi_answers.post(path, json=sent).status_code == 200
    async with http.post(server.url + path, json=sent, headers=admin(server)) as r:
        await r.read()
        assert r.status == 200


@pytest.mark.parametrize(("path", "sent"), REFUSED)
async def test_the_emulator_refuses_what_the_servers_models_refuse(
    server: TabbyEmulator,
    http: aiohttp.ClientSession,
    fastapi_answers: TestClient,
    path: str,
    sent: Any,
) -> None:
    expected = fastapi_answers.post(path, json=sent)
    assert expected.status_code == 422
    assert await post(http, server, path, sent) == (422, expected.json())
