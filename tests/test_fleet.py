"""TabbyFleet against 24 emulated servers in this process, some of them faulty.

The fleet: 16 healthy nodes, 2 slow ones, 2 whose load fails mid-way, 2
reached with the wrong keys and 2 down (a closed port). No test asserts on
durations; the only timeouts are the ones under test.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tabby_async import (
    USE_CLIENT_DEFAULT,
    AsyncTabbyClient,
    ClientStateError,
    DraftModelLoadRequest,
    InvalidInputError,
    ModelLoadRequest,
    TabbyError,
    Timeout,
    TimeoutArg,
)
from tabby_async.cli._fleet_output import fleet_table
from tabby_async.fleet import (
    FleetError,
    FleetModelReport,
    FleetModels,
    FleetResult,
    NodeResult,
    NodeSkippedError,
    NodeSpec,
    NodeStatus,
    RolloutReport,
    TabbyFleet,
    VerificationError,
)
from tabby_async.fleet._pool import most_nodes_per_host
from tabby_async.fleet._runner import node_bound
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.types import ModelLoadResponse
from tests.helpers import ConnectionCounter

LOAD = "/v1/model/load"
MODEL = "/v1/model"

HEALTHY = [f"ok-{i:02d}" for i in range(16)]
SLOW = ["slow-0", "slow-1"]
FAILING = ["fail-0", "fail-1"]
WRONG_KEY = ["badkey-0", "badkey-1"]
DOWN = ["down-0", "down-1"]


def closed_port() -> int:
    """A local port nothing listens on: bound once, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Cluster:
    servers: dict[str, TabbyEmulator]
    specs: list[NodeSpec]
    extra: list[TabbyEmulator] = field(default_factory=list)

    def fleet(self, **options: Any) -> TabbyFleet:
        return TabbyFleet(self.specs, **options)

    def loads(self, name: str) -> int:
        return self.servers[name].count("POST", LOAD)


def models_for(name: str) -> list[str | EmulatedModel]:
    if name in SLOW:
        return [EmulatedModel("m", modules=4, delay=0.02), "n"]
    if name in FAILING:
        return [EmulatedModel("m", modules=4, fail_at=2, fail_message="CUDA out of memory"), "n"]
    return [EmulatedModel("m", modules=4), "n"]


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    servers: dict[str, TabbyEmulator] = {}
    specs: list[NodeSpec] = []
    try:
        for name in HEALTHY + SLOW + FAILING + WRONG_KEY:
            server = TabbyEmulator(
                models=models_for(name), drafts=["d"], embeddings=["e"], ping_interval=0
            )
            await server.start()
            servers[name] = server
            if name in WRONG_KEY:
                specs.append(NodeSpec(name, server.url, api_key="wrong", admin_key="wrong"))
            else:
                specs.append(NodeSpec(name, server.url, admin_key=server.admin_key))
        for name in DOWN:
            specs.append(NodeSpec(name, f"http://127.0.0.1:{closed_port()}"))
        yield Cluster(servers, specs)
    finally:
        for server in servers.values():
            await server.close()


def fleet_tasks() -> list[asyncio.Task[Any]]:
    """Live tasks running SDK or fleet code (the emulator's own tasks excluded)."""
    out = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if "tabby_async" in filename and "testing" not in filename:
            out.append(task)
    return out


# --- status ------------------------------------------------------------------------


@pytest.mark.parametrize("concurrent_probes", [False, True])
async def test_status_of_a_mixed_fleet(
    cluster: Cluster, concurrent_probes: bool, connections: ConnectionCounter
) -> None:
    async with cluster.fleet(node_timeout=20) as fleet:
        status = await fleet.status(concurrent_probes=concurrent_probes)
        assert status.nodes == fleet.nodes
        assert len(status) == 24
        for name in HEALTHY + SLOW + FAILING:
            node = status[name].unwrap()
            assert isinstance(node, NodeStatus)
            assert node.ok and node.healthy
            assert node.permission == "admin"
            assert node.model is None and node.embedding_model is None
        for name in DOWN:
            assert status[name].status == "connection_error"
        for name in WRONG_KEY:
            node = status[name].unwrap()
            assert node.healthy and not node.ok  # /health needs no key
            assert node.permission is None
            assert {p: e.code for p, e in node.problems.items()} == {
                "permission": "authentication_error",
                "model": "authentication_error",
                "embedding": "authentication_error",
            }
        table = fleet_table(status)
        assert all(name in table for name in fleet.nodes)
        for server in cluster.servers.values():
            assert server.admin_key not in table
            assert server.admin_key not in repr(status) + repr(fleet) + repr(cluster.specs)
        assert connections.held == 0


async def test_status_shows_the_loaded_model_and_its_context(cluster: Cluster) -> None:
    cluster.servers["ok-00"].preload("m", max_seq_len=2048)
    cluster.servers["ok-01"].add_health_issue("GPU 0 is too hot")
    async with cluster.fleet() as fleet:
        status = await fleet.status(nodes=["ok-00", "ok-01"])
        first = status["ok-00"].unwrap()
        assert first.model_name == "m" and first.max_seq_len == 2048
        second = status["ok-01"].unwrap()
        assert not second.healthy and not second.ok
        assert second.health is not None and second.health.status == "unhealthy"


