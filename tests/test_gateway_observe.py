"""Seeing the gateway: its metrics, spans and swap log lines, and mounting it in an app."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tabby_async.gateway import create_app
from tabby_async.testing import EmulatedModel
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import gateway_node, guarded, post_completion, run_gateway, serve_app

CATALOG = "[models.m1]\n[models.m2]\n"


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text, or None when absent."""
    shown = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}{{{re.escape(shown)}}} (\S+)$", metrics, re.MULTILINE)
    return None if found is None else float(found.group(1))


async def test_metrics_count_requests_swaps_waits_and_node_state(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    a = await gateway_node(tabby_emulator_factory, models=[EmulatedModel("m1", delay=0.01), "m2"])
    async with run_gateway({"a": a}, CATALOG) as (url, _):
        assert (await guarded(post_completion(http, url, "m1")))[0] == 200
        assert (await guarded(post_completion(http, url, "m1")))[0] == 200
        assert (await guarded(post_completion(http, url, "nope")))[0] == 404
        assert (await guarded(post_completion(http, url, "m2")))[0] == 200
        metrics = await (await http.get(url + "/metrics")).text()
    assert sample(metrics, "tabby_gateway_requests_total", model="m1", node="a", outcome="ok") == 2
    assert (
        sample(
            metrics, "tabby_gateway_requests_total", model="", node="", outcome="model_not_found"
        )
        == 1
    )
    assert sample(metrics, "tabby_gateway_swaps_total", node="a", reason="cold") == 1
    assert sample(metrics, "tabby_gateway_swaps_total", node="a", reason="evict") == 1
    assert sample(metrics, "tabby_gateway_swap_duration_seconds_count", reason="cold") == 1
    # Each cold request waited once in the queue; the second m1 request did not.
    assert sample(metrics, "tabby_gateway_queue_wait_seconds_count", model="m1") == 1
    assert sample(metrics, "tabby_gateway_in_flight", model="m1") == 0
    assert sample(metrics, "tabby_gateway_queue_depth", model="m2") == 0
    assert sample(metrics, "tabby_gateway_node_up", node="a") == 1
    assert sample(metrics, "tabby_gateway_node_healthy", node="a") == 1


async def test_each_request_and_swap_is_a_span_and_each_swap_one_log_line(
    tabby_emulator_factory: EmulatorFactory,
    http: aiohttp.ClientSession,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tabby_async.gateway")
    a = await gateway_node(tabby_emulator_factory)
    async with run_gateway({"a": a}, CATALOG) as (url, _):
        assert (await guarded(post_completion(http, url, "m1")))[0] == 200
        assert (await guarded(post_completion(http, url, "m2")))[0] == 200
    finished = spans.get_finished_spans()
    requests = [s for s in finished if s.name == "tabby.gateway.request"]
    swaps = [s for s in finished if s.name == "tabby.gateway.swap"]
    assert [(s.attributes or {}).get("tabby.model") for s in requests] == ["m1", "m2"]
    assert all((s.attributes or {}).get("tabby.node") == "a" for s in requests)
    assert [(s.attributes or {}).get("tabby.swap.reason") for s in swaps] == ["cold", "evict"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("swap on")]
    assert len(lines) == 2
    assert "m1 loaded (cold)" in lines[0] and "m2 loaded (evict, over m1)" in lines[1]


async def test_the_gateway_mounts_in_an_app_and_runs_from_its_factory(
    tabby_emulator_factory: EmulatorFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    a = await gateway_node(tabby_emulator_factory)
    nodes = tmp_path / "nodes.toml"
    nodes.write_text(
        f'[[nodes]]\nname = "a"\nurl = "{a.url}"\n'
        f'api_key = "{a.api_key}"\nadmin_key = "{a.admin_key}"\n'
    )
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    parent = web.Application()

    async def own(request: web.Request) -> web.Response:
        return web.Response(text="the app's own route")

    parent.router.add_get("/", own)
    parent.add_subapp("/llm", create_app(nodes, catalog))
    async with serve_app(parent, handler_cancellation=True) as url:
        status, data, _ = await guarded(post_completion(http, url + "/llm", "m1"))
        own_text = await (await http.get(url + "/")).text()
    assert status == 200 and data["choices"][0]["text"].startswith("m1:1 ")
    assert own_text == "the app's own route"
