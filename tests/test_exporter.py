"""The Prometheus exporter: the metrics of a sweep (a table), the sweep cache (a fake clock),
the exposition read back with prometheus_client's parser, the ``fleet exporter`` command, and a
real Prometheus server scraping it in front of three emulators, one of them down.

The emulators run in threads (``ThreadedEmulator``): the collector's ``collect()`` blocks the
calling thread while its own loop sweeps, as prometheus_client calls it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tabby_async import (
    DesiredState,
    EmbeddingModelLoadRequest,
    InvalidInputError,
    ModelLoadRequest,
    ServerError,
)
from tabby_async._state_plan import Observed, StatePlan, plan_state
from tabby_async.exporter import (
    AsyncFleetCollector,
    FleetCollector,
    FleetSnapshot,
    NodeSnapshot,
    exporter_app,
)
from tabby_async.exporter._http import SCRAPE_TIMEOUT_HEADER, probe_bound
from tabby_async.exporter._snapshot import metrics, plan_action
from tabby_async.exporter._sweep import SweepCache
from tabby_async.fleet import NodeSpec, NodeStatus
from tabby_async.testing import ThreadedEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tabby_async.types import HealthIssue, HealthResponse, ModelCard, ModelCardParameters
from tests.helpers import GUARD, guarded, raw_server, serve_app

# --- the metrics of a sweep, as a table ------------------------------------------------------

_CARD = ModelCard(
    id="alpha",
    parameters=ModelCardParameters(
        max_seq_len=4096, cache_size=8192, cache_mode="Q8", prompt_template="chatml"
    ),
)


_ISSUES = [
    HealthIssue(time="2026-11-30T10:00:00Z", description="RuntimeError: CUDA error"),
    HealthIssue(time="2026-11-30T11:00:00.5Z", description='bad\n"gen"\x1b[0m ' + "x" * 300),
]
_LAST = 'bad "gen" [0m ' + "x" * 185 + "…"  # one line, control characters out, 200 long


def _status(
    model: ModelCard | None = _CARD,
    embedding: ModelCard | None = None,
    healthy: bool = True,
    problems: dict[str, ServerError] | None = None,
) -> NodeStatus:
    health = (
        HealthResponse(status="healthy")
        if healthy
        else HealthResponse(status="unhealthy", issues=_ISSUES)
    )
    return NodeStatus("http://n", health, "api", model, embedding, 0.01, problems or {})


def _samples(snapshot: FleetSnapshot) -> dict[str, list[tuple[tuple[str, ...], float]]]:
    return {m.name: m.samples for m in metrics(snapshot) if m.samples}


def _plan(state: DesiredState, card: ModelCard | None) -> StatePlan:
    return plan_state(state, Observed(card))


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        pytest.param(
            NodeSnapshot("a", _status(embedding=ModelCard(id="bge")), None, 0.25),
            {
                "tabby_up": [(("a",), 1.0)],
                "tabby_healthy": [(("a",), 1.0)],
                "tabby_model_loaded": [(("a",), 1.0)],
                "tabby_model_info": [(("a", "alpha", "Q8", "chatml"), 1.0)],
                "tabby_model_max_seq_len_tokens": [(("a",), 4096.0)],
                "tabby_model_cache_size_tokens": [(("a",), 8192.0)],
                "tabby_embedding_model_info": [(("a", "bge"), 1.0)],
                "tabby_probe_duration_seconds": [(("a",), 0.25)],
                "tabby_health_issues": [(("a",), 0.0)],
            },
            id="loaded",
        ),
        pytest.param(
            NodeSnapshot("a", _status(model=None, healthy=False), None, 0.5),
            {
                "tabby_up": [(("a",), 1.0)],
                "tabby_healthy": [(("a",), 0.0)],
                "tabby_health_issues": [(("a",), 2.0)],
                "tabby_unhealthy_since_timestamp_seconds": [(("a",), 1796032800.0)],
                "tabby_last_health_issue_timestamp_seconds": [(("a",), 1796036400.5)],
                "tabby_last_health_issue_info": [(("a", _LAST), 1.0)],
                "tabby_model_loaded": [(("a",), 0.0)],
                "tabby_probe_duration_seconds": [(("a",), 0.5)],
            },
            id="nothing loaded, unhealthy: up, since when, the last issue",
        ),
        pytest.param(
            NodeSnapshot("a", None, ServerError("down", status=502), 1.5),
            {
                "tabby_up": [(("a",), 0.0)],
                "tabby_healthy": [(("a",), 0.0)],
                "tabby_probe_error_info": [(("a", "server_error"), 1.0)],
                "tabby_probe_duration_seconds": [(("a",), 1.5)],
            },
            id="down: why, and nothing else is known",
        ),
        pytest.param(
            NodeSnapshot(
                "a",
                _status(model=None, problems={"model": ServerError("x", status=500)}),
                None,
                0.5,
            ),
            {
                "tabby_up": [(("a",), 1.0)],
                "tabby_healthy": [(("a",), 1.0)],
                "tabby_health_issues": [(("a",), 0.0)],
                "tabby_probe_duration_seconds": [(("a",), 0.5)],
            },
            id="the model probe failed: no model metrics",
        ),
        pytest.param(
            NodeSnapshot(
                "a",
                _status(),
                None,
                0.5,
                _plan(DesiredState(model=ModelLoadRequest(model_name="alpha")), _CARD),
            ),
            {
                "tabby_desired_state_match": [(("a",), 1.0)],
                "tabby_desired_state_verified": [(("a",), 1.0)],
                "tabby_desired_state_info": [(("a", "none"), 1.0)],
            },
            id="in its desired state",
        ),
        pytest.param(
            NodeSnapshot(
                "a",
                _status(),
                None,
                0.5,
                _plan(DesiredState(model=ModelLoadRequest(model_name="org/x/alpha")), _CARD),
            ),
            {
                "tabby_desired_state_verified": [(("a",), 0.0)],
                "tabby_desired_state_info": [(("a", "load"), 1.0)],
            },
            id="a nested name the card cannot prove: no match, unverified",
        ),
        pytest.param(
            NodeSnapshot(
                "a",
                _status(),
                None,
                0.5,
                _plan(
                    DesiredState(model=ModelLoadRequest(model_name="alpha", max_seq_len=8192)),
                    _CARD,
                ),
            ),
            {
                "tabby_desired_state_match": [(("a",), 0.0)],
                "tabby_desired_state_verified": [(("a",), 1.0)],
                "tabby_desired_state_info": [(("a", "reload"), 1.0)],
            },
            id="needs a reload",
        ),
    ],
)
def test_the_metrics_of_one_node(
    node: NodeSnapshot, expected: dict[str, list[tuple[tuple[str, ...], float]]]
) -> None:
    found = _samples(FleetSnapshot((node,), 2.0))
    assert found.pop("tabby_scrape_duration_seconds") == [((), 2.0)]
    assert found.pop("tabby_nodes") == [((), 1.0)]
    for name, samples in expected.items():
        assert found.pop(name) == samples, name
    if "tabby_desired_state_info" in expected:
        assert "tabby_desired_state_match" not in found  # unverified: left out
        return  # the node's other metrics are the first case's
    assert found == {}


@pytest.mark.parametrize(
    ("state", "card", "action"),
    [
        (DesiredState(model=ModelLoadRequest(model_name="alpha")), _CARD, "none"),
        (DesiredState(model=ModelLoadRequest(model_name="beta")), _CARD, "load"),
        (DesiredState(template="alpaca"), _CARD, "switch"),
        (
            DesiredState(
                model=ModelLoadRequest(model_name="alpha"),
                embedding=EmbeddingModelLoadRequest(embedding_model_name="bge"),
            ),
            _CARD,
            "load",
        ),
    ],
)
def test_the_action_a_plan_needs_first(
    state: DesiredState, card: ModelCard, action: str
) -> None:
    assert plan_action(plan_state(state, Observed(card))) == action


# --- the sweep cache -------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_sweep_is_reused_within_the_minimum_interval() -> None:
    clock = _Clock()
    sweeps: list[FleetSnapshot] = []

    async def sweep() -> FleetSnapshot:
        sweeps.append(FleetSnapshot((), 0.0, clock.now))
        return sweeps[-1]

    cache = SweepCache(sweep, 10.0, clock)
    first = await cache.get()
    clock.now += 9.9
    assert await cache.get() is first
    assert len(sweeps) == 1
    clock.now += 0.1
    assert await cache.get() is not first
    assert len(sweeps) == 2


async def test_scrapes_during_a_sweep_share_it_and_a_cancelled_one_does_not_stop_it() -> None:
    release = asyncio.Event()
    count = 0

    async def sweep() -> FleetSnapshot:
        nonlocal count
        count += 1
        await release.wait()
        return FleetSnapshot((), 0.0)

    cache = SweepCache(sweep, 0.0, _Clock())
    first = asyncio.ensure_future(cache.get())
    second = asyncio.ensure_future(cache.get())
    third = asyncio.ensure_future(cache.get())
    await asyncio.sleep(0)
    third.cancel()
    release.set()
    one, two = await guarded(asyncio.gather(first, second))
    assert one is two
    assert count == 1
    assert cache.last is one


# --- the collector against emulators -------------------------------------------------------


@pytest.fixture
def emulators() -> Iterator[tuple[ThreadedEmulator, ThreadedEmulator, str]]:
    """Two emulators (``a`` with alpha loaded, ``b`` with nothing) and the URL of a third,
    stopped: its port refuses connections."""
    with ThreadedEmulator(models=["alpha"]) as gone:
        down = gone.url
    with (
        ThreadedEmulator(models=["alpha", "beta"], embeddings=["bge"], auth=True) as a,
        ThreadedEmulator(models=["alpha"], auth=False) as b,
    ):
        a.call(lambda e: e.preload("alpha", max_seq_len=4096))
        yield a, b, down


def _specs(a: ThreadedEmulator, b: ThreadedEmulator, down: str) -> list[NodeSpec]:
    return [
        NodeSpec(
            "a",
            a.url,
            api_key=a.api_key,
            desired=DesiredState(model=ModelLoadRequest(model_name="alpha", max_seq_len=4096)),
        ),
        NodeSpec("b", b.url, desired=DesiredState(model=ModelLoadRequest(model_name="beta"))),
        NodeSpec("down", down),
    ]


def _parsed(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of a scrape, read back with prometheus_client's parser."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _health_probes(server: ThreadedEmulator) -> int:
    return server.call(lambda e: e.count("GET", "/health"))


def test_the_exposition_per_node(
    emulators: tuple[ThreadedEmulator, ThreadedEmulator, str],
) -> None:
    a, b, down = emulators
    with FleetCollector(_specs(a, b, down), node_timeout=GUARD) as collector:
        registry = CollectorRegistry()
        registry.register(collector)
        assert _health_probes(a) == 0  # registering asks describe(): nothing is swept
        found = _parsed(registry)
    node = lambda name: (("node", name),)  # noqa: E731
    assert found["tabby_up"] == {node("a"): 1.0, node("b"): 1.0, node("down"): 0.0}
    assert found["tabby_healthy"] == {node("a"): 1.0, node("b"): 1.0, node("down"): 0.0}
    assert found["tabby_model_loaded"] == {node("a"): 1.0, node("b"): 0.0}
    info = (("cache_mode", "FP16"), ("model", "alpha"), ("node", "a"), ("prompt_template", ""))
    assert found["tabby_model_info"] == {info: 1.0}
    assert found["tabby_model_max_seq_len_tokens"] == {node("a"): 4096.0}
    assert found["tabby_desired_state_match"] == {node("a"): 1.0, node("b"): 0.0}
    assert found["tabby_desired_state_verified"] == {node("a"): 1.0, node("b"): 1.0}
    refused = (("code", "connection_error"), ("node", "down"))
    assert found["tabby_probe_error_info"] == {refused: 1.0}
    assert found["tabby_desired_state_info"] == {
        (("action", "none"), ("node", "a")): 1.0,
        (("action", "load"), ("node", "b")): 1.0,
    }
    assert found["tabby_nodes"] == {(): 3.0}
    assert set(found["tabby_probe_duration_seconds"]) == {node("a"), node("b"), node("down")}
    assert found["tabby_scrape_duration_seconds"][()] > 0


def test_scrapes_within_the_minimum_interval_reuse_one_sweep(
    emulators: tuple[ThreadedEmulator, ThreadedEmulator, str],
) -> None:
    a, b, down = emulators
    with FleetCollector(_specs(a, b, down), min_interval=3600, node_timeout=GUARD) as collector:
        first = collector.snapshot()
        assert collector.snapshot() is first
        threads = [threading.Thread(target=collector.collect) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(GUARD)
    assert _health_probes(a) == 1
    with FleetCollector(_specs(a, b, down), min_interval=0, node_timeout=GUARD) as collector:
        collector.collect()
        collector.collect()
    assert _health_probes(a) == 3


def test_a_node_past_its_timeout_is_down_and_the_scrape_still_answers(
    emulators: tuple[ThreadedEmulator, ThreadedEmulator, str],
) -> None:
    a, b, down = emulators
    b.call(lambda e: e.faults.delay_head(GUARD, n=None, path="/health"))
    with FleetCollector(_specs(a, b, down), node_timeout=0.2) as collector:
        snapshot = collector.snapshot()
    assert [(n.node, n.up) for n in snapshot.nodes] == [("a", True), ("b", False), ("down", False)]
    assert snapshot.nodes[1].error is not None and snapshot.nodes[1].error.code == "timeout"


def test_a_sweep_that_goes_wrong_reports_every_node_down(
    emulators: tuple[ThreadedEmulator, ThreadedEmulator, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object, **kwargs: object) -> NodeStatus:
        raise RuntimeError("a bug")

    monkeypatch.setattr("tabby_async.exporter._sweep.probe_status", broken)
    a, b, down = emulators
    with FleetCollector(_specs(a, b, down), node_timeout=GUARD) as collector:
        registry = CollectorRegistry()
        registry.register(collector)
        found = _parsed(registry)
    assert set(found["tabby_up"].values()) == {0.0}
    assert "the fleet sweep failed" in caplog.text


def test_close_stops_the_thread_and_closes_the_fleet(
    emulators: tuple[ThreadedEmulator, ThreadedEmulator, str],
) -> None:
    a, b, down = emulators
    collector = FleetCollector(_specs(a, b, down), node_timeout=GUARD)
    assert not _exporter_threads()  # nothing runs before the first scrape
    collector.collect()
    assert _exporter_threads()
    collector.close()
    collector.close()
    assert not _exporter_threads()


def _exporter_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tabby-exporter"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"node_timeout": None}, "node_timeout"),
        ({"node_timeout": -1}, "node_timeout"),
        ({"min_interval": None}, "min_interval"),
        ({"min_interval": -1}, "min_interval"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"desired": {"nope": DesiredState(template="t")}}, "desired"),
    ],
)
def test_bad_options_are_refused_naming_them(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        FleetCollector([NodeSpec("a", "http://127.0.0.1:1")], **options)  # type: ignore[arg-type]
    assert caught.value.field == field


# --- what TabbyAPI answers, and what a proxy in front of it does ------------------------------


NGINX_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        pytest.param(502, NGINX_502, "server_error", id="nginx 502"),
        pytest.param(503, b'{"detail":"no healthy upstream"}', "server_error", id="proxy 503"),
        pytest.param(504, b"", "server_error", id="504"),
        pytest.param(200, NGINX_502, "decode_error", id="html 200"),
        pytest.param(200, b'{"status":"ok"}', "decode_error", id="other json 200"),
    ],
)
def test_a_proxys_answer_on_health_is_down_with_the_reason(
    emulators: tuple[ThreadedEmulator, ThreadedEmulator, str], status: int, body: bytes, code: str
) -> None:
    a, b, down = emulators
    b.call(lambda e: e.faults.fail_next(None, status=status, body=body, path="/health"))
    with FleetCollector(_specs(a, b, down), node_timeout=GUARD) as collector:
        registry = CollectorRegistry()
        registry.register(collector)
        found = _parsed(registry)
    assert found["tabby_up"][(("node", "b"),)] == 0.0
    assert found["tabby_probe_error_info"][(("code", code), ("node", "b"))] == 1.0
    assert (("node", "b"),) not in found["tabby_model_loaded"]  # what it runs is unknown


def test_an_unhealthy_node_is_up_with_since_when_and_its_last_issue(
    emulators: tuple[ThreadedEmulator, ThreadedEmulator, str],
) -> None:
    a, b, down = emulators
    before = time.time()
    b.call(lambda e: e.add_health_issue("RuntimeError: generation failed\nTraceback..."))
    with FleetCollector(_specs(a, b, down), node_timeout=GUARD) as collector:
        registry = CollectorRegistry()
        registry.register(collector)
        found = _parsed(registry)
    node = (("node", "b"),)
    assert found["tabby_up"][node] == 1.0 and found["tabby_healthy"][node] == 0.0
    assert found["tabby_health_issues"][node] == 1.0
    since = found["tabby_unhealthy_since_timestamp_seconds"][node]
    assert since >= before - 1  # the emulator stamps in microseconds
    assert found["tabby_last_health_issue_timestamp_seconds"][node] == since
    info = (("description", "RuntimeError: generation failed Traceback..."), ("node", "b"))
    assert found["tabby_last_health_issue_info"] == {info: 1.0}
    assert found["tabby_model_loaded"][node] == 0.0  # it still serves


def test_a_name_the_card_cannot_prove_is_not_reported_as_a_match(tmp_path: Path) -> None:
    """Declared org/model/4.0bpw, loaded other-org/model/4.0bpw: the card says 4.0bpw for both."""
    folders = ["org/model/4.0bpw", "other-org/model/4.0bpw"]
    with ThreadedEmulator(models=folders, auth=False) as server:
        server.call(lambda e: e.preload("other-org/model/4.0bpw"))
        nodes = tmp_path / "nodes.toml"
        nodes.write_text(
            f'[[nodes]]\nname = "n"\nurl = "{server.url}"\n'
            'desired.model = "org/model/4.0bpw"\n'
        )
        with FleetCollector.from_toml(nodes, node_timeout=GUARD) as collector:
            registry = CollectorRegistry()
            registry.register(collector)
            found = _parsed(registry)
    node = (("node", "n"),)
    assert "tabby_desired_state_match" not in found  # neither 1 nor a false alarm
    assert found["tabby_desired_state_verified"] == {node: 0.0}
    assert found["tabby_model_info"] == {
        (("cache_mode", "FP16"), ("model", "4.0bpw"), ("node", "n"), ("prompt_template", "")): 1.0
    }


# --- the async collector and the exporter's own HTTP server ---------------------------------


async def test_collect_reads_the_last_sweep_and_never_sweeps(
    tabby_emulator_factory: EmulatorFactory,
) -> None:
    server = await tabby_emulator_factory(models=["alpha"])
    async with AsyncFleetCollector([NodeSpec("a", server.url)], node_timeout=GUARD) as collector:
        registry = CollectorRegistry()
        registry.register(collector)
        before = _parsed(registry)
        assert before == {"tabby_nodes": {(): 1.0}}
        assert server.count("GET", "/health") == 0
        await collector.refresh()
        after = _parsed(registry)
        _parsed(registry)
    assert after["tabby_up"] == {(("node", "a"),): 1.0}
    assert server.count("GET", "/health") == 1


async def test_a_hanging_node_never_blocks_the_apps_loop() -> None:
    """A scrape waits for a node that does not answer; the app's loop serves on meanwhile."""
    asked, release = asyncio.Event(), asyncio.Event()

    async def hangs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        asked.set()
        await release.wait()  # then the connection closes: the node is down

    async with raw_server(hangs) as hanging:
        collector = AsyncFleetCollector([NodeSpec("h", hanging)], node_timeout=GUARD)
        app = exporter_app(collector)

        async def other(request: web.Request) -> web.Response:
            return web.Response(text="still serving")

        app.router.add_get("/other", other)
        async with collector, serve_app(app) as url, aiohttp.ClientSession() as http:
            scrape = asyncio.ensure_future(_get(http, url + "/metrics"))
            await guarded(asked.wait())
            assert await _get(http, url + "/other") == (200, "still serving")
            assert not scrape.done()
            release.set()
            status, text = await guarded(scrape)
    assert status == 200 and 'tabby_up{node="h"} 0.0' in text