# --- fan-out of models operations ---------------------------------------------------


async def test_load_on_24_nodes_keeps_failures_per_node(
    cluster: Cluster, connections: ConnectionCounter
) -> None:
    events: list[tuple[str, ModelLoadResponse]] = []
    seen: list[NodeResult[Any]] = []
    async with cluster.fleet(max_concurrency=8) as fleet:
        result = await fleet.models.load(
            model_name="m",
            max_seq_len=2048,
            on_progress=lambda node, event: events.append((node, event)),
            on_result=seen.append,
        )
        assert connections.held == 0
    assert result.counts() == {
        "ok": 18,
        "load_failed": 2,
        "permission_error": 2,
        "connection_error": 2,
    }
    assert sorted(r.node for r in seen) == sorted([*cluster.servers, *DOWN])
    for name in HEALTHY + SLOW:
        event = result[name].unwrap()
        assert event.done and event.modules == 4
        assert cluster.servers[name].loaded == "m"
    for name in FAILING:
        err = result.errors[name]
        assert err.code == "load_failed" and "CUDA out of memory" in str(err)
    assert {node for node, _ in events} == set(HEALTHY + SLOW + FAILING)
    assert set(result.values) == set(HEALTHY + SLOW)
    assert not result.ok
    with pytest.raises(FleetError, match="6 of 24 nodes failed") as caught:
        result.raise_for_errors()
    assert caught.value.result is result
    assert "load: 24 nodes: 2 connection_error, 2 load_failed, 18 ok" in result.summary()


async def test_a_subset_of_nodes_and_read_operations(cluster: Cluster) -> None:
    async with cluster.fleet() as fleet:
        listed = await fleet.models.list(nodes=["ok-03", "ok-04"])
        assert listed.nodes == ["ok-03", "ok-04"]
        assert all(sorted(r.unwrap().ids) == ["m", "n"] for r in listed)
        got = await fleet.models.get(nodes=["ok-03"])
        assert got["ok-03"].status == "model_not_loaded"
        health = await fleet.health(nodes=HEALTHY)
        assert health.ok
        perms = await fleet.permission(nodes=["ok-00", "badkey-0"])
        assert perms["ok-00"].unwrap().permission == "admin"
        assert perms["badkey-0"].status == "authentication_error"
        with pytest.raises(InvalidInputError, match="unknown node names: nope"):
            await fleet.models.list(nodes=["nope"])
        with pytest.raises(InvalidInputError, match="model_name"):
            await fleet.models.load(model_name="../escape")
    assert sum(s.count("GET", "/v1/model/list") for s in cluster.servers.values()) == 2


async def test_per_node_timeout(cluster: Cluster, connections: ConnectionCounter) -> None:
    cluster.servers["ok-05"].faults.delay_head(30.0, path="/v1/model")
    async with cluster.fleet() as fleet:
        result = await fleet.models.get(nodes=["ok-05", "ok-06"], timeout=0.3)
        assert result["ok-05"].status == "timeout"
        assert "timeout of 0.3 s" in str(result["ok-05"].error)  # the node's or its call's
        assert result["ok-06"].status == "model_not_loaded"
        assert connections.held == 0


# With a per-node bound (30 s), each node's operation runs under a timer in its
# worker's task: the fail_fast cancel must still cancel, not count as a timeout.
@pytest.mark.parametrize("timeout", [None, 30.0])
async def test_fail_fast_cancels_running_and_skips_the_rest(
    connections: ConnectionCounter, timeout: float | None
) -> None:
    async with (
        TabbyEmulator(models=[EmulatedModel("m", fail_at=0)]) as bad,
        TabbyEmulator(models=[EmulatedModel("m", modules=50, delay=0.2)]) as slow,
        TabbyEmulator(models=["m"]) as fine,
    ):
        specs = [
            NodeSpec(n, s.url, admin_key=s.admin_key) for n, s in (("slow", slow), ("bad", bad))
        ]
        specs += [NodeSpec(f"fine-{i}", fine.url, admin_key=fine.admin_key) for i in range(3)]
        async with TabbyFleet(specs, max_concurrency=2) as fleet:
            result = await fleet.models.load(model_name="m", fail_fast=True, timeout=timeout)
            assert [r.status for r in result] == [
                "cancelled",
                "load_failed",
                "skipped",
                "skipped",
                "skipped",
            ]
            assert isinstance(result["fine-0"].error, NodeSkippedError)
            assert connections.held == 0
            assert fleet_tasks() == []
        assert fine.count("POST", LOAD) == 0


async def test_one_worker_times_a_node_out_then_runs_the_next(cluster: Cluster) -> None:
    cluster.servers["ok-05"].faults.delay_head(30.0, path="/health")
    async with cluster.fleet(max_concurrency=1) as fleet:
        result = await fleet.health(nodes=["ok-05", "ok-06", "ok-07"], timeout=0.3)
        assert [r.status for r in result] == ["timeout", "ok", "ok"]
        assert fleet_tasks() == []


