"""A whole node's desired state across a fleet: the nodes file's ``[desired]``,
``TabbyFleet.apply``, ``rollout`` with a DesiredState, and the same through ``fleet.run``.

Against emulators in this process. Writes are counted as the POSTs each
emulator received: a second run with the same state must send none.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tabby_async import (
    DesiredState,
    EmbeddingModelLoadRequest,
    InvalidInputError,
    ModelLoadRequest,
    StateMismatchError,
    StatePlan,
    StateResult,
)
from tabby_async.fleet import (
    FleetResult,
    FleetStateReport,
    NodeSpec,
    RolloutReport,
    TabbyFleet,
    VerificationError,
    read_nodes_toml,
)
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tests.test_fleet import closed_port

NAMES = ["a", "b", "c", "d"]
M4096 = ModelLoadRequest(model_name="m", max_seq_len=4096)
E = EmbeddingModelLoadRequest(embedding_model_name="e")
STATE = DesiredState(model=M4096, embedding=E)
#: STATE as a nodes file's [desired] table.
STATE_TOML = '[desired]\nmodel = { model_name = "m", max_seq_len = 4096 }\nembedding = "e"'


@dataclass
class Nodes:
    servers: dict[str, TabbyEmulator]
    tmp: Path

    def posts(self, names: list[str] | None = None) -> int:
        """Every POST (a write: load, unload, switch...) the named nodes received."""
        chosen = names if names is not None else list(self.servers)
        return sum(1 for n in chosen for r in self.servers[n].requests if r.method == "POST")

    def reset(self) -> None:
        for server in self.servers.values():
            server.reset_requests()

    def fleet(self, names: str | list[str] = NAMES) -> TabbyFleet:
        """A fleet of the named servers, with their admin keys."""
        chosen = [(n, self.servers[n]) for n in names]
        return TabbyFleet([NodeSpec(n, s.url, admin_key=s.admin_key) for n, s in chosen])

    def file(
        self, head: str = "", per_node: dict[str, str] | None = None, down: bool = False
    ) -> Path:
        """A nodes file for the servers: ``head`` first, then one [nodes.NAME] table each."""
        lines = [head, ""]
        for name, server in self.servers.items():
            lines += [f"[nodes.{name}]", f'url = "{server.url}"']
            lines += [f'admin_key = "{server.admin_key}"', (per_node or {}).get(name, ""), ""]
        if down:
            lines += ["[nodes.down]", f'url = "http://127.0.0.1:{closed_port()}"', ""]
        path = self.tmp / "nodes.toml"
        path.write_text("\n".join(lines))
        return path


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    servers: dict[str, TabbyEmulator] = {}
    try:
        for name in NAMES:
            server = TabbyEmulator(
                models=["m", "n", EmulatedModel("bad", modules=3, fail_at=2)],
                embeddings=["e", "e2"],
                ping_interval=0,
            )
            await server.start()
            servers[name] = server
        yield Nodes(servers, tmp_path)
    finally:
        for server in servers.values():
            await server.close()


# --- the nodes file -----------------------------------------------------------------------


def test_a_nodes_file_declares_desired_state_by_default_and_per_node(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    path.write_text(
        """
[desired]
template = "chatml"
sampling_preset = "precise"
model = { model_name = "m", max_seq_len = 4096 }

[[nodes]]
name = "plain"
url = "http://h:1"

[[nodes]]
name = "small"
url = "http://h:2"
desired.model = "n"                       # a name alone; replaces the default's model whole
desired.embedding = { embedding_model_name = "e", embeddings_device = "cpu" }

