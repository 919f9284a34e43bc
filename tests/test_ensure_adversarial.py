"""Desired state under attack: odd servers, odd names, cancellation, hostile cards.

Each test here is a way to make ``ensure_loaded``, ``client.apply`` or a
plan claim "as requested" for what the server does not run, fail a whole
ensure over an auxiliary read, or leave something behind; each failed
before its fix.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web

from tabby_async import (
    AsyncTabbyClient,
    ClientStateError,
    DesiredState,
    DraftModelLoadRequest,
    ModelMismatchError,
)
from tabby_async import ModelLoadRequest as Req
from tabby_async._model_plan import identity, plan_for
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.types import ModelCard, ModelCardParameters
from tests.helpers import GUARD, guarded, serve_app

LOAD = "/v1/model/load"
UNLOAD = "/v1/model/unload"
PERMISSION = "/v1/auth/permission"
DRAFT_LIST = "/v1/model/draft/list"

DRAFTED = pytest.mark.emulator(
    models=["m", EmulatedModel("slow", modules=6, delay=0.05)],
    drafts=["d1", "d2", "org/x/d1"],
)


def _drafted(draft: str) -> Req:
    """A request for ``m`` with the draft ``draft``."""
    return Req(model_name="m", draft_model=DraftModelLoadRequest(draft_model_name=draft))


def _writes(server: TabbyEmulator) -> list[str]:
    """The POST paths the server received, in order."""
    return [r.path for r in server.requests if r.method == "POST"]


@pytest.fixture
async def both(server: TabbyEmulator) -> AsyncIterator[AsyncTabbyClient]:
    """A client of ``server`` with its plain api key and its admin key."""
    async with AsyncTabbyClient(
        server.url, api_key=server.api_key, admin_key=server.admin_key, max_retries=0
    ) as c:
        yield c


# --- the draft read: an auxiliary look never fails the ensure ---------------------------------

ODD_PERMISSION = [
    pytest.param({"status": 404, "detail": "Not Found"}, id="404-old-server"),
    pytest.param({"status": 500, "detail": "boom"}, id="500"),
    pytest.param({"status": 200, "body": b"<html>not json"}, id="garbage-200"),
    pytest.param({"status": 401, "detail": "bad key"}, id="401-wrong-api-key"),
]


@DRAFTED
@pytest.mark.parametrize("answer", ODD_PERMISSION)
@pytest.mark.parametrize("route", [PERMISSION, DRAFT_LIST])
async def test_an_odd_draft_read_leaves_the_draft_unchecked(
    server: TabbyEmulator, both: AsyncTabbyClient, answer: dict[str, Any], route: str
) -> None:
    server.preload("m", draft_model={"draft_model_name": "d1"})
    server.faults.fail_next(n=None, path=route, method="GET", **answer)
    server.reset_requests()
    request = _drafted("d2")
    plan = await both.models.plan_load(request)
    assert plan.action == "none"
    assert "draft_model.draft_model_name" in plan.unchecked
    result = await both.models.ensure_loaded(request)
    assert result.action == "none"
    assert "draft_model.draft_model_name" in result.unchecked
    state = await both.apply(DesiredState(model=request))
    assert state.done == ()
    assert _writes(server) == []


@DRAFTED
async def test_a_transient_permission_failure_is_asked_again(
    server: TabbyEmulator, both: AsyncTabbyClient
) -> None:
    server.preload("m", draft_model={"draft_model_name": "d1"})
    server.faults.fail_next(n=1, status=500, path=PERMISSION, method="GET")
    request = _drafted("d2")
    assert "draft_model.draft_model_name" in (await both.models.plan_load(request)).unchecked
    # The next look asks again and reads the draft: d1 runs, not d2.
    plan = await both.models.plan_load(request)
    assert plan.action == "reload"
    assert [d.field for d in plan.reasons] == ["draft_model.draft_model_name"]


@DRAFTED
async def test_an_old_server_without_the_permission_route_is_asked_once(
    server: TabbyEmulator, both: AsyncTabbyClient
) -> None:
    server.preload("m", draft_model={"draft_model_name": "d1"})
    server.faults.fail_next(n=None, status=404, detail="Not Found", path=PERMISSION, method="GET")
    request = _drafted("d2")
    for _ in range(3):
        await both.models.plan_load(request)
    assert server.count("GET", PERMISSION) == 1


@DRAFTED
async def test_an_api_key_that_is_the_admin_key_leaves_the_draft_unchecked(
    server: TabbyEmulator,
) -> None:
    server.preload("m", draft_model={"draft_model_name": "d1"})
    async with AsyncTabbyClient(
        server.url, api_key=server.admin_key, admin_key=server.admin_key
    ) as same:
        with pytest.raises(ClientStateError, match="admin permission"):
            await same.models.loaded_draft()
        request = _drafted("d2")
        plan = await same.models.plan_load(request)
        assert (plan.action, plan.met) == ("none", True)
        assert "draft_model.draft_model_name" in plan.unchecked
        await same.models.plan_load(request)
        assert server.count("GET", PERMISSION) == 1  # cached per client


@DRAFTED
async def test_a_listing_of_several_drafts_cannot_say_which_is_loaded(
    server: TabbyEmulator, both: AsyncTabbyClient
) -> None:
    # A server (or a proxy) that shows the api key every draft folder
    # although it says "api": the first entry is not the loaded draft.
    server.preload("m", draft_model={"draft_model_name": "d2"})
    listing = {"object": "list", "data": [{"id": "d1"}, {"id": "d2"}]}
    server.faults.fail_next(
        n=None, status=200, path=DRAFT_LIST, method="GET", body=msgspec.json.encode(listing)
    )
    with pytest.raises(ClientStateError):
        await both.models.loaded_draft()
    request = _drafted("d1")
    plan = await both.models.plan_load(request)
    assert plan.met is True and "draft_model.draft_model_name" in plan.unchecked


@DRAFTED
async def test_a_nested_draft_name_is_not_proved_by_the_listings_last_segment(
    server: TabbyEmulator, both: AsyncTabbyClient
) -> None:
    # The listing names the draft by its folder's last segment: d1 shows for
    # the draft folder d1 and for org/x/d1 alike.
    server.preload("m", draft_model={"draft_model_name": "d1"})
    request = _drafted("org/x/d1")
    plan = await both.models.plan_load(request)
    assert plan.reasons == ()
    assert "draft_model.draft_model_name" in plan.unchecked
    # Another last segment is still a proven difference.
    other = _drafted("org/x/d2")
    assert (await both.models.plan_load(other)).action == "reload"


# --- identity: names as the server's path reads them ------------------------------------------

NAMES = pytest.mark.emulator(models=["flat", "org/model/4.0bpw", "other-org/model/4.0bpw"])


@NAMES
@pytest.mark.parametrize("name", ["flat/.", "./flat", "flat//", "flat/"])
async def test_dot_segments_and_slashes_name_the_same_flat_folder(
    server: TabbyEmulator, client: AsyncTabbyClient, name: str
) -> None:
    server.preload("flat")
    server.reset_requests()
    plan = await client.models.plan_load(model_name=name)
    assert (plan.action, plan.met) == ("none", True)
    result = await client.models.ensure_loaded(model_name=name)
    assert (result.action, result.mismatches) == ("none", ())
    assert _writes(server) == []


def test_a_backslash_in_a_folder_name_on_a_posix_server_is_proved_by_its_card() -> None:
    # On a POSIX server the backslash is part of the folder's name, and of its
    # card id. (The emulator splits card ids at a backslash, as Windows would.)
    card = ModelCard(id="back\\slash", parameters=ModelCardParameters(max_seq_len=4096))
    plan = plan_for(Req(model_name="back\\slash", max_seq_len=4096), card)
    assert (plan.action, plan.met) == ("none", True)


@NAMES
async def test_a_nested_name_with_a_dot_segment_is_still_left_to_the_server(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("org/model/4.0bpw")
    server.reset_requests()
    plan = await client.models.plan_load(model_name="other-org/./model/4.0bpw/")
    assert (plan.action, plan.met) == ("load", None)
    await client.models.ensure_loaded(model_name="other-org/./model/4.0bpw/")
    assert server.loaded == "other-org/model/4.0bpw"
    assert _writes(server) == [LOAD]


def test_a_windows_backslash_nests_a_name() -> None:
    assert identity("org\\model\\4.0bpw", "4.0bpw") == "unproven"
    assert identity("org\\model", "org\\model") == "same"  # a POSIX folder's own name
    assert identity("Flat", "flat") == "other"


def test_a_case_only_difference_counts_once_the_server_proved_the_folder() -> None:
    # A server on a case-insensitive file system names the card after the
    # folder as it is on disk; its "already loaded" answer proved it ours.
    card = ModelCard(id="flat", parameters=ModelCardParameters(max_seq_len=4096))
    assert plan_for(Req(model_name="Flat"), card).action == "load"
    proved = plan_for(Req(model_name="Flat", max_seq_len=4096), card, proven=True)
    assert (proved.action, proved.met) == ("none", True)


# --- concurrent ensures: one flight per request, nothing left behind ---------------------------

FLIGHTS = pytest.mark.emulator(models=["m", EmulatedModel("slow", modules=6, delay=0.05)])


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the loop's exception handler saw ("Future exception was never retrieved", ...)."""
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    gc.collect()
    loop.set_exception_handler(previous)