async def test_the_background_refresher_keeps_collect_fresh(
    tabby_emulator_factory: EmulatorFactory,
) -> None:
    server = await tabby_emulator_factory(models=["alpha"])
    swept = asyncio.Event()
    async with AsyncFleetCollector([NodeSpec("a", server.url)], node_timeout=GUARD) as collector:
        original = collector.refresh

        async def refresh() -> FleetSnapshot:
            snapshot = await original()
            swept.set()
            return snapshot

        collector.refresh = refresh  # type: ignore[method-assign]
        task = asyncio.ensure_future(collector.run(interval=3600))
        await guarded(swept.wait())
        registry = CollectorRegistry()
        registry.register(collector)
        found = _parsed(registry)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert found["tabby_up"] == {(("node", "a"),): 1.0}


async def _get(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, str]:
    async with http.get(url, headers=headers) as answer:
        return answer.status, await answer.text()


async def test_the_exporter_app_serves_metrics_probe_and_404s(
    tabby_emulator_factory: EmulatorFactory,
) -> None:
    a = await tabby_emulator_factory(models=["alpha"], auth=True)
    b = await tabby_emulator_factory(models=["alpha"])
    specs = [NodeSpec("a", a.url, api_key=a.api_key), NodeSpec("b", b.url)]
    async with (
        AsyncFleetCollector(specs, node_timeout=GUARD) as collector,
        serve_app(exporter_app(collector)) as url,
        aiohttp.ClientSession() as http,
    ):
        status, text = await _get(http, url + "/metrics")
        assert status == 200 and 'tabby_up{node="b"} 1.0' in text
        status, text = await _get(http, url + "/probe?target=a")
        assert status == 200
        found = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
        assert found["tabby_up"].labels == {"node": "a"} and found["tabby_up"].value == 1.0
        assert "tabby_nodes" not in found and "tabby_scrape_duration_seconds" not in found
        assert a.count("GET", "/health") == 2  # the sweep's, then the probe's: never cached
        status, text = await _get(http, url + "/probe?target=nope%0a%1b[2J")
        assert status == 404
        assert text == "unknown target 'nope[2J': no such node in the nodes file\n"
        assert a.url not in text and a.api_key not in text
        assert (await _get(http, url + "/probe"))[0] == 400
        assert (await _get(http, url + "/favicon.ico"))[0] == 404
        assert (await _get(http, url + "/metrics/extra"))[0] == 404
        status, text = await _get(http, url + "/")
        assert status == 200 and "/probe?target=NODE" in text