[[nodes]]
name = "free"
url = "http://h:3"
desired = { model = false, template = false, sampling_preset = false }
"""
    )
    specs = {s.name: s for s in read_nodes_toml(path, env={})[0]}
    assert specs["plain"].desired == DesiredState(
        model=M4096, template="chatml", sampling_preset="precise"
    )
    assert specs["small"].desired == DesiredState(
        model=ModelLoadRequest(model_name="n"),
        template="chatml",
        sampling_preset="precise",
        embedding=EmbeddingModelLoadRequest(embedding_model_name="e", embeddings_device="cpu"),
    )
    assert specs["free"].desired is None  # every part left unmanaged
    assert "desired=<model, template, sampling>" in repr(specs["plain"])

    # The named-table layout.
    path.write_text(
        '[desired]\ntemplate = "chatml"\n'
        '[nodes.g1]\nurl = "http://h:4"\ndesired.sampling_preset = "fast"\n'
        '[nodes.g2]\nurl = "http://h:5"\n'
    )
    fleet = TabbyFleet.from_toml(path, env={})
    assert fleet.desired == {
        "g1": DesiredState(template="chatml", sampling_preset="fast"),
        "g2": DesiredState(template="chatml"),
    }


def test_a_fleet_without_a_desired_table_declares_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    path.write_text('[[nodes]]\nurl = "http://h:1"\n')
    assert read_nodes_toml(path, env={})[0][0].desired is None
    assert TabbyFleet(
        [NodeSpec("x", "http://h:1", desired=DesiredState(template="t")), NodeSpec("y", "http://h:2")]
    ).desired == {"x": DesiredState(template="t")}
    with pytest.raises(InvalidInputError, match="desired: must be a DesiredState"):
        NodeSpec("x", "http://h:1", desired={"template": "t"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('[desired]\ncolour = "red"\n', "desired.colour"),
        ("[desired]\nmodel = 3\n", "desired.model"),
        ("[desired.model]\nmax_seq_len = 4096\n", "desired.model.model_name"),
        ('[desired.model]\nmodel_name = "m"\nmax_seq_len = "big"\n', "desired.model.max_seq_len"),
        ('[desired.model]\nmodel_name = "m"\nflash = true\n', "desired.model.flash"),
        (
            '[desired.model]\nmodel_name = "m"\ndraft_model = { draft_model_name = "d", '
            'draft_rope_alpha = "x" }\n',
            "desired.model.draft_model.draft_rope_alpha",
        ),
        ("[desired]\ntemplate = 3\n", "desired.template"),
        ('[desired]\nsampling_preset = "../etc"\n', "desired.sampling_preset"),
        ("[desired]\nembedding = {}\n", "desired.embedding.embedding_model_name"),
        ("desired = 3\n", "desired"),
        ('[nodes.g1]\nurl = "http://h:1"\ndesired.model = { model_name = "" }\n', None),
        ('[nodes.g1]\nurl = "http://h:1"\ndesired = "m"\n', "nodes.g1.desired"),
        ('[nodes.g1]\nurl = "http://h:1"\ndesired.embeding = "e"\n', "nodes.g1.desired.embeding"),
        ('[[nodes]]\nurl = "http://h:1"\ndesired.template = ""\n', "nodes[0].desired.template"),
    ],
)
def test_a_bad_desired_table_is_refused_naming_its_key_path(
    tmp_path: Path, text: str, path: str | None
) -> None:
    if "nodes" not in text:
        text += '[[nodes]]\nurl = "http://h:1"\n'
    file = tmp_path / "nodes.toml"
    file.write_text(text)
    with pytest.raises(InvalidInputError) as caught:
        read_nodes_toml(file, env={})
    expected = path if path is not None else "nodes.g1.desired.model.model_name"
    assert caught.value.field == expected, caught.value
    assert str(caught.value).startswith(f"{expected}: ")


# --- TabbyFleet.apply --------------------------------------------------------------------


async def test_ensure_plans_every_node_then_writes_only_where_needed(nodes: Nodes) -> None:
    servers = nodes.servers
    servers["a"].preload("m", max_seq_len=4096)  # model right, no embedding
    servers["b"].preload("m", max_seq_len=2048)  # wrong context
    # c: nothing loaded; d declares no desired state; plus a node that is down.
    path = nodes.file(
        STATE_TOML,
        {"d": "desired = { model = false, embedding = false }"},
        down=True,
    )
    nodes.reset()
    seen: list[tuple[FleetResult[StatePlan], int]] = []
    async with TabbyFleet.from_toml(path, env={}) as fleet:
        assert set(fleet.desired) == {"a", "b", "c", "down"}
        report = await fleet.apply(on_plan=lambda plans: seen.append((plans, nodes.posts())))
    assert isinstance(report, FleetStateReport)
    # on_plan saw every managed node's plan before anything was written.
    assert [(plans.nodes, posts) for plans, posts in seen] == [(["a", "b", "c", "down"], 0)]
    assert report.unmanaged == ("d",)
    plans = report.plans
    assert plans["a"].unwrap().summary() == "model: none; embedding: load"
    assert plans["b"].unwrap().summary() == "model: reload; embedding: load"
    assert plans["c"].unwrap().summary() == "model: load; embedding: load"
    assert plans["down"].status == "connection_error"
    results = report.results
    assert results is not None and results.nodes == ["a", "b", "c", "down"]
    assert [p.part for p in results["a"].unwrap().done] == ["embedding"]
    assert [p.part for p in results["b"].unwrap().done] == ["model", "embedding"]
    assert results["down"].status == "connection_error"
    for name in ("a", "b", "c"):
        assert (servers[name].loaded, servers[name].loaded_embedding) == ("m", "e")
    assert nodes.posts(["d"]) == 0 and servers["d"].requests == []  # not managed: not read
    assert servers["a"].count("POST", "/v1/model/load") == 0
    assert report.changed == ["a", "b", "c"] and not report.ok
    assert report.summary().startswith("apply: 4 nodes: 3 changed, 0 unchanged, 1 failed")
    assert report.summary().endswith("; not managed: d")


async def test_a_second_run_with_the_same_state_sends_no_write(nodes: Nodes) -> None:
    path = nodes.file(STATE_TOML)
    async with TabbyFleet.from_toml(path, env={}) as fleet:
        first = await fleet.apply()
        assert first.ok and first.changed == NAMES
        nodes.reset()
        for run in range(1, 3):
            again = await fleet.apply()
            assert again.ok and again.changed == []
            # Each node was read once per run (and per dry run), to plan: nothing to apply.
            reads = [s.count("GET", "/v1/model") for s in nodes.servers.values()]
            assert reads == [2 * run - 1] * 4
            assert again.results is not None
            assert {r.unwrap().changed for r in again.results} == {False}
            dry = await fleet.apply(dry_run=True)
            assert dry.results is None
            assert dry.summary() == "plan (dry run): 4 none; 0 failed"
    assert nodes.posts() == 0


async def test_a_dry_run_writes_nothing_and_says_what_it_would_do(nodes: Nodes) -> None:
    nodes.servers["a"].preload("m", max_seq_len=4096)
    async with nodes.fleet() as fleet:
        report = await fleet.apply(DesiredState(model=M4096), dry_run=True)
    assert report.results is None and report.changed == []
    assert report.final is report.plans
    assert report.summary() == "plan (dry run): 3 change, 1 none; 0 failed"
    assert nodes.posts() == 0


async def test_a_given_state_goes_to_every_chosen_node(nodes: Nodes) -> None:
    # The file declares a state for "a" only; a given state replaces it, on every node.
    path = nodes.file(per_node={"a": 'desired.model = "n"'})
    state = DesiredState(embedding=E)
    async with TabbyFleet.from_toml(path, env={}) as fleet:
        report = await fleet.apply(state, nodes=["a", "b"])
        with pytest.raises(InvalidInputError, match="state: no chosen node declares"):
            await fleet.apply(nodes=["b", "c"])
        with pytest.raises(InvalidInputError, match="state: must be a DesiredState"):
            await fleet.apply(M4096)  # type: ignore[arg-type]
    assert report.ok and report.states == {"a": state, "b": state} and report.unmanaged == ()
    assert [(s.loaded, s.loaded_embedding) for s in nodes.servers.values()] == [
        (None, "e"),
        (None, "e"),
        (None, None),
        (None, None),
    ]


async def test_a_node_that_does_not_converge_fails_with_state_mismatch(nodes: Nodes) -> None:
    # A stale answer (a cache in front of "b") keeps showing another embedding
    # model after the load: the node still differs, so it fails; "a" converges.
    stale = {"id": "e2", "object": "model", "created": 0, "owned_by": "tabbyAPI"}

    def arm(_plans: object) -> None:
        nodes.servers["b"].faults.fail_next(
            2, status=200, body=json.dumps(stale).encode(), path="/v1/model/embedding", method="GET"
        )

    async with nodes.fleet(["a", "b"]) as fleet:
        report = await fleet.apply(DesiredState(embedding=E), on_plan=arm)
    assert report.results is not None
    assert report.results["a"].unwrap().changed
    err = report.results["b"].error
    assert isinstance(err, StateMismatchError)
    assert [p.part for p in err.result.mismatches] == ["embedding"]
    assert list(report.mismatched) == ["b"] and not report.ok
    assert "1 failed (1 ensure_mismatch)" in report.summary()


async def test_a_bad_timeout_is_refused_before_any_node_is_read(nodes: Nodes) -> None:
    async with nodes.fleet() as fleet:
        with pytest.raises(InvalidInputError, match="timeout"):
            await fleet.apply(STATE, timeout=-1)
    assert all(s.requests == [] for s in nodes.servers.values())


# --- rollout with a DesiredState ----------------------------------------------------------


async def test_rollout_of_a_state_batches_checks_and_halts(nodes: Nodes) -> None:
    servers = nodes.servers
    servers["a"].preload("m", max_seq_len=4096)
    servers["a"].faults.fail_next(1, status=400, detail="boom", path="/v1/model/embedding/load")
    async with nodes.fleet() as fleet:
        first = await fleet.rollout(STATE, batch_size=2)
        assert isinstance(first, RolloutReport)
        assert first.halted and first.batches == (("a", "b"),)
        assert list(first.failed) == ["a"] and first.done == ["b"]
        assert first.not_touched == ["c", "d"]
        assert "rollout of model m, embedding e halted after 1 batch" in first.summary()

        second = await fleet.rollout(STATE, batch_size=2)  # a re-run resumes
        assert second.ok and not second.halted
        assert isinstance(second.results["b"].unwrap(), StateResult)
        assert not second.results["b"].unwrap().changed  # done before: left alone
        assert [p.part for p in second.results["a"].unwrap().done] == ["embedding"]
        assert [p.part for p in second.results["c"].unwrap().done] == ["model", "embedding"]
        nodes.reset()
        third = await fleet.rollout(STATE, batch_size=4)
        assert third.ok
    assert nodes.posts() == 0  # the third rollout found every node right


async def test_rollout_of_a_state_checks_health_and_takes_a_custom_check(nodes: Nodes) -> None:
    checked: list[tuple[str, DesiredState]] = []

    def fails_during_its_load(node: str, event: object) -> None:
        # An issue recorded during the node's step fails the check; one from
        # before the rollout would only be logged (the server keeps serving).
        if node == "b":
            nodes.servers["b"].add_health_issue("ECC errors")

    async def canary(name: str, client: Any, state: DesiredState) -> None:
        checked.append((name, state))
        if name == "c":
            raise VerificationError(f"{name}: canary answers look wrong")

    state = DesiredState(model=ModelLoadRequest(model_name="n"))
    async with nodes.fleet() as fleet:
        report = await fleet.rollout(
            state, batch_size=4, max_failures=4, on_progress=fails_during_its_load
        )
        assert isinstance(report.failed["b"], VerificationError)
        assert "ECC errors" in str(report.failed["b"])
        custom = await fleet.rollout(state, batch_size=4, max_failures=4, check=canary)
        with pytest.raises(InvalidInputError, match="verify"):
            await fleet.rollout(state, verify=False)
        with pytest.raises(InvalidInputError, match="max_seq_len"):
            await fleet.rollout(state, max_seq_len=4096)  # type: ignore[call-overload]
    assert list(custom.failed) == ["c"]
    assert sorted(checked) == [(n, state) for n in NAMES]


async def test_rollout_of_a_state_fails_a_node_whose_load_fails(nodes: Nodes) -> None:
    state = DesiredState(model=ModelLoadRequest(model_name="bad"))
    async with nodes.fleet() as fleet:
        report = await fleet.rollout(state, batch_size=1, max_failures=1)
    assert report.halted and report.batches == (("a",), ("b",))
    assert {r.status for r in report.results if r.node in "ab"} == {"load_failed"}
    assert report.not_touched == ["c", "d"]


# --- the generic fan-out ------------------------------------------------------------------


async def test_ensure_through_the_generic_run(nodes: Nodes) -> None:
    async with nodes.fleet() as fleet:
        plans = await fleet.run(lambda _node, client: client.apply(STATE, dry_run=True))
        assert {r.unwrap().plan.summary() for r in plans} == {"model: load; embedding: load"}
        applied = await fleet.run(lambda _node, client: client.apply(STATE), nodes=["a", "b"])
        assert [r.unwrap().changed for r in applied] == [True, True]
        nodes.reset()
        again = await fleet.run(lambda _node, client: client.apply(STATE), nodes=["a", "b"])
        assert [r.unwrap().changed for r in again] == [False, False]
    assert nodes.posts() == 0


# --- template and sampler preset ----------------------------------------------------------

FULL = DesiredState(
    model=ModelLoadRequest(model_name="m"), template="chatml", sampling_preset="fast"
)
FULL_TOML = '[desired]\nmodel = "m"\ntemplate = "chatml"\nsampling_preset = "fast"'


async def test_ensure_switches_template_and_preset_only_where_they_differ(nodes: Nodes) -> None:
    servers = nodes.servers
    servers["a"].preload("m", prompt_template="alpaca")  # the model right, another template
    servers["c"].preload("m", prompt_template="chatml")  # right, and its preset set below
    # d had the preset, then its overrides were cleared: the server still
    # names "fast" as selected, but nothing is in force.
    async with nodes.fleet(["c", "d"]) as fleet:
        await fleet.run(lambda _n, client: client.sampling.switch(preset="fast"))
        await fleet.run(lambda _n, client: client.sampling.unload(), nodes=["d"])
    assert servers["d"].sampler_overrides == ("fast", {})
    nodes.reset()
    async with TabbyFleet.from_toml(nodes.file(FULL_TOML), env={}) as fleet:
        report = await fleet.apply()
    assert report.ok, report.summary()
    plans = {r.node: r.unwrap().summary() for r in report.plans}
    assert plans == {
        "a": "model: none; template: switch; sampling: switch",
        "b": "model: load; template: switch; sampling: switch",
        "c": "model: none; template: none; sampling: none",
        "d": "model: load; template: switch; sampling: switch",
    }
    assert report.changed == ["a", "b", "d"]
    for server in servers.values():
        assert (server.loaded, server.template, server.sampler_overrides[0]) == (
            "m",
            "chatml",
            "fast",
        )
        assert server.sampler_overrides[1]  # the preset's overrides are in force
    assert nodes.posts(["c"]) == 0
    assert servers["a"].count("POST", "/v1/model/load") == 0
    # Whether the overrides in force are still the preset's cannot be read back.
    assert any(u.startswith("sampling_preset") for u in report.unchecked)

    nodes.reset()
    async with TabbyFleet.from_toml(nodes.file(FULL_TOML), env={}) as fleet:
        again = await fleet.apply()
        rolled = await fleet.rollout(FULL, batch_size=2)  # the default check passes
    assert again.ok and again.changed == [] and rolled.ok
    assert nodes.posts() == 0


async def test_a_model_load_replaces_the_template_so_it_is_switched_after(nodes: Nodes) -> None:
    nodes.servers["a"].preload("n", prompt_template="chatml")
    state = DesiredState(model=ModelLoadRequest(model_name="m"), template="chatml")
    async with nodes.fleet(["a"]) as fleet:
        report = await fleet.apply(state)
    assert report.results is not None
    done = report.results["a"].unwrap().done
    assert [(p.part, p.action) for p in done] == [("model", "load"), ("template", "switch")]
    assert (nodes.servers["a"].loaded, nodes.servers["a"].template) == ("m", "chatml")
    assert nodes.servers["a"].count("POST", "/v1/template/switch") == 1