async def test_a_bug_in_an_operation_is_raised_after_the_others(cluster: Cluster) -> None:
    async def op(name: str, client: AsyncTabbyClient) -> str:
        if name == "ok-02":
            raise ValueError("a bug")
        return (await client.health()).status

    async with cluster.fleet(max_concurrency=4) as fleet:
        with pytest.raises(ValueError, match="a bug"):
            await fleet.run(op, nodes=HEALTHY)
        assert fleet_tasks() == []
    assert all(cluster.servers[n].count("GET", "/health") == 1 for n in HEALTHY if n != "ok-02")


async def test_cancelling_a_fleet_call_leaves_nothing_behind(
    cluster: Cluster, connections: ConnectionCounter
) -> None:
    for name in HEALTHY[:4]:
        cluster.servers[name].add_model(EmulatedModel("long", modules=100, delay=0.1))
    started = asyncio.Event()
    async with cluster.fleet() as fleet:
        task = asyncio.create_task(
            fleet.models.load(
                model_name="long", nodes=HEALTHY[:4], on_progress=lambda n, e: started.set()
            )
        )
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert connections.held == 0
        assert fleet_tasks() == []


# --- the merged load stream -------------------------------------------------------------


async def test_load_stream_merges_every_node(
    cluster: Cluster, connections: ConnectionCounter
) -> None:
    async with cluster.fleet(max_concurrency=6) as fleet:
        async with fleet.models.load_stream(model_name="m") as stream:
            assert stream.total == 24
            items = [item async for item in stream]
        assert connections.held == 0
    completions = [i for i in items if i.done]
    assert sorted(i.node for i in completions) == sorted(fleet.nodes)
    progress = [i.progress for i in items]
    assert progress == sorted(progress)
    assert progress[-1] == stream.progress == 1.0
    assert stream.completed == 24 and stream.failed == 6
    results = stream.results
    assert results.counts()["ok"] == 18
    for item in completions:
        assert item.result is results[item.node]
    for name in HEALTHY:
        node_events = [i.event for i in items if i.node == name and i.event is not None]
        assert [(e.module, e.status) for e in node_events] == [
            (1, "processing"),
            (2, "processing"),
            (3, "processing"),
            (4, "processing"),
            (4, "finished"),
        ]


async def test_leaving_the_load_stream_early_closes_every_stream(
    cluster: Cluster, connections: ConnectionCounter
) -> None:
    for name in HEALTHY[:6]:
        cluster.servers[name].add_model(EmulatedModel("long", modules=100, delay=0.05))
    async with cluster.fleet() as fleet:
        async with fleet.models.load_stream(model_name="long", nodes=HEALTHY[:6]) as stream:
            async for item in stream:
                assert item.event is not None
                break
        assert connections.held == 0
        assert fleet_tasks() == []
        assert [i async for i in stream] == []  # closed: iteration is over
        with pytest.raises(TabbyError, match="not finished"):
            _ = stream.results


async def test_load_stream_without_a_block(cluster: Cluster) -> None:
    async with cluster.fleet() as fleet:
        stream = fleet.models.load_stream(model_name="n", nodes=HEALTHY[:3])
        nodes = {item.node async for item in stream if item.done}
        assert nodes == set(HEALTHY[:3])
        assert stream.results.ok
        await stream.aclose()
        assert fleet_tasks() == []


# --- desired state -------------------------------------------------------------------------


async def test_ensure_loaded_plans_then_acts(cluster: Cluster) -> None:
    servers = cluster.servers
    servers["ok-00"].preload("m", max_seq_len=4096)  # already right
    servers["ok-01"].preload("m", max_seq_len=2048)  # wrong context
    servers["ok-02"].preload("n")  # another model
    nodes = ["ok-00", "ok-01", "ok-02", "ok-03", "fail-0", "down-0"]
    for name in nodes[:5]:
        servers[name].reset_requests()
    async with cluster.fleet() as fleet:
        dry = await fleet.models.ensure_loaded(
            model_name="m", max_seq_len=4096, dry_run=True, nodes=nodes
        )
        assert dry.results is None
        assert sum(servers[n].count("POST", LOAD) for n in nodes[:5]) == 0
        assert "dry run" in dry.summary()

        planned: list[FleetResult[Any]] = []
        report = await fleet.models.ensure_loaded(
            ModelLoadRequest(model_name="m", max_seq_len=4096), nodes=nodes, on_plan=planned.append
        )
    assert planned == [report.plans]
    actions = {r.node: r.value.action for r in report.plans.succeeded if r.value is not None}
    assert actions == {
        "ok-00": "none",
        "ok-01": "reload",
        "ok-02": "load",
        "ok-03": "load",
        "fail-0": "load",
    }
    results = report.results
    assert results is not None
    assert results["ok-00"].unwrap().action == "none"
    assert results["ok-01"].unwrap().action == "reload"
    assert results["ok-02"].unwrap().action == "load"
    assert results["fail-0"].status == "load_failed"
    assert results["down-0"].status == "connection_error"
    assert servers["ok-00"].count("POST", LOAD) == 0
    assert servers["ok-01"].count("POST", "/v1/model/unload") == 1
    assert not report.ok
    assert "max_seq_len: wanted 4096, loaded 2048" in results["ok-01"].unwrap().summary()


