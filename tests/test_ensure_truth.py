"""Desired state tells the truth: what the server's answers cannot prove is never claimed.

Against the emulator, through the Python API: a nested name whose last
segment is the card id is left to the server; a null template is an answer;
requests the server cannot satisfy reach a fixed point (no second unload or
load); concurrent ensures of one request send one load; load fields are
compared as the server reads them.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from tabby_async import (
    AsyncTabbyClient,
    DesiredState,
    DraftModelLoadRequest,
    EmbeddingModelLoadRequest,
    ModelMismatchError,
    StateMismatchError,
)
from tabby_async import ModelLoadRequest as Req
from tabby_async.errors import ClientStateError, InvalidInputError
from tabby_async.testing import EmulatedModel, TabbyEmulator

LOAD = "/v1/model/load"
UNLOAD = "/v1/model/unload"
EMBED_LOAD = "/v1/model/embedding/load"

pytestmark = pytest.mark.emulator(
    models=[
        EmulatedModel("org/model/4.0bpw", modules=2),
        EmulatedModel("other-org/model/4.0bpw", modules=3),
        EmulatedModel("flat", modules=2, prompt_template="own", chat_template="{{ own }}"),
        EmulatedModel("bare", modules=2),  # no template of its own
        EmulatedModel("novision", modules=2),
        EmulatedModel("native", modules=2, max_seq_len=32768),
        EmulatedModel("pinned", modules=2, folder_config={"cache_mode": "4,4"}),
        EmulatedModel("slow", modules=6, delay=0.05),
    ],
    embeddings=["emb/a/v1", "emb/b/v1", "flat-emb"],
    templates={"chatml": "{{ chatml }}"},
)


def _writes(server: TabbyEmulator) -> list[str]:
    """The POST paths the server received, in order."""
    return [r.path for r in server.requests if r.method == "POST"]


# --- §1 identity -----------------------------------------------------------------------


async def test_another_folder_with_the_same_last_segment_is_loaded_not_claimed(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("org/model/4.0bpw")
    server.reset_requests()
    plan = await client.models.plan_load(model_name="other-org/model/4.0bpw")
    assert (plan.action, plan.verified, plan.met) == ("load", False, None)

    result = await client.models.ensure_loaded(model_name="other-org/model/4.0bpw")
    assert result.action == "load"
    assert server.loaded == "other-org/model/4.0bpw"  # the server swapped: it was another
    assert _writes(server) == [LOAD]  # never an unload on the card id alone


async def test_the_same_nested_folder_is_proved_by_the_servers_no_op(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("org/model/4.0bpw", max_seq_len=2048)
    server.reset_requests()
    result = await client.models.ensure_loaded(model_name="org/model/4.0bpw", max_seq_len=2048)
    assert result.action == "none"
    assert result.mismatches == ()
    assert _writes(server) == [LOAD]  # the server's "already loaded" answer, nothing else
    assert server.loaded == "org/model/4.0bpw"


async def test_the_same_nested_folder_with_other_parameters_is_reloaded_once_proved(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("org/model/4.0bpw", max_seq_len=2048)
    server.reset_requests()
    plan = await client.models.plan_load(model_name="org/model/4.0bpw", max_seq_len=4096)
    assert plan.met is False  # whatever the folder, it does not run at 4096
    result = await client.models.ensure_loaded(model_name="org/model/4.0bpw", max_seq_len=4096)
    assert result.action == "reload"
    assert _writes(server) == [LOAD, UNLOAD, LOAD]
    assert result.card is not None and result.card.parameters is not None
    assert result.card.parameters.max_seq_len == 4096


async def test_client_ensure_leaves_a_nested_name_to_the_server(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("org/model/4.0bpw")
    server.reset_requests()
    state = DesiredState(model=Req(model_name="other-org/model/4.0bpw"))
    dry = await client.apply(state, dry_run=True)
    assert dry.plan.met is None and not dry.plan.verified
    result = await client.apply(state)
    assert [p.part for p in result.done] == ["model"]
    assert server.loaded == "other-org/model/4.0bpw"
    assert result.after is not None and result.after.met is True

    server.reset_requests()
    again = await client.apply(state)
    assert again.done == ()  # the server's no-op proved it: nothing written
    assert _writes(server) == [LOAD]


async def test_an_embedding_folder_is_told_apart_by_the_server(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    await client.models.load_embedding(embedding_model_name="emb/a/v1")
    server.reset_requests()
    other = DesiredState(embedding=EmbeddingModelLoadRequest(embedding_model_name="emb/b/v1"))
    plan = (await client.apply(other, dry_run=True)).plan
    assert plan.met is None
    result = await client.apply(other)
    assert [p.part for p in result.done] == ["embedding"]
    assert server.loaded_embedding == "emb/b/v1"

    # The same folder again: the server's "already loaded" refusal proves it.
    server.reset_requests()
    same = await client.apply(other)
    assert same.done == ()
    assert same.after is not None and same.after.met is True
    assert _writes(server) == [EMBED_LOAD]


async def test_a_flat_embedding_name_is_proved_by_the_card(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    state = DesiredState(embedding=EmbeddingModelLoadRequest(embedding_model_name="flat-emb"))
    await client.apply(state)
    server.reset_requests()
    again = await client.apply(state)
    assert again.plan.met is True
    assert _writes(server) == []


# --- §2 what the server did not apply ------------------------------------------------------


async def test_a_null_template_is_a_mismatch_that_names_the_field(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    with pytest.raises(ModelMismatchError) as caught:
        await client.models.ensure_loaded(model_name="bare", prompt_template="nope")
    (diff,) = caught.value.result.mismatches
    assert (diff.field, diff.wanted, diff.loaded) == ("prompt_template", "nope", None)
    assert "prompt_template" in str(caught.value)


FIXED_POINTS = [
    # (request fields, the field the server does not apply, what it shows)
    ({"model_name": "novision", "vision": True}, "vision", False),
    ({"model_name": "flat", "prompt_template": "nope"}, "prompt_template", "own"),
    ({"model_name": "bare", "prompt_template": "nope"}, "prompt_template", None),
    ({"model_name": "pinned", "cache_mode": "Q8"}, "cache_mode", "4,4"),  # its folder config wins
]


@pytest.mark.parametrize(("fields", "field", "shown"), FIXED_POINTS)
async def test_a_request_the_server_cannot_satisfy_reaches_a_fixed_point(
    server: TabbyEmulator,
    client: AsyncTabbyClient,
    fields: dict[str, object],
    field: str,
    shown: object,
) -> None:
    with pytest.raises(ModelMismatchError) as first:
        await client.models.ensure_loaded(**fields)  # type: ignore[arg-type]
    assert [(d.field, d.loaded) for d in first.value.result.mismatches] == [(field, shown)]
    assert _writes(server) == [LOAD]

    for _ in range(2):
        server.reset_requests()
        with pytest.raises(ModelMismatchError) as again:
            await client.models.ensure_loaded(**fields)  # type: ignore[arg-type]
        assert again.value.result.mismatches == first.value.result.mismatches
        assert again.value.result.action == "none"
        assert _writes(server) == []  # no unload, no load

    plan = await client.models.plan_load(**fields)  # type: ignore[arg-type]
    assert (plan.action, plan.met) == ("none", False)
    assert [d.field for d in plan.refused] == [field]

    # client.apply with the same model part: the same mismatch at once, no write.
    server.reset_requests()
    with pytest.raises(StateMismatchError) as state:
        await client.apply(DesiredState(model=Req(**fields)))  # type: ignore[arg-type]
    assert [p.part for p in state.value.result.mismatches] == ["model"]
    assert _writes(server) == []


async def test_the_fixed_point_ends_when_the_card_changes(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    wanted = {"model_name": "novision", "vision": True, "max_seq_len": 2048}
    with pytest.raises(ModelMismatchError):
        await client.models.ensure_loaded(**wanted)  # type: ignore[arg-type]
    # Someone else loads it with another context: the card no longer shows
    # what our request's load left, so ensure acts again.
    server.preload("novision", max_seq_len=1024)
    server.reset_requests()
    with pytest.raises(ModelMismatchError) as again:
        await client.models.ensure_loaded(**wanted)  # type: ignore[arg-type]
    assert _writes(server) == [UNLOAD, LOAD]
    assert [d.field for d in again.value.result.mismatches] == ["vision"]

    # Another context alone, which the request does not set, changes nothing
    # it can see: loading again would give the same answer.
    server.preload("novision", vision=True, max_seq_len=2048, cache_size=8192)
    server.reset_requests()
    with pytest.raises(ModelMismatchError):
        await client.models.ensure_loaded(**wanted)  # type: ignore[arg-type]
    assert _writes(server) == []


async def test_client_ensure_reaches_the_fixed_point_too(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    state = DesiredState(model=Req(model_name="novision", vision=True), template="chatml")
    with pytest.raises(StateMismatchError) as first:
        await client.apply(state)
    assert [p.part for p in first.value.result.mismatches] == ["model"]
    server.reset_requests()
    with pytest.raises(StateMismatchError) as again:
        await client.apply(state)
    assert [p.part for p in again.value.result.mismatches] == ["model"]
    assert _writes(server) == []


async def test_a_context_above_the_cache_is_refused_before_anything_is_sent(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.reset_requests()
    with pytest.raises(InvalidInputError) as caught:
        await client.models.ensure_loaded(model_name="flat", max_seq_len=8192, cache_size=4096)
    assert caught.value.field == "max_seq_len"
    assert "cache_size" in str(caught.value)
    with pytest.raises(InvalidInputError):
        await client.models.plan_load(model_name="flat", max_seq_len=8192, cache_size=4096)
    with pytest.raises(InvalidInputError):
        DesiredState(model=Req(model_name="flat", max_seq_len=8192, cache_size=4096))
    assert server.requests == []


# --- concurrency -------------------------------------------------------------------------


@pytest.mark.parametrize("loaded", [None, 1024])
async def test_concurrent_ensures_of_one_request_send_one_load(
    server: TabbyEmulator, client: AsyncTabbyClient, loaded: int | None
) -> None:
    if loaded is not None:
        server.preload("flat", max_seq_len=loaded)
    server.reset_requests()
    results = await asyncio.gather(
        *(client.models.ensure_loaded(model_name="flat", max_seq_len=2048) for _ in range(8))
    )
    assert {r.action for r in results} == {"load" if loaded is None else "reload"}
    assert _writes(server) == ([LOAD] if loaded is None else [UNLOAD, LOAD])


async def test_a_cancelled_first_caller_hands_the_ensure_to_the_next(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    progressed = asyncio.Event()
    first = asyncio.create_task(
        client.models.ensure_loaded(model_name="slow", on_progress=lambda _e: progressed.set())
    )
    await progressed.wait()  # the first caller's load is under way
    second = asyncio.create_task(client.models.ensure_loaded(model_name="slow"))
    joined = asyncio.Event()
    second.add_done_callback(lambda _t: joined.set())
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    result = await second  # it ran the ensure itself once the first was cancelled
    assert result.card is not None and result.card.id == "slow"
    assert result.mismatches == ()
    assert server.loaded == "slow"


async def test_an_error_is_shared_by_the_callers_that_joined(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    outcomes = await asyncio.gather(
        *(client.models.ensure_loaded(model_name="missing") for _ in range(3)),
        return_exceptions=True,
    )
    assert all(type(o).__name__ == "ModelNotFoundError" for o in outcomes)
    assert _writes(server) == [LOAD]


# --- §3 load fields as the server reads them -------------------------------------------------


async def test_cache_mode_is_compared_as_the_server_reads_it(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("flat", cache_mode="q4")  # not Q4: the server runs an FP16 cache
    server.reset_requests()
    result = await client.models.ensure_loaded(model_name="flat", cache_mode="Q4")
    assert result.action == "reload"
    assert [d.field for d in result.reasons] == ["cache_mode"]

    server.reset_requests()
    same = await client.models.ensure_loaded(model_name="flat", cache_mode="4,4")
    assert same.action == "none"  # Q4 and 4,4 are one mode
    assert _writes(server) == []


async def test_a_folder_config_spelling_of_the_same_mode_is_as_requested(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    result = await client.models.ensure_loaded(model_name="pinned", cache_mode="Q4")
    assert result.card is not None and result.card.parameters is not None
    assert result.card.parameters.cache_mode == "4,4"
    assert result.mismatches == ()


async def test_the_models_own_context_is_accepted_and_left_uncompared(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    result = await client.models.ensure_loaded(model_name="native", max_seq_len=-1)
    assert result.card is not None and result.card.parameters is not None
    assert result.card.parameters.max_seq_len == 32768
    assert "max_seq_len" in result.unchecked
    server.reset_requests()
    again = await client.models.ensure_loaded(model_name="native", max_seq_len=-1)
    assert again.action == "none"
    assert _writes(server) == []


async def test_a_negative_autosplit_reserve_is_sent_unchanged(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    await client.models.load(model_name="flat", autosplit_reserve=[-1.0, 96.0])
    (load,) = [r for r in server.requests if r.path == LOAD]
    assert load.body["autosplit_reserve"] == [-1.0, 96.0]


@pytest.mark.parametrize("bad", [-2, 0])
def test_a_context_other_than_minus_one_below_one_is_refused(bad: int) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Req(model_name="m", max_seq_len=bad)
    assert caught.value.field == "max_seq_len"


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 0, -1.0])
def test_reattach_within_must_be_finite_seconds(client: AsyncTabbyClient, bad: float) -> None:
    with pytest.raises(InvalidInputError) as caught:
        client.models.load_stream(model_name="flat", reattach_within=bad)
    assert caught.value.field == "reattach_within"


# --- the draft, through the listing a plain api key sees ------------------------------------

DRAFTED = pytest.mark.emulator(models=["m"], drafts=["d1", "d2"])


@DRAFTED
async def test_the_loaded_draft_is_read_with_the_plain_api_key(server: TabbyEmulator) -> None:
    async with AsyncTabbyClient(
        server.url, api_key=server.api_key, admin_key=server.admin_key
    ) as both:
        assert await both.models.loaded_draft() is None
        server.preload("m", draft_model={"draft_model_name": "d1"})
        assert await both.models.loaded_draft() == "d1"
        # Another draft than the one loaded is now a difference, not "unchecked".
        plan = await both.models.plan_load(model_name="m", draft_model={"draft_model_name": "d2"})
        assert plan.action == "reload"
        assert [str(d) for d in plan.reasons] == [
            "draft_model.draft_model_name: wanted 'd2', loaded 'd1'"
        ]
        result = await both.models.ensure_loaded(
            model_name="m", draft_model={"draft_model_name": "d2"}
        )
        assert result.action == "reload"
        assert "draft_model.draft_model_name" not in result.unchecked
        assert server.loaded_draft == "d2"
        server.reset_requests()
        again = await both.models.ensure_loaded(
            model_name="m", draft_model={"draft_model_name": "d2"}
        )
        assert again.action == "none"
        assert _writes(server) == []
        # The permission of the api key is asked once per client.
        assert server.count("GET", "/v1/auth/permission") == 0


@DRAFTED
async def test_without_a_plain_api_key_the_draft_stays_unchecked(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("m", draft_model={"draft_model_name": "d1"})
    with pytest.raises(ClientStateError):
        await client.models.loaded_draft()
    plan = await client.models.plan_load(model_name="m", draft_model={"draft_model_name": "d2"})
    assert plan.action == "none"
    assert "draft_model.draft_model_name" in plan.unchecked


@pytest.mark.emulator(models=["m"], drafts=["d1", "d2"], auth=False)
async def test_with_auth_off_every_key_is_admin_and_the_draft_stays_unchecked(
    server: TabbyEmulator,
) -> None:
    server.preload("m", draft_model={"draft_model_name": "d1"})
    async with AsyncTabbyClient(server.url, api_key="anything") as anyone:
        with pytest.raises(ClientStateError, match="admin permission"):
            await anyone.models.loaded_draft()
        plan = await anyone.models.plan_load(model_name="m", draft_model={"draft_model_name": "d2"})
        assert "draft_model.draft_model_name" in plan.unchecked


@DRAFTED
async def test_client_ensure_compares_the_draft_too(server: TabbyEmulator) -> None:
    server.preload("m", draft_model={"draft_model_name": "d1"})
    async with AsyncTabbyClient(
        server.url, api_key=server.api_key, admin_key=server.admin_key
    ) as both:
        draft = DraftModelLoadRequest(draft_model_name="d2")
        state = DesiredState(model=Req(model_name="m", draft_model=draft))
        dry = await both.apply(state, dry_run=True)
        assert dry.plan.met is False
        result = await both.apply(state)
        assert [p.part for p in result.done] == ["model"]
        assert server.loaded_draft == "d2"


async def test_the_default_checks_called_directly_never_pass_a_name_the_card_cannot_prove(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    from tabby_async.fleet import VerificationError, default_check, default_state_check

    server.preload("other-org/model/4.0bpw")
    with pytest.raises(VerificationError, match="the server decides"):
        await default_check("n", client, Req(model_name="org/model/4.0bpw"))
    with pytest.raises(VerificationError):
        await default_state_check(
            "n", client, DesiredState(model=Req(model_name="org/model/4.0bpw"))
        )
    server.preload("flat")
    await default_check("n", client, Req(model_name="flat"))  # a flat name the card proves
