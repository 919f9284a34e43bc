"""``tabby-async fleet ...`` end to end: ``main([...])`` in a worker thread (its own
event loop) against emulators serving from the test's loop."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tabby_async import (
    AuthenticationError,
    DesiredState,
    ModelLoadRequest,
    StatePlan,
    StateResult,
    TabbyConnectionError,
    TabbyError,
    cli,
)
from tabby_async.cli._fleet_output import (
    PROBLEMS_LIMIT,
    STATUS_COLUMNS,
    fleet_table,
    results_json,
    state_plan_text,
    state_row,
    table_rows,
)
from tabby_async.cli._output import json_text
from tabby_async.desired import FieldDiff, ModelPlan, PartPlan
from tabby_async.fleet import FleetResult, NodeResult, NodeStatus
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.types import HealthIssue, HealthResponse, ModelCard, ModelCardParameters


def closed_port() -> int:
    """A local port nothing listens on: bound once, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Result(msgspec.Struct):
    code: int
    out: str
    err: str


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out, err = capsys.readouterr()
    return Result(code, out, err)


@dataclass
class Nodes:
    path: str
    servers: dict[str, TabbyEmulator]

    def secrets(self) -> list[str]:
        return [k for s in self.servers.values() for k in (s.api_key, s.admin_key)]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TABBY_URL", "TABBY_API_KEY", "TABBY_ADMIN_KEY", "TABBY_FLEET_NODES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Nodes]:
    """Five good nodes (keys from env vars) and a file to name them; plus writers for bad ones."""
    servers: dict[str, TabbyEmulator] = {}
    lines = ["[fleet]", "max_concurrency = 4", ""]
    try:
        for i in range(5):
            name = f"n{i}"
            server = TabbyEmulator(
                models=[
                    EmulatedModel("m", modules=3),
                    EmulatedModel("bad", modules=3, fail_at=2, fail_message="CUDA OOM"),
                ],
                drafts=["d"],
                ping_interval=0,
            )
            await server.start()
            servers[name] = server
            monkeypatch.setenv(f"N{i}_ADMIN", server.admin_key)
            lines += ["[[nodes]]", f'name = "{name}"', f'url = "{server.url}"']
            lines += [f'admin_key_env = "N{i}_ADMIN"', ""]
        path = tmp_path / "nodes.toml"
        path.write_text("\n".join(lines))
        yield Nodes(str(path), servers)
    finally:
        for server in servers.values():
            await server.close()


def nodes_file(nodes: Nodes, name: str, *, head: str = "", tail: str = "") -> str:
    """The fixture's nodes file as ``name``, with ``head`` before it and ``tail`` after."""
    path = Path(nodes.path).with_name(name)
    path.write_text(f"{head}\n{Path(nodes.path).read_text()}\n{tail}")
    return str(path)


def down_node() -> str:
    """A ``[[nodes]]`` table of a node that is down."""
    return f'[[nodes]]\nname = "down"\nurl = "http://127.0.0.1:{closed_port()}"\n'


def with_down_node(nodes: Nodes) -> str:
    return nodes_file(nodes, "with-down.toml", tail=down_node())


