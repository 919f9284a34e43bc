"""Fleet methods take a request's keyword fields and the run options in one typed tail."""

from __future__ import annotations

import inspect

import pytest

from tabby_async import InvalidInputError
from tabby_async.fleet import FleetModels, NodeSpec, TabbyFleet
from tabby_async.testing import TabbyEmulator

pytestmark = pytest.mark.emulator(models=["alpha"])


async def test_a_field_and_an_option_in_one_call_both_take_effect(server: TabbyEmulator) -> None:
    seen: list[str] = []
    spec = NodeSpec("a", server.url, admin_key=server.admin_key)
    async with TabbyFleet([spec]) as fleet:
        loaded = await fleet.models.load(
            model_name="alpha",
            max_seq_len=2048,
            nodes=["a"],
            on_result=lambda r: seen.append(r.node),
        )
        assert loaded["a"].ok and seen == ["a"]
        card = (await fleet.models.get())["a"].unwrap()
    assert card.parameters is not None and card.parameters.max_seq_len == 2048


async def test_an_unknown_keyword_or_node_is_refused_by_name(server: TabbyEmulator) -> None:
    spec = NodeSpec("a", server.url, admin_key=server.admin_key)
    async with TabbyFleet([spec]) as fleet:
        with pytest.raises(InvalidInputError) as info:
            await fleet.models.load(model_name="alpha", max_seq=1)  # type: ignore[call-arg]
        assert info.value.field == "max_seq"
        with pytest.raises(InvalidInputError, match="nope"):
            await fleet.models.plan_load(model_name="alpha", nodes=["nope"])
        with pytest.raises(InvalidInputError) as stream_info:
            fleet.models.load_stream(model_name="alpha", on_result=print)  # type: ignore[call-arg]
        assert stream_info.value.field == "on_result"
    assert [r.path for r in server.requests] == []  # refused before any node was asked


@pytest.mark.parametrize("cls", [FleetModels, TabbyFleet])
def test_no_fleet_method_spells_out_the_run_options(cls: type) -> None:
    spelled = [
        name
        for name, member in vars(cls).items()
        if inspect.isfunction(member)
        and name not in ("run", "rollout", "__init__")  # run declares them; rollout's differ
        and {"nodes", "fail_fast", "max_concurrency"} & set(inspect.signature(member).parameters)
    ]
    assert spelled == []
