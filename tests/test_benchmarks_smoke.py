"""Smoke test of the benchmark runner: tiny sizes, one round, into a temp dir.

It checks that every client runs every scenario it belongs to and reports
positive figures. Nothing here is timed or compared: the numbers of a tiny run
on a shared machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

# The bench clients' stacks are in the test extra: import them, never skip.
import httpx
import httpx_sse
import msgspec
import ollama
import openai
import pydantic

import tabby_async

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "benchmarks" / "README.md"

FLOOR, HAND, HTTPX, OPENAI, OLLAMA, SDK, OTEL = (
    "aiohttp_raw",
    "aiohttp_msgspec",
    "httpx_pydantic",
    "openai",
    "ollama",
    "tabby_async",
    "tabby_async_otel",
)
EXPECTED: dict[str, tuple[str, ...]] = {
    "list_k3": (FLOOR, HAND, HTTPX, OPENAI, OLLAMA, SDK, OTEL),
    "list_k7": (FLOOR, HAND, HTTPX, OPENAI, OLLAMA, SDK, OTEL),
    "get": (FLOOR, HAND, HTTPX, SDK, OTEL),
    "get_props": (FLOOR, HAND, HTTPX, SDK),
    "load_stream": (FLOOR, HAND, HTTPX, SDK, OTEL),
    "open_streams": (FLOOR, HAND, HTTPX, SDK),
    "import": (FLOOR, HAND, SDK),
    "fleet_status": (FLOOR, HAND, SDK),
}
TINY = [
    "--rounds", "1",
    "--models", "3,7",
    "--calls", "3",
    "--calls-large", "2",
    "--concurrency", "2",
    "--streams", "2",
    "--stream-concurrency", "2",
    "--events", "5",
    "--open-streams", "4",
    "--import-reps", "1",
    "--fleet-nodes", "3",
    "--fleet-sweeps", "2",
    "--min-seconds", "0.02",
]  # fmt: skip


def test_the_bench_stacks_are_importable() -> None:
    for module in (httpx, httpx_sse, msgspec, ollama, openai, pydantic):
        assert module.__name__
    assert hasattr(tabby_async, "AsyncTabbyClient")


def test_runner_reports_every_client_and_scenario(tmp_path: Path) -> None:
    readme_before = README.read_bytes() if README.exists() else None
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            *TINY,
            "--out-dir",
            str(tmp_path),
            "--name",
            "smoke",
            "--no-readme",
            "--no-chart",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (README.read_bytes() if README.exists() else None) == readme_before
    assert not (tmp_path / "smoke.png").exists()

    doc: dict[str, Any] = json.loads((tmp_path / "smoke.json").read_text())
    assert doc["command"].startswith("python -m benchmarks")
    assert doc["machine"]["python"]
    assert doc["machine"]["packages"]["aiohttp"]
    assert doc["sizes"]["rounds"] == 1
    scenarios = doc["scenarios"]
    for scen, clients in EXPECTED.items():
        assert scen in scenarios, scen
        got = scenarios[scen]["clients"]
        assert set(got) == set(clients), (scen, sorted(got))
        for client in clients:
            data = got[client]
            assert "error" not in data, (scen, client, data.get("error"))
            assert len(data["rounds"]) == 1, (scen, client)
            summary = data["summary"]
            metrics = ("ms", "cpu_ms") if scen == "import" else ("throughput", "cpu")
            for metric in metrics:
                assert summary[metric] > 0, (scen, client, metric, summary)
            if scen != "import":
                assert summary["peak_rss_mib"] > 0, (scen, client)
            if scen == "open_streams":
                assert summary["kib"] is not None, (scen, client)
            elif scen != "import":
                # A full run splits each round over three fresh processes per client.
                (round_,) = data["rounds"]
                assert round_["processes"] == doc["sizes"]["workers"] == 3, (scen, client)
                assert round_["calls"] >= 2, (scen, client, round_)
                assert round_["units"] >= round_["calls"], (scen, client, round_)
            if client != FLOOR:
                ratios = summary[f"vs_{FLOOR}"]
                assert all(v is not None and v > 0 for v in ratios.values()), (scen, client)
    assert doc["sdk_source"]["measured"]
    targets = doc["targets"]
    # 14, the fleet status sweep, and the cost of the SDK's spans (list x2, get, load_stream),
    # as CPU (shown) and as exact bytecode counts (deciding)
    assert len(targets) == 23
    assert {row["scenario"] for row in doc["otel_cost"]["rows"]} == {
        "list_k3",
        "list_k7",
        "get",
        "load_stream",
    }
    for target in targets:
        assert target["value"] is not None, target
        shown = "CPU" in target["target"] and "opentelemetry" in target["target"]
        assert target["status"] in (("info",) if shown else ("pass", "fail")), target
        assert target["decisive"] is False, target  # one tiny round decides nothing


def test_otel_cost_counts_bytecodes_of_both_variants(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.otel_cost",
            "--calls",
            "1",
            "--events",
            "5",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr[-4000:]  # 1: a row over its limit
    doc: dict[str, Any] = json.loads((tmp_path / "otel_cost.json").read_text())
    rows = {row["scenario"]: row for row in doc["rows"]}
    assert set(rows) == {"list_k50", "list_k1000", "get", "load_stream"}
    for row in rows.values():
        assert row["absent"] > 0 and row["imported"] > 0, row
        assert row["ratio"] == row["imported"] / row["absent"]
        assert row["status"] == ("pass" if row["ratio"] <= row["limit"] else "fail")
    assert rows["load_stream"]["unit"] == "event" and rows["get"]["unit"] == "call"


def test_gateway_bench_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "gateway.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gateway_bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr[-4000:]  # 1: a target missed at tiny sizes
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["meta"]["command"] == "python -m benchmarks.gateway_bench --quick --out " + str(out)
    figures = [row["figure"] for row in doc["targets"]]
    for start in (
        "CPU per streamed event",
        "CPU per non-streamed request",
        "time to first byte p50",
        "time to first byte p99",
        "memory per open stream",
        "swap: ",
        "swap: a loaded model's requests never wait",
        "one gateway core",
    ):
        assert any(f.startswith(start) for f in figures), (start, figures)
    for row in doc["targets"]:
        assert row["value"] and row["figure"] in proc.stdout, row
        assert row["ok"] in ((None,) if row["target"] == "reported" else (True, False)), row
    for scenario in ("stream", "whole"):
        for path in ("direct", "proxy", "gateway"):
            assert doc[scenario][path] > 0, (scenario, path)  # CPU per unit, each its own process
    assert doc["memory"]["gateway"]["kib_per_stream"] is not None
    # Correctness is no ratio: even the tiny swap run answers every request, with its model.
    swap = doc["swap"]
    assert swap["requests"] == 30 and swap["failed"] == 0 and swap["wrong_model"] == 0, swap
    assert swap["swaps_total"] >= 1 and swap["queued"] >= 1, swap
    assert swap["probe"]["sent"] == 3, swap["probe"]