async def test_status_table_and_exit_codes(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes.servers["n2"].preload("m", max_seq_len=2048)
    result = await run(capsys, "fleet", "status", "--nodes", nodes.path)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == [
        "node",
        "result",
        "time",
        "health",
        "permission",
        "model",
        "ctx",
        "embedding",
        "problems",
    ]
    n2 = next(line for line in lines if line.startswith("n2 "))
    assert n2.split()[3:7] == ["healthy", "admin", "m", "2048"]
    assert "5 nodes: 5 ok, 0 unreachable, 0 with problems" in result.out
    assert not any(key in result.out + result.err for key in nodes.secrets())

    down = await run(capsys, "fleet", "status", "--nodes", with_down_node(nodes))
    assert down.code == 1
    assert "6 nodes: 5 ok, 1 unreachable" in down.out


async def test_status_json_and_nodes_from_the_environment(
    nodes: Nodes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TABBY_FLEET_NODES", nodes.path)
    result = await run(capsys, "fleet", "status", "--json", "--only", "n0,n1")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["operation"] == "status"
    assert [n["node"] for n in document["nodes"]] == ["n0", "n1"]
    assert document["nodes"][0]["value"]["health"]["status"] == "healthy"
    assert document["nodes"][0]["error"] is None


async def test_load_reports_each_node_and_fails_when_one_fails(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "fleet", "load", "--nodes", nodes.path, "m", "--max-seq-len", "2048")
    assert result.code == 0, result.err
    progress = [line for line in result.out.splitlines() if line.startswith("[")]
    assert len(progress) == 5 and all(" ok " in line for line in progress)
    assert "load: 5 nodes: 5 ok" in result.out
    assert all(s.loaded == "m" for s in nodes.servers.values())

    failing = await run(capsys, "fleet", "load", "--nodes", nodes.path, "bad", "--json")
    assert failing.code == 1
    document = json.loads(failing.out)
    assert {n["status"] for n in document["nodes"]} == {"load_failed"}
    assert document["nodes"][0]["error"] == {"code": "load_failed", "message": "CUDA OOM"}


async def test_a_load_of_the_loaded_model_warns_naming_the_node_in_the_cli_words(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes.servers["n1"].preload("m", max_seq_len=2048)
    result = await run(
        capsys,
        "fleet",
        "load",
        "--nodes",
        nodes.path,
        "--only",
        "n0,n1",
        "m",
        "--max-seq-len",
        "4096",
    )
    assert result.code == 0, result.out + result.err
    assert result.err.splitlines() == [
        "warning: n1: m was already loaded: the server ignored this load's parameters "
        "(unload first, or use `tabby-async fleet ensure`, which reloads when they differ)"
    ]


async def test_fleet_load_with_vision_warns_for_each_node_that_loaded_without_it(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    for server in nodes.servers.values():
        server.add_model(EmulatedModel("seeing", modules=2, vision_modules=1))
    blind = await run(
        capsys, "fleet", "load", "--nodes", nodes.path, "--only", "n0,n2", "m", "--vision"
    )
    assert blind.code == 0, blind.out + blind.err
    assert sorted(blind.err.splitlines()) == [
        f"warning: {node}: the server loaded 'm' without vision, though --vision was given "
        "(the model has no vision component)"
        for node in ("n0", "n2")
    ]
    seeing = await run(
        capsys, "fleet", "load", "--nodes", nodes.path, "--only", "n0", "seeing", "--vision"
    )
    assert (seeing.code, seeing.err) == (0, "")


async def test_control_characters_in_model_names_never_reach_the_terminal(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = "evil\x1b]52;c;aGk=\x07\x1b[2J\x7f"
    for server in nodes.servers.values():
        server.add_model(EmulatedModel(evil, modules=2))
    outputs = [
        await run(capsys, "fleet", "load", "--nodes", nodes.path, "--only", "n0,n1", evil),
        await run(capsys, "fleet", "status", "--nodes", nodes.path, "--only", "n0,n1"),
        await run(capsys, "fleet", "ensure", "--nodes", nodes.path, "--only", "n0", evil),
    ]
    assert nodes.servers["n0"].loaded == evil
    for shown in outputs[1:]:  # the status table and the ensure plan name the model
        assert "evil\\x1b]52;c;aGk=\\x07\\x1b[2J\\x7f" in shown.out
    for result in outputs:
        assert result.code == 0, result.out + result.err
        assert not any(c in result.out + result.err for c in "\x1b\x07\x7f")
    document = json.loads(
        (await run(capsys, "fleet", "status", "--nodes", nodes.path, "--json")).out
    )
    assert {n["value"]["model"]["id"] for n in document["nodes"] if n["value"]["model"]} == {evil}


async def test_ensure_prints_the_plan_then_acts(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes.servers["n0"].preload("m", max_seq_len=4096)
    nodes.servers["n1"].preload("m", max_seq_len=2048)
    dry = await run(
        capsys, "fleet", "ensure", "--nodes", nodes.path, "m", "--max-seq-len", "4096", "--dry-run"
    )
    assert dry.code == 0, dry.err
    assert "plan: 3 load, 1 none, 1 reload" in dry.out
    assert "max_seq_len: wanted 4096, loaded 2048" in dry.out
    assert "plan (dry run): 3 load, 1 none, 1 reload" in dry.out
    assert all(s.count("POST", "/v1/model/load") == 0 for s in nodes.servers.values())

    result = await run(
        capsys, "fleet", "ensure", "--nodes", nodes.path, "m", "--max-seq-len", "4096"
    )
    assert result.code == 0, result.err
    assert nodes.servers["n0"].count("POST", "/v1/model/load") == 0
    assert nodes.servers["n1"].count("POST", "/v1/model/unload") == 1
    assert "ensure: 5 nodes: 5 ok" in result.out


# Fields the loaded card never reports back: before, each read as a difference
# after every load, so every ensure reloaded every node (an outage).
UNREPORTED = (
    "--draft-model",
    "d",
    "--rope-alpha",
    "2",
    "--prompt-template",
    "chatml.jinja",
    "--gpu-split",
    "20,24",
    "--backend",
    "exllamav3",
)
NOTE = (
    "note: not reported by the server, not compared: backend, gpu_split, rope_alpha, "
    "draft_model.draft_model_name"
)


def _posts(nodes: Nodes) -> int:
    return sum(1 for s in nodes.servers.values() for r in s.requests if r.method == "POST")


async def test_ensure_with_unreported_fields_converges_and_notes_them(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    first = await run(capsys, "fleet", "ensure", "--nodes", nodes.path, "m", *UNREPORTED)
    assert first.code == 0, first.out + first.err
    assert all(s.loaded == "m" and s.loaded_draft == "d" for s in nodes.servers.values())
    assert "ensure: 5 nodes: 5 ok" in first.out
    assert first.out.splitlines().count(NOTE) == 1
    for server in nodes.servers.values():
        server.reset_requests()

    for argv in (("--dry-run",), (), ("--json",)):
        again = await run(capsys, "fleet", "ensure", "--nodes", nodes.path, "m", *UNREPORTED, *argv)
        assert again.code == 0, again.out + again.err
        if argv == ("--json",):
            document = json.loads(again.out)
            assert {p["value"]["action"] for p in document["plans"]} == {"none"}
            assert document["unchecked"] == [
                "backend",
                "gpu_split",
                "rope_alpha",
                "draft_model.draft_model_name",
            ]
        else:
            assert "plan: 5 none" in again.out
            assert again.out.splitlines().count(NOTE) == 1
    assert _posts(nodes) == 0  # no load, no unload on any node

    rollout = await run(capsys, "fleet", "rollout", "--nodes", nodes.path, "m", *UNREPORTED)
    assert rollout.code == 0, rollout.out + rollout.err
    assert rollout.out.splitlines().count(NOTE) == 1
    assert "complete after 5 batches: 5 done, 0 failed" in rollout.out
    assert _posts(nodes) == 0


async def test_rollout_halts_and_lists_untouched_nodes(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    # n2 loads, then its /health is a proxy's 502 page: its check fails.
    nodes.servers["n2"].faults.fail_next(None, status=502, detail="Bad Gateway", path="/health")
    result = await run(
        capsys, "fleet", "rollout", "--nodes", nodes.path, "m", "--batch-size", "2", "--json"
    )
    assert result.code == 1
    document = json.loads(result.out)
    assert document["halted"] is True
    assert document["done"] == ["n0", "n1", "n3"]
    assert document["failed"] == ["n2"]
    assert document["not_touched"] == ["n4"]
    (skipped,) = [n for n in document["nodes"] if n["node"] == "n4"]
    assert skipped["error"]["message"].endswith("halted after 1 failure (max_failures=0)")
    assert nodes.servers["n4"].count("POST", "/v1/model/load") == 0

    plain = await run(
        capsys,
        "fleet",
        "rollout",
        "--nodes",
        nodes.path,
        "m",
        "--batch-size",
        "2",
        "--max-failures",
        "1",
    )
    assert plain.code == 1  # n2 still fails its check
    assert "batch 3: 1 ok, 0 failed" in plain.out
    assert "complete after 3 batches: 4 done, 1 failed, 0 not touched" in plain.out


async def test_usage_errors(
    nodes: Nodes, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = await run(capsys, "fleet", "status")
    assert missing.code == 2
    assert "--nodes" in missing.err
    bare = await run(capsys, "fleet")
    assert bare.code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[nodes]]\nurl = "http://h:1"\nadmin_key_env = "NOT_SET_ANYWHERE"\n')
    unset = await run(capsys, "fleet", "status", "--nodes", str(bad))
    assert unset.code == 2
    assert "nodes[0].admin_key_env: the environment variable it names is not set" in unset.err
    wrong = await run(capsys, "fleet", "rollout", "--nodes", nodes.path, "m", "--batch-size", "0")
    assert wrong.code == 2


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
async def test_ctrl_c_closes_every_stream_and_the_loads_go_on(nodes: Nodes) -> None:
    for server in nodes.servers.values():
        server.add_model(EmulatedModel("slow", modules=40, delay=0.05))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABBY_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tabby_async",
        "fleet",
        "load",
        "--nodes",
        nodes.path,
        "--concurrency",
        "5",
        "slow",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    servers = list(nodes.servers.values())
    for _ in range(400):  # until the loads run (a hang guard, not a timing check)
        if all(s.is_loading for s in servers):
            break
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130, out.decode()
    assert err.decode().strip().splitlines() == [
        "interrupted: stopped following the loads; nodes that had started one may still "
        "finish it (check with `tabby-async fleet status`)"
    ]
    # Closing the streams does not stop the loads: the servers finish them.
    for _ in range(400):
        if all(s.loaded == "slow" for s in servers):
            break
        await asyncio.sleep(0.02)
    assert all(s.loaded == "slow" for s in servers)


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
async def test_ctrl_c_during_a_rollout_says_which_nodes_changed(nodes: Nodes) -> None:
    servers = list(nodes.servers.values())
    for i, server in enumerate(servers):  # n0 and n1 load at once; n2 and n3 take long
        server.add_model(
            EmulatedModel("x", modules=40 if i >= 2 else 2, delay=0.05 if i >= 2 else 0)
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABBY_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tabby_async", "fleet", "rollout", "--nodes", nodes.path),
        *("x", "--batch-size", "2", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    for _ in range(400):  # until the second batch loads (a hang guard, not a timing check)
        if servers[2].is_loading and servers[3].is_loading:
            break
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip().splitlines() == [
        "the rollout was interrupted:",
        "  already changed: n0, n1",
        "  already as requested (not changed): -",
        "  failed: -",
        "  in progress (a load under way may still finish on its own): n2, n3",
        "  not touched: n4",
        "",
        "interrupted: stopped following the loads; nodes that had started one may still "
        "finish it (check with `tabby-async fleet status`)",
    ]
    error = json.loads(out)["error"]
    assert error["code"] == "interrupted"
    assert (error["changed"], error["in_progress"], error["not_touched"]) == (
        ["n0", "n1"],
        ["n2", "n3"],
        ["n4"],
    )
    assert servers[4].count("POST", "/v1/model/load") == 0


async def test_rollout_no_check_skips_the_check(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes.servers["n2"].add_health_issue("thermal throttling")
    result = await run(capsys, "fleet", "rollout", "--nodes", nodes.path, "m", "--no-check")
    assert result.code == 0, result.out + result.err
    assert "complete after 5 batches: 5 done, 0 failed" in result.out
    assert all(s.count("GET", "/health") == 0 for s in nodes.servers.values())
    gone = await run(capsys, "fleet", "rollout", "--nodes", nodes.path, "m", "--no-verify")
    assert gone.code == 2  # one name per meaning: the check is --no-check


# --- the fleet's tables, as data -------------------------------------------------------


def _status(**changes: Any) -> NodeStatus:
    base: dict[str, Any] = {
        "url": "http://10.0.0.1:5000/",
        "health": HealthResponse(status="healthy"),
        "permission": "admin",
        "model": None,
        "embedding_model": None,
        "latency": 0.01,
    }
    return NodeStatus(**{**base, **changes})


CARD = ModelCard(id="m", parameters=ModelCardParameters(max_seq_len=2048))
REQUEST = ModelLoadRequest(model_name="m", max_seq_len=4096)
PLAN = ModelPlan("reload", (FieldDiff("max_seq_len", 4096, 2048),), REQUEST, CARD)
SICK = HealthResponse(status="unhealthy", issues=[HealthIssue(description="hot")])
REFUSED = AuthenticationError("the key was refused", status=401)

TABLES: list[tuple[list[NodeResult[Any]], list[str], list[list[str]]]] = [
    (  # a status: its own columns; a refused probe is named with its code
        [
            NodeResult("a", _status(model=CARD), None, 0.5),
            NodeResult("b", _status(health=SICK, problems={"permission": REFUSED}), None, 1.0),
            NodeResult("c", None, TabbyConnectionError("connection refused"), 0.25),
        ],
        ["node", "result", "time", *STATUS_COLUMNS],
        [
            ["a", "ok", "0.50s", "healthy", "admin", "m", "2048", "-", ""],
            [
                "b",
                "ok",
                "1.00s",
                "unhealthy (1 issue), last: hot",
                "admin",
                "-",
                "-",
                "-",
                "permission: authentication_error",
            ],
            ["c", "connection_error", "0.25s", "-", "-", "-", "-", "-", "connection refused"],
        ],
    ),
    (  # a plan: action, what is loaded, why
        [NodeResult("a", PLAN, None, 0.0)],
        ["node", "result", "time", "action", "loaded", "why"],
        [["a", "ok", "0.00s", "reload", "m @2048", "max_seq_len: wanted 4096, loaded 2048"]],
    ),
    (  # anything else: one detail column; a long error is cut to one short cell
        [NodeResult("a", 3, None, 0.0), NodeResult("b", None, TabbyError("x\n" * 200), 0.0)],
        ["node", "result", "time", "detail"],
        [["a", "ok", "0.00s", "3"], ["b", "tabby_error", "0.00s", ("x " * 49) + "x…"]],
    ),
]


@pytest.mark.parametrize(("results", "header", "rows"), TABLES)
def test_fleet_tables(
    results: list[NodeResult[Any]], header: list[str], rows: list[list[str]]
) -> None:
    assert table_rows(results) == (header, rows)
    text = fleet_table(results).splitlines()
    assert text[0].split() == header
    assert set(text[1]) <= {"-", " "}
    assert len(text) == len(rows) + 2


def test_the_problems_cell_is_bounded_and_json_keeps_every_problem() -> None:
    refused = {f"probe-{i}": TabbyConnectionError("refused") for i in range(12)}
    result = NodeResult("a", _status(problems=refused), None, 0.1)
    problems = table_rows([result])[1][0][-1]
    assert len(problems) == PROBLEMS_LIMIT and problems.endswith("…")
    document = json.loads(json_text(results_json(FleetResult([result]))))
    assert len(document[0]["value"]["problems"]) == 12


async def test_counts_in_the_fleet_lines_are_singular_for_one(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await run(capsys, "fleet", "status", "--nodes", nodes.path, "--only", "n0")
    assert status.code == 0, status.out + status.err
    assert status.out.splitlines()[-1].startswith("1 node: 1 ok, 0 unreachable")
    load = await run(capsys, "fleet", "load", "--nodes", nodes.path, "--only", "n0", "m")
    assert "load: 1 node: 1 ok in " in load.out
    rollout = await run(capsys, "fleet", "rollout", "--nodes", nodes.path, "--only", "n1", "m")
    assert "complete after 1 batch: 1 done, 0 failed" in rollout.out


# --- fleet apply ----------------------------------------------------------------------

DESIRED = '[desired]\nmodel = { model_name = "m", max_seq_len = 4096 }\n'


def with_desired(nodes: Nodes, head: str = DESIRED, tail: str = "") -> str:
    """The fixture's nodes file with a ``[desired]`` table first."""
    return nodes_file(nodes, "desired.toml", head=head, tail=tail)


async def test_apply_prints_the_plan_then_acts_and_a_second_apply_writes_nothing(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes.servers["n1"].preload("m", max_seq_len=4096)
    nodes.servers["n2"].preload("m", max_seq_len=2048)
    path = with_desired(nodes)
    first = await run(capsys, "fleet", "apply", "--nodes", path)
    assert first.code == 0, first.out + first.err
    lines = first.out.splitlines()
    # The plan: a line per node, then one per part that changes.
    assert lines[lines.index("n0: 1 part to change") + 1] == "  model: load m (nothing loaded)"
    assert "n1: up to date (checked: model)" in lines
    assert lines[lines.index("n2: 1 part to change") + 1] == (
        "  model: reload m (max_seq_len: wanted 4096, loaded 2048)"
    )
    assert "apply: 5 nodes: 4 changed, 1 unchanged, 0 failed" in first.out
    table = next(line for line in lines if line.startswith("n2 "))
    assert table.split()[:2] == ["n2", "ok"] and "model reload" in table
    assert all(s.loaded == "m" for s in nodes.servers.values())
    assert nodes.servers["n1"].count("POST", "/v1/model/load") == 0
    assert not any(key in first.out + first.err for key in nodes.secrets())

    for server in nodes.servers.values():
        server.reset_requests()
    for argv in ((), ("--dry-run",), ("--json",)):
        again = await run(capsys, "fleet", "apply", "--nodes", path, *argv)
        assert again.code == 0, again.out + again.err
        if argv != ("--json",):
            assert again.out.count("up to date (checked: model)") == 5
    assert _posts(nodes) == 0


async def test_apply_dry_run_json_and_the_unchecked_note(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    head = '[desired]\nmodel = { model_name = "m", max_seq_len = 4096, gpu_split = [20.0] }\n'
    path = with_desired(nodes, head)
    dry = await run(capsys, "fleet", "apply", "--nodes", path, "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.count("  model: load m (nothing loaded)") == 5
    note = "note: not reported by the server, not compared: gpu_split"
    assert dry.out.splitlines().count(note) == 1
    assert "plan (dry run): 5 change; 0 failed" in dry.out

    as_json = await run(capsys, "fleet", "apply", "--nodes", path, "--dry-run", "--json")
    document = json.loads(as_json.out)
    assert document["operation"] == "apply" and document["dry_run"] is True
    assert document["results"] is None and document["unchecked"] == ["gpu_split"]
    parts = {p["value"]["parts"][0]["action"] for p in document["plans"]}
    assert parts == {"load"}
    assert _posts(nodes) == 0


async def test_apply_exits_1_when_a_node_fails_or_a_node_is_down(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    # n3's own desired model fails to load; n1 declares none (not managed).
    text = Path(nodes.path).read_text()  # noqa: ASYNC240 - a small file, before any request
    text = text.replace('name = "n3"', 'name = "n3"\ndesired.model = "bad"')
    text = text.replace('name = "n1"', 'name = "n1"\ndesired.model = false')
    Path(nodes.path).write_text(text)  # noqa: ASYNC240
    path = with_desired(nodes)
    result = await run(capsys, "fleet", "apply", "--nodes", path, "--json")
    assert result.code == 1
    document = json.loads(result.out)
    statuses = {n["node"]: n["status"] for n in document["results"]}
    assert statuses == {"n0": "ok", "n2": "ok", "n3": "load_failed", "n4": "ok"}
    assert document["not_managed"] == ["n1"]
    assert nodes.servers["n1"].requests == []

    only = await run(capsys, "fleet", "apply", "--nodes", path, "--only", "n0,n1", "--dry-run")
    assert only.code == 0, only.err
    assert only.out.splitlines()[:2] == [
        "n0: up to date (checked: model)",
        "not managed (no desired state declared): n1",
    ]
    assert "n3" not in only.out and "not managed: n1" in only.out

    plain = await run(capsys, "fleet", "apply", "--nodes", with_desired(nodes, tail=down_node()))
    assert plain.code == 1
    assert "down: cannot plan: connection_error:" in plain.out
    assert "not managed (no desired state declared): n1" in plain.out
    assert "; not managed: n1" in plain.out


async def test_apply_without_a_declared_state_is_a_usage_error(
    nodes: Nodes, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = await run(capsys, "fleet", "apply", "--nodes", nodes.path)
    assert result.code == 2
    assert result.err.splitlines() == [
        "error: no chosen node declares a desired state: declare it in the nodes file "
        "([desired], or desired in a node's table)"
    ]
    assert _posts(nodes) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[desired]\nmodel = { max_seq_len = 4096 }\n[[nodes]]\nurl = "http://h:1"\n')
    refused = await run(capsys, "fleet", "apply", "--nodes", str(bad))
    assert refused.code == 2
    assert "desired.model.model_name: is required" in refused.err


def _plan(*parts: PartPlan) -> StatePlan:
    return StatePlan(DesiredState(template="t"), parts)


CHATML = PartPlan("template", "switch", "chatml", "alpaca", "'alpaca' in use")
PRESET = PartPlan(
    "sampling", "none", "fast", "fast", "loaded, overrides in force", ("sampling_preset (why)",)
)


@pytest.mark.parametrize(
    ("results", "unmanaged", "text"),
    [
        (
            [NodeResult("a", _plan(PRESET))],
            (),
            "a: up to date (checked: sampling)\n"
            "note: not reported by the server, not compared: sampling_preset (why)",
        ),
        (
            [NodeResult("a", _plan(CHATML, PRESET)), NodeResult("b", None, TabbyError("boom"))],
            ("c", "d"),
            "a: 1 part to change\n  template: switch chatml ('alpaca' in use)\n"
            "b: cannot plan: tabby_error: boom\n"
            "not managed (no desired state declared): c, d\n"
            "note: not reported by the server, not compared: sampling_preset (why)",
        ),
        ([NodeResult("a", _plan())], (), "a: up to date (nothing managed)"),
    ],
)
def test_the_apply_plan_text(
    results: list[NodeResult[StatePlan]], unmanaged: tuple[str, ...], text: str
) -> None:
    assert state_plan_text(results, unmanaged) == text


def test_a_state_result_row() -> None:
    plan = _plan(CHATML)
    after = _plan(replace(CHATML, action="none", reason="in use"))
    assert state_row(StateResult(plan, (CHATML,), None, after)) == (
        "template switch",
        "up to date",
    )
    assert state_row(StateResult(after, after=after)) == ("nothing to do", "up to date")
    # A part that still differs says so; a dry run (no fresh look) has it still to change.
    assert state_row(StateResult(plan, (CHATML,), None, plan)) == (
        "template switch",
        "still differs: template switch",
    )
    assert state_row(StateResult(plan)) == ("nothing to do", "to change: template switch")
    header, _ = table_rows([NodeResult("a", StateResult(plan, (CHATML,), None, after))])
    assert header == ["node", "result", "time", "done", "after"]


async def test_apply_switches_template_and_preset_and_notes_the_preset(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes.servers["n0"].preload("m", prompt_template="alpaca")
    head = '[desired]\nmodel = "m"\ntemplate = "chatml"\nsampling_preset = "precise"\n'
    path = with_desired(nodes, head)
    result = await run(capsys, "fleet", "apply", "--nodes", path)
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    n0 = lines.index("n0: 2 parts to change")
    assert lines[n0 + 1 : n0 + 3] == [
        "  template: switch chatml ('alpaca' in use)",
        "  sampling: switch precise (no preset loaded)",
    ]
    notes = [line for line in lines if line.startswith("note: ")]
    assert len(notes) == 1 and "sampling_preset" in notes[0]
    assert all(
        (s.template, s.sampler_overrides[0]) == ("chatml", "precise")
        for s in nodes.servers.values()
    )
    for server in nodes.servers.values():
        server.reset_requests()
    again = await run(capsys, "fleet", "apply", "--nodes", path)
    assert again.code == 0
    assert again.out.count("up to date (checked: model, template, sampling)") == 5
    assert _posts(nodes) == 0


def test_the_fleet_commands_are_built_with_the_common_command_helpers() -> None:
    # One way to declare a command: group() and leaf(), as every other group does.
    import tabby_async.cli.fleet as fleet_cli

    source = inspect.getsource(fleet_cli.register)
    assert "add_parser(" not in source and "add_subparsers(" not in source
    assert source.count("leaf(") == 5 and "group(" in source