async def test_a_probe_is_bounded_by_the_scrape_timeout_prometheus_sends() -> None:
    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()

    async with raw_server(never_answers) as hanging:
        collector = AsyncFleetCollector([NodeSpec("h", hanging)], node_timeout=3600)
        async with (
            collector,
            serve_app(exporter_app(collector)) as url,
            aiohttp.ClientSession() as http,
        ):
            status, text = await guarded(
                _get(http, url + "/probe?target=h", **{SCRAPE_TIMEOUT_HEADER: "0.6"})
            )
    assert status == 200
    assert 'tabby_up{node="h"} 0.0' in text
    assert 'tabby_probe_error_info{code="timeout",node="h"} 1.0' in text


@pytest.mark.parametrize(
    ("header", "bound"),
    [(None, 5.0), ("10", 9.5), ("1.5", 1.0), ("1", 0.5), ("0.4", 0.2), ("0", 5.0),
     ("-3", 5.0), ("abc", 5.0), ("inf", 5.0), ("nan", 5.0)],
)
def test_the_probe_bound_from_the_header(header: str | None, bound: float) -> None:
    assert probe_bound(header, 5.0) == bound


# --- the command and a real Prometheus -------------------------------------------------------


def _nodes_file(path: Path, a: ThreadedEmulator, b: ThreadedEmulator, down: str) -> Path:
    path.write_text(
        f"""
[[nodes]]
name = "a"
url = "{a.url}"
api_key_env = "NODE_A_KEY"
desired.model = {{ model_name = "alpha", max_seq_len = 4096 }}

[[nodes]]
name = "b"
url = "{b.url}"
desired.model = "beta"

[[nodes]]
name = "down"
url = "{down}"
"""
    )
    return path


