"""ensure_loaded / plan_load: compare the loaded card with the request, then act.

Against the emulator (which, like the real server, ignores new parameters for
the model already loaded and reports back only what the real server reports),
plus tables of the pure comparison.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tabby_async import (
    AsyncTabbyClient,
    DraftModelLoadRequest,
    LoadFailedError,
    ModelLoadRequest,
    PermissionDeniedError,
)
from tabby_async._model_plan import (
    NOT_COMPARED,
    FieldDiff,
    Identity,
    ModelMismatchError,
    card_id,
    compare,
    identity,
    plan_for,
    same_model,
    unchecked_note,
    unreported_fields,
)
from tabby_async.desired import FIELD_RULES
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.types import ModelCard, ModelCardParameters, ModelLoadResponse

LOAD = "/v1/model/load"
UNLOAD = "/v1/model/unload"


pytestmark = pytest.mark.emulator(
    models=[
        EmulatedModel("m", modules=3),
        EmulatedModel("other", modules=2),
        EmulatedModel("vis", modules=2, vision_modules=2),
        EmulatedModel("broken", modules=4, fail_at=2, fail_message="out of memory"),
        EmulatedModel("slow", modules=4, delay=0.25),
        "org/nested/4.0bpw",
    ],
    drafts=["d1", "d2"],
)


def _posts(server: TabbyEmulator) -> int:
    """Every POST the server received (loads, unloads, anything else)."""
    return sum(1 for r in server.requests if r.method == "POST")


# --- acting on a server ----------------------------------------------------------


async def test_nothing_loaded_loads(server: TabbyEmulator, client: AsyncTabbyClient) -> None:
    result = await client.models.ensure_loaded(model_name="m", max_seq_len=2048)
    assert result.action == "load"
    assert result.changed
    assert result.reasons == (FieldDiff("model_name", "m", None),)
    assert result.event is not None and result.event.done
    assert result.card is not None and result.card.id == "m"
    assert result.unchecked == ()
    assert result.draft_loaded is False  # a real load ran, and showed no draft
    assert server.loaded == "m"
    assert server.count("POST", UNLOAD) == 0


async def test_same_model_same_parameters_does_nothing(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m", max_seq_len=2048, cache_mode="Q4")
    server.reset_requests()
    result = await client.models.ensure_loaded(model_name="m", max_seq_len=2048, cache_mode="4,4")
    assert result.action == "none"
    assert not result.changed
    assert result.reasons == ()
    assert result.event is None
    assert result.draft_loaded is None
    assert _posts(server) == 0


async def test_changed_parameter_reloads(server: TabbyEmulator, client: AsyncTabbyClient) -> None:
    server.preload("m", max_seq_len=2048)
    # A plain load would be ignored by the server: that is the bug ensure fixes.
    await client.models.load(model_name="m", max_seq_len=8192)
    card = await client.models.get()
    assert card.parameters is not None and card.parameters.max_seq_len == 2048

    result = await client.models.ensure_loaded(model_name="m", max_seq_len=8192)
    assert result.action == "reload"
    assert result.reasons == (FieldDiff("max_seq_len", 8192, 2048),)
    assert result.card is not None and result.card.parameters is not None
    assert result.card.parameters.max_seq_len == 8192
    assert server.count("POST", UNLOAD) == 1


async def test_other_model_loads_without_unload(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("other")
    result = await client.models.ensure_loaded(ModelLoadRequest(model_name="m"))
    assert result.action == "load"
    assert result.reasons == (FieldDiff("model_name", "m", "other"),)
    assert server.count("POST", UNLOAD) == 0  # the server swaps models itself
    assert server.loaded == "m"


async def test_plan_load_is_a_dry_run(server: TabbyEmulator, client: AsyncTabbyClient) -> None:
    server.preload("m", max_seq_len=2048, chunk_size=1024)
    plan = await client.models.plan_load(model_name="m", max_seq_len=4096, chunk_size=512)
    assert plan.action == "reload"
    assert plan.changes
    assert [d.field for d in plan.reasons] == ["max_seq_len", "chunk_size"]
    assert plan.loaded is not None and plan.loaded.id == "m"
    assert "max_seq_len: wanted 4096, loaded 2048" in plan.summary()
    assert _posts(server) == 0


# The outage: each of these used to read as a difference after every load, so
# every later call unloaded the working model and loaded it again.
CONVERGING: dict[str, dict[str, Any]] = {
    "draft": {"draft_model": {"draft_model_name": "d1"}},
    "draft settings": {
        "draft_model": {
            "draft_model_name": "d1",
            "draft_rope_scale": 2.0,
            "draft_rope_alpha": 2.0,
            "draft_gpu_split": [4.0],
            "draft_cache_mode": "Q8",
        }
    },
    "rope_alpha": {"rope_alpha": 2.0},
    "rope_alpha auto": {"rope_alpha": "auto"},
    "rope_scale": {"rope_scale": 4.0},
    "template with .jinja": {"prompt_template": "chatml.jinja"},
    "template without .jinja": {"prompt_template": "chatml"},
    "split and backend": {"gpu_split": [20.0, 24.0], "backend": "exllamav3"},
    "everything": {
        "max_seq_len": 2048,
        "cache_size": 4096,
        "cache_mode": "Q4",
        "chunk_size": 512,
        "rope_alpha": 2.0,
        "prompt_template": "chatml.jinja",
        "draft_model": {"draft_model_name": "d2", "draft_rope_alpha": 2.5},
        "tensor_parallel": True,
        "skip_queue": True,
    },
}


@pytest.mark.parametrize("fields", list(CONVERGING.values()), ids=list(CONVERGING))
@pytest.mark.parametrize("name", ["m", "org/nested/4.0bpw"])
async def test_a_second_ensure_sends_nothing(
    server: TabbyEmulator, client: AsyncTabbyClient, name: str, fields: dict[str, Any]
) -> None:
    first = await client.models.ensure_loaded(model_name=name, **fields)
    assert first.action == "load"
    assert first.mismatches == ()
    assert server.loaded == name
    server.reset_requests()

    for _ in range(2):
        again = await client.models.ensure_loaded(model_name=name, **fields)
        assert again.action == "none", again.reasons
        assert again.unchecked == first.unchecked
        assert set(again.unchecked) <= {*NOT_COMPARED, DRAFT}
    nested = "/" in name
    # No unload ever; a nested name's card cannot prove the folder, so each
    # ensure lets the server decide with a load it answers as a no-op.
    assert [r.path for r in server.requests if r.method == "POST"] == (
        ["/v1/model/load"] * 2 if nested else []
    )
    plan = await client.models.plan_load(model_name=name, **fields)
    assert plan.action == ("load" if nested else "none")
    assert plan.met is (None if nested else True)
    assert plan.unchecked == first.unchecked


#: The placement and queueing fields of a load, which the card never shows (table order).
PLACEMENT = (
    "backend",
    "tensor_parallel",
    "tensor_parallel_backend",
    "gpu_split_auto",
    "autosplit_reserve",
    "gpu_split",
    "output_chunking",
    "skip_queue",
)


async def test_fields_not_reported_are_listed_as_unchecked(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m")
    server.reset_requests()
    result = await client.models.ensure_loaded(
        model_name="m",
        backend="exllamav3",
        gpu_split_auto=False,
        gpu_split=[20.0, 24.0],
        autosplit_reserve=[96.0],
        tensor_parallel=True,
        tensor_parallel_backend="nccl",
        output_chunking=False,
        skip_queue=True,
    )
    assert result.action == "none"
    assert result.unchecked == PLACEMENT  # every one, in the table's order
    only_split = await client.models.plan_load(model_name="m", gpu_split=[10.0])
    assert (only_split.action, only_split.unchecked) == ("none", ("gpu_split",))
    assert _posts(server) == 0


async def test_a_draft_is_not_a_difference_and_the_stream_is_evidence(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    seen: list[ModelLoadResponse] = []
    loaded = await client.models.ensure_loaded(
        model_name="m",
        draft_model=DraftModelLoadRequest(draft_model_name="d1", draft_rope_alpha=2.0),
        on_progress=seen.append,
    )
    assert loaded.action == "load"
    assert loaded.draft_loaded is True
    assert "draft" in {e.model_type for e in seen}
    assert loaded.unchecked == ("draft_model.draft_model_name", "draft_model.draft_rope_alpha")
    assert server.loaded_draft == "d1"

    # Another draft cannot be seen on the card: not a difference (unload and
    # load to change it), and named as unchecked.
    other = await client.models.plan_load(model_name="m", draft_model={"draft_model_name": "d2"})
    assert other.action == "none"
    assert other.unchecked == ("draft_model.draft_model_name",)


async def test_vision_is_compared_and_loads_the_component(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("vis")
    seen: list[ModelLoadResponse] = []
    result = await client.models.ensure_loaded(
        model_name="vis", vision=True, on_progress=seen.append
    )
    assert result.action == "reload"
    assert result.reasons == (FieldDiff("vision", True, False),)
    assert {e.model_type for e in seen} == {"vision", "model"}
    assert result.draft_loaded is False


async def test_a_value_the_server_changes_raises_mismatch(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # "m" has no vision component: the server loads it with use_vision false.
    with pytest.raises(ModelMismatchError) as caught:
        await client.models.ensure_loaded(model_name="m", vision=True, rope_alpha=2.0)
    err = caught.value
    assert err.code == "ensure_mismatch"
    assert err.result.action == "load"
    # Only the reported field is a mismatch; rope_alpha (reported as 1.0) is not.
    assert err.result.mismatches == (FieldDiff("vision", True, False),)
    assert err.result.unchecked == ("rope_alpha",)
    assert "rope_alpha" not in str(err)
    assert server.count("POST", LOAD) == 1  # a real load was not redone


async def test_verify_false_skips_the_check(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    result = await client.models.ensure_loaded(model_name="m", vision=True, verify=False)
    assert result.action == "load"
    assert result.card is None
    assert server.count("GET", "/v1/model") == 1  # the plan's read only


async def _slow_load_running(client: AsyncTabbyClient) -> asyncio.Task[ModelLoadResponse]:
    """Another client's load of "slow" at 2048, once its first module is done."""
    started = asyncio.Event()
    other = asyncio.create_task(
        client.models.load(
            model_name="slow", max_seq_len=2048, on_progress=lambda _event: started.set()
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    return other


async def test_ignored_load_behind_a_concurrent_load_is_redone(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # While the other load runs GET /v1/model says "not loaded", so ensure
    # plans a plain load, which queues behind the other one and is then the
    # server's "already loaded" no-op.
    other = await _slow_load_running(client)
    result = await client.models.ensure_loaded(model_name="slow", max_seq_len=4096)
    await other
    assert result.plan.action == "load"
    assert result.action == "reload"
    assert result.card is not None and result.card.parameters is not None
    assert result.card.parameters.max_seq_len == 4096
    assert server.count("POST", UNLOAD) == 1


async def test_ignored_load_with_an_unreported_field_is_redone(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # The card cannot show our draft, so an ignored load must not pass as done.
    other = await _slow_load_running(client)
    result = await client.models.ensure_loaded(
        model_name="slow", max_seq_len=2048, draft_model={"draft_model_name": "d1"}
    )
    await other
    assert result.plan.action == "load"
    assert result.action == "reload"
    assert result.draft_loaded is True
    assert server.loaded_draft == "d1"
    assert server.count("POST", UNLOAD) == 1
    server.reset_requests()
    again = await client.models.ensure_loaded(
        model_name="slow", max_seq_len=2048, draft_model={"draft_model_name": "d1"}
    )
    assert again.action == "none"
    assert _posts(server) == 0


async def test_unload_answering_not_loaded_is_fine(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m", max_seq_len=2048)
    server.faults.fail_next(status=503, detail="No models are currently loaded.", path=UNLOAD)
    result = await client.models.ensure_loaded(model_name="m", max_seq_len=1024)
    assert result.action == "reload"
    assert server.loaded == "m"


async def test_load_failure_and_missing_key_raise(
    client: AsyncTabbyClient, reader: AsyncTabbyClient
) -> None:
    with pytest.raises(LoadFailedError, match="out of memory"):
        await client.models.ensure_loaded(model_name="broken")
    with pytest.raises(PermissionDeniedError):
        await reader.models.ensure_loaded(model_name="m")
    plan = await reader.models.plan_load(model_name="m")  # reading needs the api key only
    assert plan.action == "load"


async def test_nested_names_compare_by_card_id(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    await client.models.load(model_name="org/nested/4.0bpw")
    assert (await client.models.get()).id == "4.0bpw"
    plan = await client.models.plan_load(model_name="org/nested/4.0bpw")
    # The card's id is the folder's last segment: it cannot prove the folder.
    assert (plan.action, plan.verified, plan.met) == ("load", False, None)
    assert "the server decides" in plan.summary()


# --- the table ----------------------------------------------------------------------


def test_the_table_covers_every_request_field_once() -> None:
    fields = [rule.field for rule in FIELD_RULES]
    expected = list(ModelLoadRequest.__struct_fields__)
    expected.remove("draft_model")
    expected += [f"draft_model.{f}" for f in DraftModelLoadRequest.__struct_fields__]
    assert sorted(fields) == sorted(expected)
    assert len(fields) == len(set(fields))


def test_not_compared_is_the_unreported_rows() -> None:
    assert tuple(r.field for r in FIELD_RULES if not r.compared) == NOT_COMPARED
    assert set(NOT_COMPARED) == {
        *PLACEMENT,
        "rope_scale",
        "rope_alpha",
        "draft_model.draft_rope_scale",
        "draft_model.draft_rope_alpha",
        "draft_model.draft_gpu_split",
        "draft_model.draft_cache_mode",
    }
    compared = {r.field for r in FIELD_RULES if r.compared}
    assert compared == {
        "model_name",
        "draft_model.draft_model_name",  # through the draft listing, where it can be read
        "max_seq_len",
        "cache_size",
        "cache_mode",
        "chunk_size",
        "prompt_template",
        "vision",
    }


def test_the_note_names_each_field_once_in_table_order() -> None:
    assert unchecked_note(()) == ""
    assert unchecked_note(["gpu_split", "backend", "gpu_split"]) == (
        "note: not reported by the server, not compared: backend, gpu_split"
    )
    assert "\n" not in unchecked_note(NOT_COMPARED)


def test_unreported_fields_of_a_request() -> None:
    request = ModelLoadRequest(
        model_name="m",
        max_seq_len=4096,
        rope_alpha="auto",
        draft_model=DraftModelLoadRequest(draft_model_name="d", draft_cache_mode="Q4"),
    )
    assert unreported_fields(request) == (
        "rope_alpha",
        "draft_model.draft_model_name",
        "draft_model.draft_cache_mode",
    )
    assert unreported_fields(ModelLoadRequest(model_name="m", max_seq_len=1)) == ()


# --- the comparison itself ------------------------------------------------------------


def _card(name: str = "m", **params: object) -> ModelCard:
    return ModelCard(id=name, parameters=ModelCardParameters(**params))  # type: ignore[arg-type]


def test_plan_for_nothing_loaded() -> None:
    plan = plan_for(ModelLoadRequest(model_name="m", gpu_split=[1.0]), None)
    assert plan.action == "load"
    assert plan.loaded is None
    assert str(plan.reasons[0]) == "model_name: wanted 'm', loaded None"
    assert plan.unchecked == ("gpu_split",)  # a load cannot confirm it either


def test_unset_fields_accept_the_loaded_value() -> None:
    card = _card(max_seq_len=32768, cache_mode="Q4", prompt_template="llama3", chunk_size=256)
    assert plan_for(ModelLoadRequest(model_name="m"), card).action == "none"


DRAFT = "draft_model.draft_model_name"

# (request fields, card parameters) -> (diff fields, unchecked)
COMPARE_TABLE: list[
    tuple[dict[str, Any], dict[str, Any] | None, tuple[str, ...], tuple[str, ...]]
] = [
    ({"max_seq_len": 4096}, {"max_seq_len": 4096}, (), ()),
    ({"max_seq_len": 4096}, {"max_seq_len": 2048}, ("max_seq_len",), ()),
    ({"max_seq_len": 4096}, {}, (), ("max_seq_len",)),  # a card without the field
    ({"cache_size": 1024}, {"cache_size": 1024}, (), ()),
    ({"cache_size": 1024}, {"cache_size": 1280}, ("cache_size",), ()),  # not rounded
    ({"cache_mode": "Q8"}, {"cache_mode": "Q8"}, (), ()),
    ({"cache_mode": "Q8"}, {"cache_mode": "8,8"}, (), ()),  # the server's own spelling
    ({"cache_mode": "4, 6"}, {"cache_mode": "4,6"}, (), ()),
    ({"cache_mode": "q8"}, {"cache_mode": "Q8"}, ("cache_mode",), ()),  # q8 is FP16
    ({"cache_mode": "q4"}, {"cache_mode": "FP16"}, (), ()),  # ... as the server reads it
    ({"cache_mode": "FP16"}, {"cache_mode": "fp16"}, (), ()),
    ({"cache_mode": "9,9"}, {"cache_mode": "FP16"}, (), ()),  # out of range: FP16
    ({"cache_mode": "Q8"}, {"cache_mode": "Q4"}, ("cache_mode",), ()),
    ({"max_seq_len": -1}, {"max_seq_len": 131072}, (), ("max_seq_len",)),  # the model's own
    ({"chunk_size": 512}, {"chunk_size": 512}, (), ()),
    ({"chunk_size": 1000}, {"chunk_size": 1024}, (), ()),  # rounded up by the server
    ({"chunk_size": 1000}, {"chunk_size": 1000}, (), ()),
    ({"chunk_size": 100}, {"chunk_size": 256}, (), ()),  # at least 256
    ({"chunk_size": 512}, {"chunk_size": 1024}, ("chunk_size",), ()),
    ({"prompt_template": "chatml.jinja"}, {"prompt_template": "chatml"}, (), ()),
    ({"prompt_template": "chatml"}, {"prompt_template": "chatml"}, (), ()),
    ({"prompt_template": "chatml"}, {"prompt_template": "chatml.jinja"}, (), ()),
    ({"prompt_template": "chatml.jinja"}, {"prompt_template": "llama3"}, ("prompt_template",), ()),
    ({"prompt_template": "chatml"}, {}, ("prompt_template",), ()),  # null: no template
    ({"prompt_template": "chatml"}, None, (), ("prompt_template",)),  # no parameters
    ({"vision": True}, {"use_vision": True}, (), ()),
    ({"vision": True}, {"use_vision": False}, ("vision",), ()),
    ({"rope_alpha": 2.0}, {"rope_alpha": 1.0}, (), ("rope_alpha",)),
    ({"rope_alpha": "auto"}, {"rope_alpha": 1.0}, (), ("rope_alpha",)),
    ({"rope_scale": 4.0}, {"rope_scale": 1.0}, (), ("rope_scale",)),
    ({"draft_model": {"draft_model_name": "d"}}, {"draft": None}, (), (DRAFT,)),
    (
        {"draft_model": {"draft_model_name": "d", "draft_rope_scale": 2.0, "draft_gpu_split": [1]}},
        {"draft": {"id": "other"}},  # even a card that showed a draft is not read
        (),
        (DRAFT, "draft_model.draft_rope_scale", "draft_model.draft_gpu_split"),
    ),
    ({"backend": "exllamav2"}, {}, (), ("backend",)),
    (
        {"max_seq_len": 8192, "gpu_split": [1.0], "prompt_template": "x.jinja"},
        {"max_seq_len": 4096, "prompt_template": "x"},
        ("max_seq_len",),
        ("gpu_split",),
    ),
]


@pytest.mark.parametrize(("wanted", "params", "diffs", "unchecked"), COMPARE_TABLE)
def test_compare_table(
    wanted: dict[str, Any],
    params: dict[str, Any] | None,
    diffs: tuple[str, ...],
    unchecked: tuple[str, ...],
) -> None:
    request = msgspec.convert({"model_name": "m", **wanted}, ModelLoadRequest)
    card = msgspec.convert({"id": "m", "parameters": params}, ModelCard)
    assert (card.parameters is None) is (params is None)
    found, not_compared = compare(request, card)
    assert tuple(d.field for d in found) == diffs
    assert not_compared == unchecked
    plan = plan_for(request, card)
    assert plan.action == ("reload" if diffs else "none")
    assert plan.unchecked == unchecked


# (wanted, card id) -> what the card proves, the plan's action, verified, met
NAME_TABLE: list[tuple[str, str, Identity, str, bool, bool | None]] = [
    ("m", "m", "same", "none", True, True),
    ("m/", "m", "same", "none", True, True),
    ("org/exl3/4.0bpw", "4.0bpw", "unproven", "load", False, None),
    ("org/exl3/4.0bpw/", "4.0bpw", "unproven", "load", False, None),
    ("org\\exl3\\4.0bpw", "4.0bpw", "unproven", "load", False, None),
    ("org/exl3/4.0bpw", "5.0bpw", "other", "load", True, False),
    ("org/exl3/4.0bpw", "exl3", "other", "load", True, False),
    ("m", "m2", "other", "load", True, False),
]


@pytest.mark.parametrize(("wanted", "loaded", "who", "action", "verified", "met"), NAME_TABLE)
def test_names_match_by_last_path_segment(
    wanted: str, loaded: str, who: Identity, action: str, verified: bool, met: bool | None
) -> None:
    assert identity(wanted, loaded) == who
    assert same_model(wanted, loaded) is (who != "other")
    plan = plan_for(ModelLoadRequest(model_name=wanted), _card(loaded))
    assert (plan.action, plan.verified, plan.met) == (action, verified, met)
    # Once the server has said the folder is ours, the card counts.
    proven = plan_for(ModelLoadRequest(model_name=wanted), _card(loaded), proven=True)
    assert proven.action == ("load" if who == "other" else "none")


def test_an_unproven_name_with_other_parameters_is_unmet_whatever_the_folder() -> None:
    plan = plan_for(
        ModelLoadRequest(model_name="org/m/4.0bpw", max_seq_len=8192),
        _card("4.0bpw", max_seq_len=4096),
    )
    assert (plan.action, plan.verified, plan.met) == ("load", False, False)
    assert plan.reasons == (FieldDiff("max_seq_len", 8192, 4096),)


def test_card_id_is_the_last_segment() -> None:
    assert card_id("org/m/4.0bpw") == "4.0bpw"
    assert card_id("m") == "m"


_requests = st.builds(
    ModelLoadRequest,
    model_name=st.sampled_from(["m", "org/m", "org/m/4.0bpw"]),
    max_seq_len=st.none() | st.integers(1, 1 << 20),
    cache_size=st.none() | st.integers(1, 4096).map(lambda n: n * 256),
    cache_mode=st.none() | st.sampled_from(["FP16", "Q8", "q4", "8,8"]),
    rope_scale=st.none() | st.floats(0.1, 64.0),
    rope_alpha=st.none() | st.floats(0.1, 64.0) | st.just("auto"),
    chunk_size=st.none() | st.integers(1, 1 << 16),
    prompt_template=st.none() | st.sampled_from(["chatml", "llama3.jinja"]),
    vision=st.none() | st.booleans(),
    gpu_split=st.none() | st.just([20.0, 24.0]),
    backend=st.none() | st.just("exllamav3"),
    draft_model=st.none()
    | st.builds(
        DraftModelLoadRequest,
        draft_model_name=st.sampled_from(["d", "org/d"]),
        draft_rope_alpha=st.none() | st.floats(0.1, 8.0),
        draft_cache_mode=st.none() | st.just("Q4"),
    ),
)


def _reported_card(request: ModelLoadRequest) -> ModelCard:
    """The card the real server reports after loading ``request`` (vision model, defaults)."""
    template = request.prompt_template
    chunk = request.chunk_size or 2048
    return _card(
        card_id(request.model_name),
        max_seq_len=request.max_seq_len or 4096,
        cache_size=request.cache_size or 4096,
        cache_mode=request.cache_mode or "FP16",  # echoed as sent
        rope_scale=1.0,
        rope_alpha=1.0,
        chunk_size=max(256, -(-chunk // 256) * 256),
        prompt_template=template.removesuffix(".jinja") if template else None,
        use_vision=bool(request.vision),
        draft=None,
    )


def _reachable(request: ModelLoadRequest) -> bool:
    return not (
        request.max_seq_len and request.cache_size and request.max_seq_len > request.cache_size
    )


@given(_requests.filter(_reachable))
def test_the_reported_card_of_a_request_needs_no_action(request: ModelLoadRequest) -> None:
    plan = plan_for(request, _reported_card(request), proven=True)
    assert plan.action == "none", plan.reasons
    assert plan.unchecked == unreported_fields(request)
    unproven = plan_for(request, _reported_card(request))
    nested = "/" in request.model_name
    assert (unproven.action, unproven.met) == (("load", None) if nested else ("none", True))


@given(_requests.filter(_reachable), st.integers(1, 1 << 20))
def test_a_different_context_always_reloads(request: ModelLoadRequest, other: int) -> None:
    card = _reported_card(request)
    assert card.parameters is not None
    changed = msgspec.structs.replace(
        card, parameters=msgspec.structs.replace(card.parameters, max_seq_len=other)
    )
    plan = plan_for(request, changed, proven=True)
    if request.max_seq_len is None or request.max_seq_len == other:
        assert plan.action == "none"
    else:
        assert plan.action == "reload"
        assert plan.reasons == (FieldDiff("max_seq_len", request.max_seq_len, other),)


# (wanted, reported by the card) -> same template file?
TEMPLATE_NAMES = [
    ("chatml", "chatml", True),
    ("chatml.jinja", "chatml", True),
    ("alpaca.txt", "alpaca.txt", True),
    ("alpaca", "alpaca.txt", True),  # both open alpaca.jinja
    ("chatml", "llama3", False),
    ("a/b.jinja", "a/b", True),
]


@pytest.mark.parametrize(("wanted", "reported", "same"), TEMPLATE_NAMES)
def test_template_names_follow_the_servers_one_rule(
    wanted: str, reported: str, same: bool
) -> None:
    from tabby_async._compare import reported_template, same_template, template_stem

    assert same_template(wanted, reported) is same
    assert same_template(wanted, reported_template(wanted))  # what the card shows is the same
    assert template_stem(reported_template(wanted)) == template_stem(wanted)