# The card never reports these back: before, each read as a difference after
# every load, so every ensure or rollout reloaded every node (an outage).
UNREPORTED = ModelLoadRequest(
    model_name="m",
    max_seq_len=2048,
    draft_model=DraftModelLoadRequest(draft_model_name="d", draft_rope_alpha=2.0),
    rope_alpha=2.0,
    prompt_template="chatml.jinja",
    gpu_split=[20.0, 24.0],
    backend="exllamav3",
)
UNCHECKED = (
    "backend",
    "gpu_split",
    "rope_alpha",
    "draft_model.draft_model_name",
    "draft_model.draft_rope_alpha",
)


def posts(cluster: Cluster, nodes: list[str]) -> int:
    """Every POST (load, unload, anything) the named nodes received."""
    return sum(1 for n in nodes for r in cluster.servers[n].requests if r.method == "POST")


async def test_ensure_and_rollout_converge_with_unreported_fields(cluster: Cluster) -> None:
    nodes = HEALTHY[:4]
    # The right model and template, without a draft: the card cannot tell.
    cluster.servers[nodes[0]].preload("m", max_seq_len=2048, prompt_template="chatml")
    async with cluster.fleet() as fleet:
        first = await fleet.models.ensure_loaded(UNREPORTED, nodes=nodes)
        assert first.ok, fleet_table(first.final)
        assert first.results is not None
        assert first.results[nodes[0]].unwrap().action == "none"  # the draft is not seen
        for name in nodes[1:]:
            result = first.results[name].unwrap()
            assert (result.action, result.draft_loaded) == ("load", True)
            assert cluster.servers[name].loaded_draft == "d"
        assert first.unchecked == UNCHECKED
        for name in nodes:
            cluster.servers[name].reset_requests()

        for _ in range(2):
            again = await fleet.models.ensure_loaded(UNREPORTED, nodes=nodes)
            assert again.ok
            assert again.results is not None
            assert {r.unwrap().action for r in again.results} == {"none"}
            assert again.unchecked == UNCHECKED
            dry = await fleet.models.ensure_loaded(UNREPORTED, nodes=nodes, dry_run=True)
            assert {r.unwrap().action for r in dry.plans} == {"none"}
            rollout = await fleet.rollout(UNREPORTED, nodes=nodes, batch_size=2)
            assert rollout.ok and rollout.done == nodes, fleet_table(rollout.results)
            assert {r.unwrap().action for r in rollout.results} == {"none"}
            assert rollout.unchecked == UNCHECKED
        assert posts(cluster, nodes) == 0  # no load, no unload


async def test_rollout_halts_when_failures_pass_the_threshold(cluster: Cluster) -> None:
    order = ["ok-00", "ok-01", "ok-02", "ok-03", "fail-0", "fail-1", "ok-04", "ok-05", "ok-06"]
    batches: list[int] = []
    async with cluster.fleet() as fleet:
        report = await fleet.rollout(
            model_name="m",
            max_seq_len=8192,
            nodes=order,
            batch_size=2,
            max_failures=1,
            on_batch=lambda index, result: batches.append(index),
        )
    assert report.halted
    assert batches == [0, 1, 2]
    assert report.batches == (("ok-00", "ok-01"), ("ok-02", "ok-03"), ("fail-0", "fail-1"))
    assert report.done == ["ok-00", "ok-01", "ok-02", "ok-03"]
    assert set(report.failed) == {"fail-0", "fail-1"}
    assert report.not_touched == ["ok-04", "ok-05", "ok-06"]
    for name in report.not_touched:
        assert cluster.servers[name].count("POST", LOAD) == 0
    assert "halted after 3 batches: 4 done, 2 failed, 3 not touched" in report.summary()
    assert {r.status for r in report.results if r.node in report.not_touched} == {"skipped"}


async def test_rollout_checks_each_batch_and_resumes(cluster: Cluster) -> None:
    order = HEALTHY[:5]
    failed: list[str] = []

    def fails_during_its_load(node: str, event: ModelLoadResponse) -> None:
        if node == "ok-01" and not failed:  # a new issue: the check fails the node
            failed.append(node)
            cluster.servers[node].add_health_issue("ECC errors")

    async with cluster.fleet() as fleet:
        first = await fleet.rollout(
            model_name="m", nodes=order, batch_size=2, on_progress=fails_during_its_load
        )
        assert first.halted
        assert isinstance(first.failed["ok-01"], VerificationError)
        assert "ECC errors" in str(first.failed["ok-01"])
        assert first.done == ["ok-00"]
        assert first.not_touched == ["ok-02", "ok-03", "ok-04"]

        cluster.servers["ok-01"].clear_health_issues()
        second = await fleet.rollout(model_name="m", nodes=order, batch_size=2)
        assert second.ok and not second.halted
        assert second.results["ok-00"].unwrap().action == "none"  # done before: left alone
        assert second.results["ok-02"].unwrap().action == "load"

        checked: list[str] = []

        async def canary(name: str, client: AsyncTabbyClient, request: ModelLoadRequest) -> None:
            checked.append(name)
            if name == "ok-03":
                raise VerificationError(f"{name}: canary answers look wrong")

        third = await fleet.rollout(
            model_name="m", nodes=order, batch_size=5, check=canary, max_failures=3
        )
        assert sorted(checked) == sorted(order)
        assert list(third.failed) == ["ok-03"]
        assert not third.halted


