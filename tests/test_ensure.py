"""ensure_loaded / plan_load: compare the loaded card with the request, then act.

Against the emulator (which, like the real server, ignores new parameters
for the model already loaded), plus pure tests of the comparison.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tabby_async import (
    AsyncTabbyClient,
    DraftModelLoadRequest,
    LoadFailedError,
    ModelCard,
    ModelCardParameters,
    ModelLoadRequest,
    ModelLoadResponse,
    PermissionDeniedError,
)
from tabby_async._ensure import (
    NOT_COMPARED,
    EnsureMismatchError,
    FieldDiff,
    compare,
    plan_for,
)
from tabby_async.testing import EmulatedModel, TabbyEmulator

LOAD = "/v1/model/load"
UNLOAD = "/v1/model/unload"


@pytest.fixture
async def server() -> AsyncIterator[TabbyEmulator]:
    async with TabbyEmulator(
        models=[
            EmulatedModel("m", modules=3),
            EmulatedModel("other", modules=2),
            EmulatedModel("vis", modules=2, vision_modules=2),
            EmulatedModel("broken", modules=4, fail_at=2, fail_message="out of memory"),
            EmulatedModel("slow", modules=4, delay=0.25),
            "org/nested",
        ],
        drafts=["d1", "d2"],
    ) as emulator:
        yield emulator


@pytest.fixture
async def client(server: TabbyEmulator) -> AsyncIterator[AsyncTabbyClient]:
    async with AsyncTabbyClient(server.url, admin_key=server.admin_key) as c:
        yield c


# --- acting on a server ----------------------------------------------------------


async def test_nothing_loaded_loads(server: TabbyEmulator, client: AsyncTabbyClient) -> None:
    result = await client.models.ensure_loaded(model_name="m", max_seq_len=2048)
    assert result.action == "load"
    assert result.changed
    assert result.reasons == (FieldDiff("model_name", "m", None),)
    assert result.event is not None and result.event.done
    assert result.card is not None and result.card.id == "m"
    assert server.loaded == "m"
    assert server.count("POST", UNLOAD) == 0


async def test_same_model_same_parameters_does_nothing(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m", max_seq_len=2048, cache_mode="Q4")
    server.reset_requests()
    result = await client.models.ensure_loaded(model_name="m", max_seq_len=2048, cache_mode="q4")
    assert result.action == "none"
    assert not result.changed
    assert result.reasons == ()
    assert result.event is None
    assert server.count("POST", LOAD) == 0
    assert server.count("POST", UNLOAD) == 0


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
    assert server.count("POST", LOAD) == 0
    assert server.count("POST", UNLOAD) == 0


async def test_fields_not_reported_are_not_compared(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m")
    result = await client.models.ensure_loaded(
        model_name="m",
        gpu_split_auto=False,
        gpu_split=[20.0, 24.0],
        autosplit_reserve=[96.0],
        tensor_parallel=True,
        output_chunking=False,
        skip_queue=True,
    )
    assert result.action == "none"
    assert "gpu_split" in NOT_COMPARED and "backend" in NOT_COMPARED


async def test_draft_model_is_compared(server: TabbyEmulator, client: AsyncTabbyClient) -> None:
    server.preload("m", draft_model={"draft_model_name": "d1", "draft_rope_alpha": 2.0})
    same = await client.models.plan_load(
        model_name="m",
        draft_model=DraftModelLoadRequest(draft_model_name="d1", draft_rope_alpha=2.0),
    )
    assert same.action == "none"
    other = await client.models.plan_load(
        model_name="m", draft_model={"draft_model_name": "d2", "draft_rope_alpha": 2.0}
    )
    assert other.reasons == (FieldDiff("draft_model.draft_model_name", "d2", "d1"),)
    rope = await client.models.plan_load(
        model_name="m", draft_model={"draft_model_name": "d1", "draft_rope_scale": 2.0}
    )
    assert rope.reasons == (FieldDiff("draft_model.draft_rope_scale", 2.0, 1.0),)

    result = await client.models.ensure_loaded(
        model_name="m", draft_model={"draft_model_name": "d2", "draft_cache_mode": "Q8"}
    )
    assert result.action == "reload"
    assert server.loaded_draft == "d2"


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


async def test_a_value_the_server_changes_raises_mismatch(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # "m" has no vision component: the server loads it with use_vision false.
    with pytest.raises(EnsureMismatchError) as caught:
        await client.models.ensure_loaded(model_name="m", vision=True)
    err = caught.value
    assert err.code == "ensure_mismatch"
    assert err.result.action == "load"
    assert err.result.mismatches == (FieldDiff("vision", True, False),)
    assert server.count("POST", LOAD) == 1  # a real load was not redone


async def test_verify_false_skips_the_check(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    result = await client.models.ensure_loaded(model_name="m", vision=True, verify=False)
    assert result.action == "load"
    assert result.card is None
    assert server.count("GET", "/v1/model") == 1  # the plan's read only


async def test_ignored_load_behind_a_concurrent_load_is_redone(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # Another client loads "slow" at 2048; while it runs GET /v1/model says
    # "not loaded", so ensure plans a plain load, which queues behind the
    # other one and is then the server's "already loaded" no-op.
    started = asyncio.Event()
    other = asyncio.create_task(
        client.models.load(
            model_name="slow", max_seq_len=2048, on_progress=lambda _event: started.set()
        )
    )
    await started.wait()  # the first of its four modules is done
    result = await client.models.ensure_loaded(model_name="slow", max_seq_len=4096)
    await other
    assert result.plan.action == "load"
    assert result.action == "reload"
    assert result.card is not None and result.card.parameters is not None
    assert result.card.parameters.max_seq_len == 4096
    assert server.count("POST", UNLOAD) == 1


async def test_unload_answering_not_loaded_is_fine(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m", max_seq_len=2048)
    server.faults.fail_next(status=503, detail="No models are currently loaded.", path=UNLOAD)
    result = await client.models.ensure_loaded(model_name="m", max_seq_len=1024)
    assert result.action == "reload"
    assert server.loaded == "m"


async def test_load_failure_and_missing_key_raise(server: TabbyEmulator) -> None:
    async with AsyncTabbyClient(server.url, admin_key=server.admin_key) as admin:
        with pytest.raises(LoadFailedError, match="out of memory"):
            await admin.models.ensure_loaded(model_name="broken")
    async with AsyncTabbyClient(server.url, api_key=server.api_key) as reader:
        with pytest.raises(PermissionDeniedError):
            await reader.models.ensure_loaded(model_name="m")
        plan = await reader.models.plan_load(model_name="m")  # reading needs the api key only
        assert plan.action == "load"


async def test_nested_names_compare_by_card_id(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    await client.models.load(model_name="org/nested")
    assert (await client.models.plan_load(model_name="org/nested")).action == "none"


# --- the comparison itself ------------------------------------------------------------


def _card(name: str = "m", **params: object) -> ModelCard:
    return ModelCard(id=name, parameters=ModelCardParameters(**params))  # type: ignore[arg-type]


def test_plan_for_nothing_loaded() -> None:
    plan = plan_for(ModelLoadRequest(model_name="m"), None)
    assert plan.action == "load"
    assert plan.loaded is None
    assert str(plan.reasons[0]) == "model_name: wanted 'm', loaded None"


def test_unset_fields_accept_the_loaded_value() -> None:
    card = _card(max_seq_len=32768, cache_mode="Q4", rope_scale=4.0)
    assert plan_for(ModelLoadRequest(model_name="m"), card).action == "none"


def test_rope_alpha_auto_and_unreported_fields_are_unchecked() -> None:
    card = _card(rope_alpha=2.63)
    plan = plan_for(ModelLoadRequest(model_name="m", rope_alpha="auto", cache_size=4096), card)
    assert plan.action == "none"
    assert plan.unchecked == ("cache_size", "rope_alpha")


def test_last_path_segment_matches_the_card_id() -> None:
    assert plan_for(ModelLoadRequest(model_name="org/exl3/4.0bpw"), _card("4.0bpw")).action == (
        "none"
    )
    assert plan_for(ModelLoadRequest(model_name="org/exl3/4.0bpw"), _card("5.0bpw")).action == (
        "load"
    )


def test_floats_compare_with_tolerance() -> None:
    card = _card(rope_scale=2.0000000001, rope_alpha=1.5)
    diffs, _ = compare(ModelLoadRequest(model_name="m", rope_scale=2.0, rope_alpha=1.75), card)
    assert diffs == (FieldDiff("rope_alpha", 1.75, 1.5),)


_requests = st.builds(
    ModelLoadRequest,
    model_name=st.sampled_from(["m", "org/m"]),
    max_seq_len=st.none() | st.integers(1, 1 << 20),
    cache_size=st.none() | st.integers(1, 4096).map(lambda n: n * 256),
    cache_mode=st.none() | st.sampled_from(["FP16", "Q8", "q4", "8,8"]),
    rope_scale=st.none() | st.floats(0.1, 64.0),
    rope_alpha=st.none() | st.floats(0.1, 64.0),
    chunk_size=st.none() | st.integers(1, 1 << 16),
    prompt_template=st.none() | st.sampled_from(["chatml", "llama3"]),
    vision=st.none() | st.booleans(),
)


def _card_for(request: ModelLoadRequest) -> ModelCard:
    """The card a server would report after loading ``request`` with defaults."""
    return _card(
        request.model_name.rsplit("/", 1)[-1],
        max_seq_len=request.max_seq_len or 4096,
        cache_size=request.cache_size or 4096,
        cache_mode=(request.cache_mode or "FP16").upper(),
        rope_scale=request.rope_scale or 1.0,
        rope_alpha=request.rope_alpha if isinstance(request.rope_alpha, float) else 1.0,
        chunk_size=request.chunk_size or 2048,
        prompt_template=request.prompt_template,
        use_vision=bool(request.vision),
    )


@given(_requests)
def test_the_card_of_a_request_needs_no_action(request: ModelLoadRequest) -> None:
    plan = plan_for(request, _card_for(request))
    assert plan.action == "none", plan.reasons


@given(_requests, st.integers(1, 1 << 20))
def test_a_different_context_always_reloads(request: ModelLoadRequest, other: int) -> None:
    card = _card_for(request)
    assert card.parameters is not None
    changed = msgspec.structs.replace(
        card, parameters=msgspec.structs.replace(card.parameters, max_seq_len=other)
    )
    plan = plan_for(request, changed)
    if request.max_seq_len is None or request.max_seq_len == other:
        assert plan.action == "none"
    else:
        assert plan.action == "reload"
        assert plan.reasons == (FieldDiff("max_seq_len", request.max_seq_len, other),)
