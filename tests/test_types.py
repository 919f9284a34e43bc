"""Request checks, wire encoding and tolerant decoding of the msgspec types."""

from __future__ import annotations

import msgspec
import pytest
from aiohttp import web

from tabby_async import (
    AsyncTabbyClient,
    DownloadRequest,
    DraftModelLoadRequest,
    EmbeddingModelLoadRequest,
    InvalidInputError,
    ModelLoadRequest,
)
from tabby_async.types import ModelCard, ModelList, ModelLoadResponse, ModelPropsResponse
from tests.helpers import serve_app


def test_unset_fields_are_not_sent() -> None:
    req = ModelLoadRequest(model_name="m", max_seq_len=4096, rope_alpha="auto")
    assert msgspec.json.decode(msgspec.json.encode(req)) == {
        "model_name": "m",
        "max_seq_len": 4096,
        "rope_alpha": "auto",
    }


def test_every_protocol_field_is_encoded() -> None:
    req = ModelLoadRequest(
        model_name="org/exl3/4.0bpw",
        backend="exllamav3",
        max_seq_len=8192,
        cache_size=8192,
        cache_mode="Q8",
        tensor_parallel=True,
        tensor_parallel_backend="native",
        gpu_split_auto=False,
        autosplit_reserve=[96.0],
        gpu_split=[20.0, 24.0],
        rope_scale=1.0,
        rope_alpha=2.5,
        chunk_size=2048,
        output_chunking=True,
        prompt_template="chatml",
        vision=True,
        draft_model=DraftModelLoadRequest(
            draft_model_name="d",
            draft_rope_scale=1.0,
            draft_rope_alpha="auto",
            draft_gpu_split=[4.0],
        ),
        skip_queue=True,
    )
    wire = msgspec.json.decode(msgspec.json.encode(req))
    assert set(wire) == set(ModelLoadRequest.__struct_fields__)
    assert wire["draft_model"] == {
        "draft_model_name": "d",
        "draft_rope_scale": 1.0,
        "draft_rope_alpha": "auto",
        "draft_gpu_split": [4.0],
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model_name": ""}, "model_name"),
        ({"model_name": "   "}, "model_name"),
        ({"model_name": "/etc/models/m"}, "model_name"),
        ({"model_name": "../secrets"}, "model_name"),
        ({"model_name": "org/../../x"}, "model_name"),
        ({"model_name": "C:\\models"}, "model_name"),
        ({"model_name": "m", "max_seq_len": 0}, "max_seq_len"),
        ({"model_name": "m", "max_seq_len": -5}, "max_seq_len"),
        ({"model_name": "m", "max_seq_len": True}, "max_seq_len"),
        ({"model_name": "m", "cache_size": 1000}, "cache_size"),
        ({"model_name": "m", "cache_size": -256}, "cache_size"),
        ({"model_name": "m", "chunk_size": 0}, "chunk_size"),
        ({"model_name": "m", "rope_alpha": "fast"}, "rope_alpha"),
        ({"model_name": "m", "rope_scale": float("nan")}, "rope_scale"),
        ({"model_name": "m", "gpu_split": [20, -1]}, "gpu_split[1]"),
        ({"model_name": "m", "gpu_split": "20,24"}, "gpu_split"),
        ({"model_name": "m", "vision": "yes"}, "vision"),
    ],
)
def test_bad_load_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        ModelLoadRequest(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert info.value.code == "invalid_input"
    assert isinstance(info.value, ValueError)


def test_nested_names_and_unknown_cache_modes_are_allowed() -> None:
    req = ModelLoadRequest(model_name="org/exl3/4.0bpw", cache_mode="Q6-something-new")
    assert req.cache_mode == "Q6-something-new"
    assert ModelLoadRequest(model_name="m", cache_size=512).cache_size == 512


def test_draft_and_embedding_and_download_checks() -> None:
    with pytest.raises(InvalidInputError, match=r"draft_model\.draft_model_name"):
        DraftModelLoadRequest(draft_model_name="../d")
    with pytest.raises(InvalidInputError, match="embedding_model_name"):
        EmbeddingModelLoadRequest(embedding_model_name="")
    with pytest.raises(InvalidInputError, match="repo_id"):
        DownloadRequest(repo_id=" ")
    with pytest.raises(InvalidInputError, match="include"):
        DownloadRequest(repo_id="a/b", include="*.json")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="folder_name"):
        DownloadRequest(repo_id="a/b", folder_name="/abs")


def test_download_token_is_sent_but_never_shown() -> None:
    req = DownloadRequest(repo_id="org/repo", token="hf_SECRET123")
    assert b"hf_SECRET123" in msgspec.json.encode(req)
    assert "hf_SECRET123" not in repr(req)
    assert "hf_SECRET123" not in str(req)
    assert "hf_SECRET123" not in repr(req.__rich_repr__())
    # repo_type keeps its default off the wire; the server applies "model".
    assert msgspec.json.decode(msgspec.json.encode(DownloadRequest(repo_id="a/b"))) == {
        "repo_id": "a/b"
    }