async def test_rollout_checks_its_arguments(cluster: Cluster) -> None:
    async with cluster.fleet() as fleet:
        with pytest.raises(InvalidInputError, match="batch_size"):
            await fleet.rollout(model_name="m", batch_size=0)
        with pytest.raises(InvalidInputError, match="max_failures"):
            await fleet.rollout(model_name="m", max_failures=-1)


# --- building fleets --------------------------------------------------------------------


async def test_fleet_made_clients_share_one_pool(cluster: Cluster) -> None:
    fleet = cluster.fleet(max_concurrency=10, limit_per_host=3, connection_limit=50)
    assert fleet.session is None  # nothing is built outside the loop's use
    async with fleet:
        session = fleet.session
        assert session is not None
        assert session.connector is not None
        assert session.connector.limit == 50 and session.connector.limit_per_host == 3
        clients = fleet.clients
        assert list(clients) == fleet.nodes
        assert all(c._sessions._control is session for c in clients.values())
    assert session.closed
    assert all(c.closed for c in clients.values())
    assert fleet.closed


class PrefixProxy:
    """One aiohttp server with a path prefix per node (``/n0``, ``/n1``, ...), like a proxy.

    Each load stream is held open until :attr:`release` is set, so the most
    loads running at once is what the server observed, not a matter of timing.
    """

    FRAME = b'data: {"model_type":"model","module":%d,"modules":2,"status":"%s"}\r\n\r\n'

    def __init__(self, nodes: int) -> None:
        self.nodes = nodes
        self.running = 0
        self.most = 0
        self.all_running = asyncio.Event()
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{node}/v1/model/load", self.load)
        app.router.add_get("/{node}/health", self.health)
        self.runner = web.AppRunner(app)
        self.url = ""

    async def __aenter__(self) -> PrefixProxy:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.runner.cleanup()

    async def load(self, request: web.Request) -> web.StreamResponse:
        self.running += 1
        self.most = max(self.most, self.running)
        if self.running == self.nodes:
            self.all_running.set()
        try:
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            await response.write(self.FRAME % (1, b"processing"))
            await self.release.wait()
            await response.write(self.FRAME % (2, b"finished"))
            await response.write_eof()
            return response
        finally:
            self.running -= 1

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "issues": []})


async def test_nodes_behind_one_host_port_all_load_at_once() -> None:
    async with PrefixProxy(12) as proxy:
        specs = [NodeSpec(f"n{i}", f"{proxy.url}/n{i}", admin_key="k") for i in range(12)]
        assert most_nodes_per_host(specs) == 12
        async with TabbyFleet(specs, node_timeout=30) as fleet:
            assert fleet.session is not None and fleet.session.connector is not None
            assert fleet.session.connector.limit_per_host == 8 * 12
            loads = asyncio.create_task(fleet.models.load(model_name="m"))
            try:
                # Hang guard only: with the per-host bound of 8 the other four
                # loads waited for a connection, and this never happened.
                await asyncio.wait_for(proxy.all_running.wait(), 30)
            except TimeoutError:
                pytest.fail(f"at most {proxy.most} of 12 loads ran at once")
            health = await fleet.health()  # while every load holds a connection
            assert health.ok, health.summary()
            proxy.release.set()
            loaded = await asyncio.wait_for(loads, 30)
    assert loaded.ok, loaded.summary()
    assert proxy.most == 12


def test_the_per_host_bound_counts_nodes_per_host_port() -> None:
    specs = [
        NodeSpec("a", "http://proxy:8080/a"),
        NodeSpec("b", "http://proxy:8080/b/"),
        NodeSpec("c", "http://PROXY:8080/c"),
        NodeSpec("d", "http://proxy:8081/d"),
        NodeSpec("e", "https://proxy:8080/e"),
        NodeSpec("f", "http://other"),
    ]
    assert most_nodes_per_host(specs) == 3
    assert most_nodes_per_host(specs[3:]) == 1


async def test_fleet_from_clients_leaves_them_open(cluster: Cluster) -> None:
    server = cluster.servers["ok-07"]
    async with AsyncTabbyClient(server.url, api_key=server.api_key) as client:
        async with TabbyFleet({"mine": client}) as fleet:
            assert (await fleet.health())["mine"].ok
        assert not client.closed
        async with TabbyFleet([client]) as fleet:
            assert fleet.nodes == [str(client.base_url)]
        assert not client.closed


def test_fleet_arguments_are_checked() -> None:
    spec = NodeSpec("a", "http://127.0.0.1:5000", api_key="k", admin_key="s3cret")
    assert "s3cret" not in repr(spec) and "admin_key=<set>" in repr(spec)
    with pytest.raises(InvalidInputError, match="two nodes"):
        TabbyFleet([spec, spec])
    with pytest.raises(InvalidInputError, match="at least one"):
        TabbyFleet([])
    with pytest.raises(InvalidInputError, match="max_concurrency"):
        TabbyFleet([spec], max_concurrency=0)
    with pytest.raises(InvalidInputError, match="base_url"):
        NodeSpec("b", "ftp://x")
    assert repr(TabbyFleet([spec])) == "TabbyFleet(1 nodes, max_concurrency=64)"
    with pytest.raises(InvalidInputError, match="admin_key"):
        NodeSpec("c", "http://127.0.0.1:5000", admin_key=" padded ")