def _no_flights(client: AsyncTabbyClient) -> bool:
    return not client.models._memory.flights


@FLIGHTS
async def test_a_follower_cancelled_while_waiting_leaves_the_leader_alone(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    progressed = asyncio.Event()
    leader = asyncio.create_task(
        client.models.ensure_loaded(model_name="slow", on_progress=lambda _e: progressed.set())
    )
    await progressed.wait()
    follower = asyncio.create_task(client.models.ensure_loaded(model_name="slow"))
    await asyncio.sleep(0)  # one step: the follower joins the flight
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    result = await guarded(leader)
    assert result.action == "load" and result.mismatches == ()
    assert _writes(server) == [LOAD]
    assert _no_flights(client)


@FLIGHTS
async def test_a_leader_and_its_follower_both_cancelled_leave_nothing_behind(
    server: TabbyEmulator, client: AsyncTabbyClient, loop_errors: list[dict[str, Any]]
) -> None:
    progressed = asyncio.Event()
    leader = asyncio.create_task(
        client.models.ensure_loaded(model_name="slow", on_progress=lambda _e: progressed.set())
    )
    await progressed.wait()
    follower = asyncio.create_task(client.models.ensure_loaded(model_name="slow"))
    await asyncio.sleep(0)  # one step: the follower joins the flight
    leader.cancel()
    follower.cancel()
    for task in (leader, follower):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert _writes(server) == [LOAD]  # the follower did not take over: it was cancelled too
    assert _no_flights(client)
    await guarded(server.wait_idle())
    again = await guarded(client.models.ensure_loaded(model_name="slow"))
    assert again.mismatches == ()
    gc.collect()
    assert loop_errors == []


@FLIGHTS
async def test_a_leader_cancelled_before_its_load_hands_the_ensure_over(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    leader = asyncio.create_task(client.models.ensure_loaded(model_name="m"))
    follower = asyncio.create_task(client.models.ensure_loaded(model_name="m"))
    await asyncio.sleep(0)  # one step each: the leader is reading the card, the follower waits
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    result = await guarded(follower)
    assert result.action == "load" and result.mismatches == ()
    assert _writes(server) == [LOAD]
    assert _no_flights(client)


@FLIGHTS
async def test_a_follower_that_verifies_does_not_take_an_unverified_result(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    progressed = asyncio.Event()
    leader = asyncio.create_task(
        client.models.ensure_loaded(
            model_name="slow", verify=False, on_progress=lambda _e: progressed.set()
        )
    )
    await progressed.wait()
    checked = await guarded(client.models.ensure_loaded(model_name="slow"))
    assert checked.card is not None and checked.card.id == "slow"  # it read the card
    assert (await leader).card is None


@FLIGHTS
async def test_other_requests_do_not_wait_for_a_flight(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    # The first load is held at the server far longer than the second takes.
    server.faults.delay_head(GUARD, n=1, path=LOAD, method="POST")
    held = asyncio.create_task(client.models.ensure_loaded(model_name="m", max_seq_len=2048))
    await asyncio.sleep(0)
    other = await guarded(client.models.ensure_loaded(model_name="m", max_seq_len=1024))
    assert other.action == "load"
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert _no_flights(client)


@FLIGHTS
@pytest.mark.parametrize("callers", [1, 3])
async def test_a_shared_error_is_retrieved_by_every_caller(
    server: TabbyEmulator,
    client: AsyncTabbyClient,
    loop_errors: list[dict[str, Any]],
    callers: int,
) -> None:
    outcomes = await asyncio.gather(
        *(client.models.ensure_loaded(model_name="missing") for _ in range(callers)),
        return_exceptions=True,
    )
    assert {type(o).__name__ for o in outcomes} == {"ModelNotFoundError"}
    assert _no_flights(client)
    gc.collect()
    assert loop_errors == []


# --- hostile servers ---------------------------------------------------------------------------


def _hostile(cards: list[dict[str, Any]]) -> tuple[web.Application, list[str]]:
    """A server whose ``GET /v1/model`` answers ``cards`` in turn (the last one then
    forever) and whose every load is the "already loaded" no-op; it records the writes."""
    writes: list[str] = []
    shown = iter(cards)
    last: dict[str, Any] = cards[-1]

    async def card(_request: web.Request) -> web.Response:
        nonlocal last
        last = next(shown, last)
        return web.json_response(last)

    async def load(request: web.Request) -> web.StreamResponse:
        writes.append(request.path)
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        for status in ("processing", "finished"):
            event = {"model_type": "model", "module": 1, "modules": 1, "status": status}
            await stream.write(b"data: " + msgspec.json.encode(event) + b"\n\n")
        await stream.write_eof()
        return stream

    async def unload(request: web.Request) -> web.Response:
        writes.append(request.path)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_get("/v1/model", card)
    app.router.add_post(LOAD, load)
    app.router.add_post(UNLOAD, unload)
    return app, writes


async def test_a_no_op_load_then_a_card_of_another_folder_is_never_as_requested() -> None:
    app, writes = _hostile([{"id": "4.0bpw", "parameters": {}}, {"id": "other", "parameters": {}}])
    async with serve_app(app) as url, AsyncTabbyClient(url, admin_key="k") as client:
        with pytest.raises(ModelMismatchError) as caught:
            await guarded(client.models.ensure_loaded(model_name="org/model/4.0bpw"))
    assert [d.field for d in caught.value.result.mismatches] == ["model_name"]
    assert writes == [LOAD, UNLOAD, LOAD]  # the unload only once the card showed another model


@pytest.mark.parametrize(
    "parameters",
    [
        pytest.param({"max_seq_len": None, "cache_mode": None}, id="nulls"),
        pytest.param({}, id="missing"),
    ],
)
async def test_a_card_that_leaves_out_a_reported_field_cannot_tell(
    parameters: dict[str, Any],
) -> None:
    app, writes = _hostile([{"id": "m", "parameters": parameters}])
    async with serve_app(app) as url, AsyncTabbyClient(url, admin_key="k") as client:
        plan = await client.models.plan_load(model_name="m", max_seq_len=8192, cache_mode="Q4")
        assert plan.action == "none"  # nothing proves a difference: no load
        assert plan.met is None  # nor that it runs as asked
        assert set(plan.unchecked) == {"max_seq_len", "cache_mode"}
        assert "as requested" not in plan.summary()
        request = Req(model_name="m", max_seq_len=8192, cache_mode="Q4")
        state = await client.apply(DesiredState(model=request), dry_run=True)
        assert (state.plan.met, state.plan.verified) == (None, False)  # the exporter: unknown
    assert writes == []


# --- reattaching to a nested name --------------------------------------------------------------

REATTACH = pytest.mark.emulator(
    models=[
        EmulatedModel("org/model/4.0bpw", modules=4),
        EmulatedModel("other-org/model/4.0bpw", modules=8, delay=0.03),
    ]
)


@REATTACH
async def test_reattach_after_a_swap_from_another_folder_of_that_name_confirms_ours(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("org/model/4.0bpw")  # shows "4.0bpw" too
    server.reset_requests()
    server.faults.drop_stream(after_events=2, stop_load=False)
    seen: list[tuple[str, int]] = []
    event = await guarded(
        client.models.load(
            model_name="other-org/model/4.0bpw",
            reattach_within=GUARD,
            on_progress=lambda e: seen.append((e.status, e.module)),
        )
    )
    assert (event.status, event.modules) == ("finished", 8)
    assert server.loaded == "other-org/model/4.0bpw"
    assert [s for s in seen if s[0] == "finished"] == [("finished", 8)]  # one end, no echo
    assert _writes(server) == [LOAD, LOAD]  # ours, then the one confirmation


@REATTACH
async def test_reattach_keeps_polling_when_the_confirmation_is_cut_too(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    server.preload("other-org/model/4.0bpw")
    # The no-op's stream is cut, and so is the confirmation's: "not yet", not "stop".
    server.faults.drop_stream(after_events=1, stop_load=False, n=2)
    again = await guarded(
        client.models.load(model_name="other-org/model/4.0bpw", reattach_within=GUARD)
    )
    assert again.status == "finished"
    assert server.loaded == "other-org/model/4.0bpw"
    assert server.count("POST", LOAD) == 3  # ours, the cut confirmation, the one that proved it


# --- the fixed point with a nested name ----------------------------------------------------------


@pytest.mark.emulator(
    models=[EmulatedModel("org/novision/v1", modules=2), EmulatedModel("other/novision/v1")]
)
async def test_a_nested_request_the_server_cannot_satisfy_costs_one_no_op_load_then_stops(
    server: TabbyEmulator, client: AsyncTabbyClient
) -> None:
    request = Req(model_name="org/novision/v1", vision=True)
    with pytest.raises(ModelMismatchError) as first:
        await client.models.ensure_loaded(request)
    for _ in range(2):
        server.reset_requests()
        with pytest.raises(ModelMismatchError) as again:
            await client.models.ensure_loaded(request)
        assert again.value.result.mismatches == first.value.result.mismatches
        assert _writes(server) == [LOAD]  # the server's no-op proves the folder; no unload
    # load(reload=True) never unloads on the card id alone either.
    server.reset_requests()
    await client.models.load(model_name="other/novision/v1", reload=True)
    assert _writes(server) == [LOAD]
    assert server.loaded == "other/novision/v1"