def test_the_command_needs_a_nodes_file() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tabby_async", "fleet", "exporter"],
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "give --nodes" in done.stderr


@pytest.mark.parametrize("port", ["70000", "65536", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(port: str, tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.toml"
    nodes.write_text('[[nodes]]\nname = "a"\nurl = "http://127.0.0.1:1"\n')
    done = subprocess.run(
        [sys.executable, "-m", "tabby_async", "fleet", "exporter", "--nodes", str(nodes),
         "--port", port],
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr
    assert "argument --port" in done.stderr and "Traceback" not in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(prometheus: str, expr: str) -> dict[str, float]:
    """An instant query's value per ``node`` label."""
    url = f"{prometheus}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=GUARD) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return {r["metric"]["node"]: float(r["value"][1]) for r in body["data"]["result"]}


def _wait_for(
    prometheus: str, expr: str, nodes: int, process: subprocess.Popen[str]
) -> dict[str, float]:
    """Poll Prometheus until ``expr`` has a value for ``nodes`` nodes (a hang guard only)."""
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, "prometheus stopped"
        try:
            found = _query(prometheus, expr)
        except OSError:
            found = {}  # not listening yet
        if len(found) >= nodes:
            return found
        assert time.monotonic() < deadline, f"no {expr} for {nodes} nodes: {found}"
        time.sleep(0.5)


def test_a_real_prometheus_scrapes_the_exporter(
    emulators: tuple[ThreadedEmulator, ThreadedEmulator, str], tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is missing: install the Debian package prometheus")
    a, b, down = emulators
    nodes = _nodes_file(tmp_path / "nodes.toml", a, b, down)
    exporter = subprocess.Popen(
        [sys.executable, "-m", "tabby_async", "fleet", "exporter", "--nodes", str(nodes),
         "--port", "0", "--min-interval", "0.5"],
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "NODE_A_KEY": a.api_key},
    )
    prometheus: subprocess.Popen[str] | None = None
    try:
        assert exporter.stdout is not None
        banner = exporter.stdout.readline()
        target = banner.split("http://", 1)[1].split("/metrics", 1)[0]
        port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: tabby\n    scrape_interval: 1s\n"
            f"    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
            # The multi-target job as the observability guide shows it.
            "  - job_name: tabby-probe\n    metrics_path: /probe\n    scrape_interval: 1s\n"
            "    scrape_timeout: 1s\n    static_configs:\n      - targets: [a, b, down]\n"
            "    relabel_configs:\n"
            "      - source_labels: [__address__]\n        target_label: __param_target\n"
            "      - source_labels: [__param_target]\n        target_label: instance\n"
            f"      - target_label: __address__\n        replacement: '{target}'\n"
        )
        with (tmp_path / "prometheus.log").open("w") as log:
            prometheus = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        api = f"http://127.0.0.1:{port}"
        fleet = _wait_for(api, 'tabby_up{job="tabby"}', 3, prometheus)
        assert fleet == {"a": 1.0, "b": 1.0, "down": 0.0}
        loaded = _wait_for(api, 'tabby_model_loaded{job="tabby"}', 2, prometheus)
        assert loaded == {"a": 1.0, "b": 0.0}
        assert _query(api, 'tabby_desired_state_match{job="tabby"}') == {"a": 1.0, "b": 0.0}
        probed = _wait_for(api, 'tabby_up{job="tabby-probe"}', 3, prometheus)
        assert probed == {"a": 1.0, "b": 1.0, "down": 0.0}
        per_instance = 'label_replace(up{job="tabby-probe"}, "node", "$1", "instance", "(.*)")'
        instances = _query(api, per_instance)
        assert instances == {"a": 1.0, "b": 1.0, "down": 1.0}  # each probe answered
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(GUARD)
        exporter.send_signal(signal.SIGTERM)
        out, _ = exporter.communicate(timeout=GUARD)
    assert exporter.returncode == 0
    assert "exporter stopped" in out


def test_logging_is_quiet_about_keys_in_the_exporter(
    emulators: tuple[ThreadedEmulator, ThreadedEmulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, down = emulators
    with (
        caplog.at_level(logging.DEBUG, logger="tabby_async"),
        FleetCollector(_specs(a, b, down), node_timeout=GUARD) as collector,
    ):
        collector.collect()
    assert a.api_key not in caplog.text and a.admin_key not in caplog.text