async def test_a_bad_client_option_leaks_no_session() -> None:
    fleet = TabbyFleet([NodeSpec("a", "http://127.0.0.1:5000")], max_retries=-1)
    with pytest.raises(InvalidInputError, match="max_retries"):
        async with fleet:
            pass
    assert fleet.session is None


async def test_from_toml_with_keys_from_the_environment(cluster: Cluster, tmp_path: Path) -> None:
    a, b = cluster.servers["ok-08"], cluster.servers["ok-09"]
    path = tmp_path / "nodes.toml"
    path.write_text(
        f"""
[defaults]
api_key_env = "SHARED_API"

[fleet]
max_concurrency = 3
node_timeout = 12.5

[[nodes]]
name = "a"
url = "{a.url}"
admin_key_env = "A_ADMIN"

[[nodes]]
name = "b"
url = "{b.url}"
api_key = "{b.api_key}"         # overrides the default
admin_key = "{b.admin_key}"
"""
    )
    env = {"SHARED_API": a.api_key, "A_ADMIN": a.admin_key}
    async with TabbyFleet.from_toml(path, env=env, node_timeout=5.0) as fleet:
        assert fleet.nodes == ["a", "b"]
        assert fleet.max_concurrency == 3 and fleet.node_timeout == 5.0
        perms = await fleet.permission()
        # Both nodes have an admin key, which the SDK prefers on api routes.
        assert perms["a"].unwrap().permission == "admin"
        assert perms["b"].unwrap().permission == "admin"
        loaded = await fleet.models.load(model_name="n")
        assert loaded.ok  # a's admin key came from A_ADMIN

    with pytest.raises(InvalidInputError, match=r"nodes\[0\]\.admin_key_env: .* not set"):
        TabbyFleet.from_toml(path, env={"SHARED_API": "x"})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "needs \\[\\[nodes\\]\\]"),
        ('[[nodes]]\nname = "x"\n', "url: is required"),
        ('[[nodes]]\nurl = "http://h:1"\n[[nodes]]\nurl = "http://h:1"\n', "used by two"),
        ('[[nodes]]\nurl = "http://h:1"\ncolour = "red"\n', "unknown keys: colour"),
        ('[fleet]\nspeed = 3\n[[nodes]]\nurl = "http://h:1"\n', "not a fleet option"),
        ('[[nodes]]\nurl = "http://h:1"\napi_key = "a"\napi_key_env = "B"\n', "not both"),
        ("[[nodes]\n", "not valid TOML"),
    ],
)
def test_bad_nodes_files(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "nodes.toml"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=problem):
        TabbyFleet.from_toml(path, env={})


def test_nodes_as_named_tables(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    path.write_text('[nodes.gpu-01]\nurl = "http://10.0.0.1:5000"\napi_key_env = "K"\n')
    fleet = TabbyFleet.from_toml(path, env={"K": "key"})
    assert fleet.nodes == ["gpu-01"]
    with pytest.raises(InvalidInputError, match="cannot read"):
        TabbyFleet.from_toml(tmp_path / "missing.toml")


def test_fleet_result_helpers() -> None:
    err = TabbyError("boom")
    result: FleetResult[int] = FleetResult(
        [NodeResult("a", 1, None, 0.5), NodeResult("b", None, err, 1.25)],
        operation="count",
        elapsed=1.5,
    )
    assert len(result) == 2 and result[0].node == "a" and "b" in result
    assert result.values == {"a": 1}
    assert result.errors == {"b": err}
    assert result["a"].unwrap() == 1
    with pytest.raises(TabbyError, match="boom"):
        result["b"].unwrap()
    assert repr(result) == "FleetResult(count: 2 nodes, 1 ok, 1 failed, 1.50 s)"
    lines = fleet_table(result).splitlines()
    assert lines[0].split() == ["node", "result", "time", "detail"]
    assert lines[2].split() == ["a", "ok", "0.50s", "1"]
    assert lines[3].split() == ["b", "tabby_error", "1.25s", "boom"]


async def test_every_models_operation_fans_out(cluster: Cluster) -> None:
    two = ["ok-10", "ok-11"]
    for name in two:
        cluster.servers[name].preload("m", max_seq_len=1024)
    async with cluster.fleet() as fleet:
        props = await fleet.models.get_props(nodes=two)
        assert all(r.unwrap().default_generation_settings.n_ctx == 1024 for r in props)
        assert (await fleet.models.list_draft(nodes=two)).ok
        embeddings = await fleet.models.list_embedding(nodes=two)
        assert all(r.unwrap().ids == ["e"] for r in embeddings)
        loaded = await fleet.models.load_embedding(embedding_model_name="e", nodes=two)
        assert all(r.unwrap().done for r in loaded)
        assert all(r.unwrap().id == "e" for r in await fleet.models.get_embedding(nodes=two))
        assert (await fleet.models.unload_embedding(nodes=two)).ok
        plans = await fleet.models.plan_load(model_name="m", max_seq_len=1024, nodes=two)
        assert [r.unwrap().action for r in plans] == ["none", "none"]
        report = await fleet.models.ensure_loaded(model_name="m", nodes=two)
        assert report.ok
        unloaded = await fleet.models.unload(nodes=two)
        assert unloaded.ok and all(r.value is None for r in unloaded)
        gone = await fleet.models.download(repo_id="org/absent", nodes=two)
        assert {r.status for r in gone} == {"invalid_request"}
    assert all(cluster.servers[n].loaded is None for n in two)


# --- one meaning per parameter ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "default", "bound"),
    [
        (USE_CLIENT_DEFAULT, 60.0, 60.0),  # the fleet's default for the kind of operation
        (USE_CLIENT_DEFAULT, None, None),
        (None, 60.0, None),  # None is no bound, never "the default"
        (2, 60.0, 2.0),
        (0.5, None, 0.5),
        (Timeout(total=3.0, read=1.0), 60.0, 3.0),
        (Timeout(read=1.0), 60.0, None),
    ],
)
def test_each_timeout_value_bounds_a_node_so(
    value: TimeoutArg, default: float | None, bound: float | None
) -> None:
    assert node_bound(value, default) == bound