def test_responses_ignore_unknown_fields_and_keep_known_ones() -> None:
    body = (
        b'{"id":"m","object":"model","created":1700000000,"owned_by":"tabbyAPI",'
        b'"logging":{"log_prompt":true,"log_generation_params":false,"log_requests":false,'
        b'"log_future":1},"new_top_level":{"x":1},'
        b'"parameters":{"max_seq_len":4096,"cache_size":4096,"cache_mode":"FP16",'
        b'"rope_scale":1.0,"rope_alpha":1.0,"max_batch_size":256,"chunk_size":2048,'
        b'"prompt_template":"chatml","prompt_template_content":"{{ x }}","use_vision":false,'
        b'"num_experts_per_token":null,'
        b'"draft":{"id":"d","object":"model","created":1,"owned_by":"tabbyAPI",'
        b'"logging":null,"parameters":{"max_seq_len":4096,"rope_alpha":"1.0"}}}}'
    )
    # rope_alpha as a string would be a server bug: it must fail loudly, not silently.
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(body, type=ModelCard)
    card = msgspec.json.decode(body.replace(b'"1.0"}', b"1.0}"), type=ModelCard)
    assert card.logging is not None and card.logging.log_prompt is True
    assert card.parameters is not None
    assert card.parameters.prompt_template_content == "{{ x }}"
    assert card.parameters.draft is not None and card.parameters.draft.id == "d"
    assert card.parameters.draft.parameters is not None
    assert card.parameters.draft.parameters.max_seq_len == 4096


def test_list_props_and_event_shapes() -> None:
    listing = msgspec.json.decode(
        b'{"object":"list","data":[{"id":"b","object":"model","created":2,'
        b'"owned_by":"tabbyAPI","logging":null,"parameters":null},{"id":"a"}]}',
        type=ModelList,
    )
    assert listing.ids == ["b", "a"]
    props = msgspec.json.decode(
        b'{"total_slots":1,"chat_template":"","default_generation_settings":{"n_ctx":4096}}',
        type=ModelPropsResponse,
    )
    assert props.default_generation_settings.n_ctx == 4096
    event = msgspec.json.decode(
        b'{"model_type":"draft","module":2,"modules":2,"status":"finished"}',
        type=ModelLoadResponse,
    )
    assert not event.done
    assert ModelLoadResponse(module=2, modules=2, status="finished").done


# Cosmetic fields that some servers (or proxies) send differently: (type, body).
COSMETIC = [
    (ModelCard, b'{"id":"m","created":1732900000.25}'),
    (ModelCard, b'{"id":"m","created":null}'),
    (ModelCard, b'{"id":"m","owned_by":null}'),
    (ModelCard, b'{"id":"m","object":null}'),
    (ModelCard, b'{"id":"m","created":null,"owned_by":null,"object":null,"logging":null}'),
    (ModelList, b'{"object":null,"data":[{"id":"m","created":1.5,"owned_by":null}]}'),
    (
        ModelPropsResponse,
        b'{"total_slots":1,"chat_template":null,"default_generation_settings":{"n_ctx":4096}}',
    ),
]


@pytest.mark.parametrize(("cls", "body"), COSMETIC)
def test_cosmetic_fields_tolerate_null_and_float(cls: type[msgspec.Struct], body: bytes) -> None:
    decoded = msgspec.json.decode(body, type=cls)
    assert isinstance(decoded, cls)
    card = decoded.data[0] if isinstance(decoded, ModelList) else decoded
    if isinstance(card, ModelCard):
        assert card.id == "m"
    if isinstance(decoded, ModelPropsResponse):
        assert decoded.default_generation_settings.n_ctx == 4096
        assert not decoded.chat_template


# What the SDK acts on stays strict: a wrong value there fails loudly.
STRICT = [
    (ModelCard, b'{"id":null}'),
    (ModelCard, b'{"id":"m","parameters":{"max_seq_len":"long"}}'),
    (ModelPropsResponse, b'{"default_generation_settings":{"n_ctx":null}}'),
    (ModelLoadResponse, b'{"module":null,"modules":1,"status":"finished"}'),
]


@pytest.mark.parametrize(("cls", "body"), STRICT)
def test_fields_that_matter_stay_strict(cls: type[msgspec.Struct], body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(body, type=cls)


async def test_cosmetic_fields_do_not_fail_a_call() -> None:
    async def card(request: web.Request) -> web.Response:
        return web.json_response({"id": "m", "created": 1.5, "owned_by": None, "object": None})

    async def props(request: web.Request) -> web.Response:
        settings = {"n_ctx": 8}
        body = {"total_slots": 1, "chat_template": None, "default_generation_settings": settings}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/v1/model", card)
    app.router.add_get("/props", props)
    async with serve_app(app) as url, AsyncTabbyClient(url) as client:
        got = await client.models.get()
        assert (got.id, got.created, got.owned_by) == ("m", 1.5, None)
        assert (await client.models.get_props()).chat_template is None