@pytest.mark.parametrize("bad", [..., 0, -1.5, "5", True, float("nan"), float("inf")])
def test_a_bad_timeout_is_refused_naming_it(bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="timeout"):
        node_bound(bad, 60.0)


async def test_the_ellipsis_is_no_longer_a_default(cluster: Cluster) -> None:
    server = cluster.servers["ok-12"]
    async with cluster.fleet() as fleet:
        with pytest.raises(InvalidInputError, match="timeout"):
            await fleet.models.get(nodes=["ok-12"], timeout=...)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="timeout"):
            await fleet.run(lambda _n, c: c.health(), timeout=...)  # type: ignore[arg-type]
    assert server.count("GET", "/v1/model") == server.count("GET", "/health") == 0


async def test_timeout_none_leaves_a_slow_node_uncut(cluster: Cluster) -> None:
    slow = cluster.servers["ok-12"]
    async with cluster.fleet(node_timeout=0.1) as fleet:
        slow.faults.delay_head(0.5, path="/v1/model")
        cut = await fleet.models.get(nodes=["ok-12"])
        assert cut["ok-12"].status == "timeout"  # the fleet's node_timeout
        slow.faults.delay_head(0.5, path="/v1/model")
        late = await fleet.models.get(nodes=["ok-12"], timeout=None)
        assert late["ok-12"].status == "model_not_loaded"  # the server's late answer
    # None reaches each node's call too: a client's own short default does not cut it.
    client = AsyncTabbyClient(slow.url, admin_key=slow.admin_key, timeout=0.1)
    async with client, TabbyFleet({"slow": client}, node_timeout=None) as fleet:
        slow.faults.delay_head(0.5, path=MODEL)
        assert (await fleet.models.get())["slow"].status == "timeout"  # the client's 0.1 s
        for given in (None, 30):
            slow.faults.delay_head(0.5, path=MODEL)
            answered = await fleet.models.get(timeout=given)
            assert answered["slow"].status == "model_not_loaded"


async def test_on_progress_gets_the_node_and_the_event(cluster: Cluster) -> None:
    nodes = ["ok-13", "ok-14"]
    seen: list[tuple[str, int, str]] = []

    async def later(node: str, event: ModelLoadResponse) -> None:
        await asyncio.sleep(0)  # a coroutine function is awaited, as on the client
        seen.append((node, event.module, event.status))

    def at_once(node: str, event: ModelLoadResponse) -> None:
        seen.append((node, event.module, event.status))

    expected = [(1, "processing"), (2, "processing"), (3, "processing"), (4, "processing")]
    expected.append((4, "finished"))
    async with cluster.fleet() as fleet:
        for run in (
            lambda: fleet.models.load(model_name="m", nodes=nodes, on_progress=later),
            lambda: fleet.models.ensure_loaded(model_name="n", nodes=nodes, on_progress=at_once),
            lambda: fleet.rollout(model_name="m", nodes=nodes, on_progress=at_once),
        ):
            seen.clear()
            outcome = await run()
            assert outcome.ok
            for node in nodes:
                events = [(module, status) for n, module, status in seen if n == node]
                assert events[-5:] == expected
            assert {n for n, _, _ in seen} == set(nodes)


async def test_rollout_check_and_verify_each_mean_one_thing(cluster: Cluster) -> None:
    servers = cluster.servers
    for name in ("ok-13", "ok-14"):
        servers[name].add_health_issue("fan failure")  # the check would fail these
    async with cluster.fleet() as fleet:
        # check=False: no health or model check after the batch; verify=False: no re-read.
        bare = await fleet.rollout(model_name="m", nodes=["ok-13"], check=False, verify=False)
        # check=False, verify=True: the one-server ensure reads the card again after loading.
        verified = await fleet.rollout(model_name="m", nodes=["ok-14"], check=False)
        # The default check, without verify: /health, then the card.
        checked = await fleet.rollout(model_name="m", nodes=["ok-15"], verify=False)
    assert bare.ok and bare.results["ok-13"].unwrap().card is None
    assert verified.ok and verified.results["ok-14"].unwrap().card is not None
    assert checked.ok and checked.results["ok-15"].unwrap().card is None
    names = ("ok-13", "ok-14", "ok-15")
    reads = {n: (servers[n].count("GET", "/health"), servers[n].count("GET", MODEL)) for n in names}
    assert reads == {"ok-13": (0, 1), "ok-14": (0, 2), "ok-15": (1, 2)}
    assert all(servers[n].loaded == "m" for n in names)


async def test_removed_constructor_options_are_refused(tmp_path: Path) -> None:
    spec = NodeSpec("a", "http://127.0.0.1:5000")
    for name in ("client_timeout", "stream_timeout"):
        removed: dict[str, Any] = {name: 5.0}
        with pytest.raises(TypeError, match=name):
            TabbyFleet([spec], **removed)
        path = tmp_path / f"{name}.toml"
        path.write_text(f'[fleet]\n{name} = 5.0\n[[nodes]]\nurl = "http://h:1"\n')
        with pytest.raises(InvalidInputError, match=f"fleet.{name}: was removed") as caught:
            TabbyFleet.from_toml(path, env={})
        assert caught.value.field == f"fleet.{name}"
        good = tmp_path / "good.toml"
        good.write_text('[[nodes]]\nurl = "http://h:1"\n')
        with pytest.raises(InvalidInputError, match=f"{name}: was removed"):
            TabbyFleet.from_toml(good, env={}, **removed)
        with pytest.raises(InvalidInputError, match="colour: is not a fleet option"):
            TabbyFleet.from_toml(good, env={}, colour=5)  # type: ignore[call-arg]


async def test_ensure_and_plan_live_on_fleet_models_only(cluster: Cluster) -> None:
    assert not hasattr(TabbyFleet, "ensure_loaded") and not hasattr(TabbyFleet, "plan_load")
    nodes = ["ok-10", "ok-11"]
    async with cluster.fleet() as fleet:
        plans = await fleet.models.plan_load(model_name="n", nodes=nodes)
        assert [r.unwrap().action for r in plans] == ["load", "load"]
        report = await fleet.models.ensure_loaded(model_name="n", nodes=nodes)
        assert report.ok and report.plans.nodes == nodes
        assert report.results is not None
        assert [r.unwrap().action for r in report.results] == ["load", "load"]
    assert all(cluster.servers[n].loaded == "n" for n in nodes)


async def test_run_is_the_generic_fan_out(cluster: Cluster) -> None:
    nodes = ["ok-02", "badkey-0", "down-0"]
    async with cluster.fleet() as fleet:
        health = await fleet.run(lambda _node, client: client.health(), nodes=nodes)
        perms = await fleet.run(lambda _node, client: client.permission(), nodes=nodes)
        lists = await fleet.run(
            lambda _node, client: client.models.list(), nodes=nodes, operation="list"
        )
        named = await fleet.run(lambda node, _client: asyncio.sleep(0, node), nodes=nodes)
        mirrored = await fleet.health(nodes=nodes)
    assert health.operation == "run" and lists.operation == "list"
    assert [r.status for r in health] == [r.status for r in mirrored]
    assert [r.status for r in health] == ["ok", "ok", "connection_error"]
    assert perms["ok-02"].unwrap().permission == "admin"
    assert perms["badkey-0"].status == "authentication_error"
    assert sorted(lists["ok-02"].unwrap().ids) == ["m", "n"]
    assert lists["badkey-0"].status == "authentication_error"
    assert named.values == {node: node for node in nodes}


def test_sdk_results_carry_data_not_tables() -> None:
    import tabby_async.fleet as fleet_package

    assert "format_table" not in fleet_package.__all__
    for cls in (NodeStatus, FleetResult, FleetModelReport, RolloutReport):
        assert not hasattr(cls, "format_table") and not hasattr(cls, "table_row")
        assert not hasattr(cls, "TABLE_COLUMNS")
        assert callable(cls.summary)


#: Every FleetModels method with what it needs to be called (a request's field).
FLEET_MODEL_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("list", {}),
    ("get", {}),
    ("get_props", {}),
    ("list_draft", {}),
    ("list_embedding", {}),
    ("get_embedding", {}),
    ("unload", {}),
    ("unload_embedding", {}),
    ("load", {"model_name": "m"}),
    ("load_embedding", {"embedding_model_name": "e"}),
    ("download", {"repo_id": "org/m"}),
    ("plan_load", {"model_name": "m"}),
    ("ensure_loaded", {"model_name": "m"}),
]


def test_the_closed_fleet_table_names_every_fleet_models_method() -> None:
    public = {n for n, v in vars(FleetModels).items() if callable(v) and not n.startswith("_")}
    assert public - {"load_stream"} == {name for name, _ in FLEET_MODEL_CALLS}


@pytest.mark.parametrize(
    ("method", "fields"), FLEET_MODEL_CALLS, ids=[m for m, _ in FLEET_MODEL_CALLS]
)
async def test_a_closed_fleet_raises_client_state_error_before_any_node_is_asked(
    method: str, fields: dict[str, Any]
) -> None:
    # What each method's Raises section says; the node's port is closed, so a
    # call that went out would come back as that node's connection error instead.
    fleet = TabbyFleet([NodeSpec("a", f"http://127.0.0.1:{closed_port()}")])
    async with fleet:
        pass
    with pytest.raises(ClientStateError, match="closed"):
        await getattr(fleet.models, method)(**fields)
    with pytest.raises(ClientStateError, match="closed"):
        fleet.models.load_stream(model_name="m")
