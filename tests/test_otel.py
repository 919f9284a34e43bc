"""Tracing: aiohttp trace configs on the client's and the fleet's sessions, and the SDK's own
OpenTelemetry spans (loads, ensure, fleet operations, rollouts).

The spans go to an in-memory exporter of ``opentelemetry-sdk``. A tracer provider can be set
once per process, so the first test that needs one sets it and the others add nothing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tabby_async import (
    AsyncTabbyClient,
    DesiredState,
    InvalidInputError,
    LoadFailedError,
    ModelLoadRequest,
    ModelNotFoundError,
)
from tabby_async.fleet import NodeSpec, TabbyFleet
from tabby_async.fleet._observe import span_name
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tests.helpers import guarded, span_provider

pytestmark = pytest.mark.emulator(
    models=[
        EmulatedModel("alpha", modules=4, delay=0.01),
        EmulatedModel("beta", modules=3),
        EmulatedModel("broken", modules=4, fail_at=2, fail_message="out of memory"),
    ],
    drafts=[EmulatedModel("draft-small", modules=2)],
    auth=True,
)

@pytest.fixture
async def traced(server: TabbyEmulator) -> AsyncIterator[AsyncTabbyClient]:
    """An admin client of ``server``, its requests traced by aiohttp's instrumentation."""
    config = create_trace_config(tracer_provider=span_provider())
    async with AsyncTabbyClient(
        server.url, admin_key=server.admin_key, trace_configs=[config]
    ) as client:
        yield client


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = named(exporter, name)
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def attrs(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def http_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]


def all_text(exporter: InMemorySpanExporter) -> str:
    """Every name, attribute and event of every span, for leak checks."""
    parts = []
    for s in exporter.get_finished_spans():
        parts += [s.name, repr(attrs(s)), repr(s.status.description)]
        parts += [f"{e.name} {dict(e.attributes or {})}" for e in s.events]
    return "\n".join(parts)


# --- 1. trace_configs: the user's own instrumentation --------------------------------------


async def test_trace_configs_give_http_spans_for_every_call(
    server: TabbyEmulator, spans: InMemorySpanExporter, traced: AsyncTabbyClient
) -> None:
    await traced.models.list()
    await traced.models.load(model_name="beta")  # the long-call pool is traced too
    methods = sorted(s.name for s in http_spans(spans))
    assert methods == ["GET", "POST"], methods
    text = all_text(spans)
    assert server.admin_key not in text and server.api_key not in text


async def test_the_load_span_outlives_its_http_span_and_is_its_parent(
    spans: InMemorySpanExporter, traced: AsyncTabbyClient
) -> None:
    await traced.models.load(model_name="alpha")
    load = one(spans, "tabby.load")
    (post,) = http_spans(spans)
    assert parent_of(post) == load.context.span_id
    # The HTTP span ends with the head of the stream; the load's span with `finished`.
    assert load.end_time is not None and post.end_time is not None
    assert load.end_time > post.end_time
    assert load.end_time >= load.events[-1].timestamp


async def test_a_session_passed_in_keeps_its_own_trace_configs(server: TabbyEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(InvalidInputError) as caught:
            AsyncTabbyClient(server.url, session=session, trace_configs=[aiohttp.TraceConfig()])
    assert caught.value.field == "trace_configs"


@pytest.mark.parametrize("bad", ["config", [object()], aiohttp.TraceConfig(), 3])
def test_trace_configs_must_be_a_list_of_trace_configs(bad: object) -> None:
    with pytest.raises(InvalidInputError) as caught:
        AsyncTabbyClient("http://127.0.0.1:1", trace_configs=bad)  # type: ignore[arg-type]
    assert caught.value.field == "trace_configs"
    with pytest.raises(InvalidInputError) as caught:
        TabbyFleet([NodeSpec("a", "http://127.0.0.1:1")], trace_configs=bad)  # type: ignore[arg-type]
    assert caught.value.field == "trace_configs"


async def test_the_fleets_shared_session_takes_trace_configs(
    server: TabbyEmulator, spans: InMemorySpanExporter
) -> None:
    config = create_trace_config(tracer_provider=span_provider())
    specs = [NodeSpec(f"n{i}", server.url, api_key=server.api_key) for i in range(2)]
    async with TabbyFleet(specs, trace_configs=[config]) as fleet:
        result = await fleet.models.list()
    assert result.ok
    node_spans = named(spans, "tabby.fleet.node")
    nodes = {s.context.span_id: attrs(s)["tabby.node.name"] for s in node_spans}
    assert sorted(nodes[parent_of(s) or 0] for s in http_spans(spans)) == ["n0", "n1"]


async def test_from_toml_takes_trace_configs(
    server: TabbyEmulator, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    nodes = tmp_path / "nodes.toml"
    nodes.write_text(f'[[nodes]]\nname = "n0"\nurl = "{server.url}"\n')
    config = create_trace_config(tracer_provider=span_provider())
    async with TabbyFleet.from_toml(nodes, trace_configs=[config]) as fleet:
        await fleet.health()
    assert [s.name for s in http_spans(spans)] == ["GET"]


# --- 2. the SDK's own spans ------------------------------------------------------------------


async def test_a_load_span_from_send_to_finished(
    server: TabbyEmulator, client: AsyncTabbyClient, spans: InMemorySpanExporter
) -> None:
    await client.models.load(model_name="alpha", draft_model={"draft_model_name": "draft-small"})
    load = one(spans, "tabby.load")
    found = attrs(load)
    assert found["server.address"] == "127.0.0.1"
    assert found["server.port"] == server.port
    assert found["tabby.model.name"] == "alpha"
    assert found["tabby.outcome"] == "ok"
    assert "error.type" not in found
    assert load.status.status_code is StatusCode.UNSET
    finished = [(e.name, dict(e.attributes or {})) for e in load.events]
    assert finished == [
        ("tabby.load.component_finished", {"tabby.model.type": "draft", "tabby.load.modules": 2}),
        ("tabby.load.component_finished", {"tabby.model.type": "model", "tabby.load.modules": 4}),
    ]


async def test_a_failed_load_ends_its_span_with_the_error_code(
    client: AsyncTabbyClient, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(LoadFailedError):
        await client.models.load(model_name="broken")
    found = attrs(one(spans, "tabby.load"))
    assert found["tabby.outcome"] == "error"
    assert found["error.type"] == "load_failed"
    assert one(spans, "tabby.load").status.status_code is StatusCode.ERROR


async def test_a_load_refused_before_the_stream_ends_its_span_with_the_error_code(
    client: AsyncTabbyClient, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(ModelNotFoundError):
        await client.models.load(model_name="nope")
    found = attrs(one(spans, "tabby.load"))
    assert (found["tabby.outcome"], found["error.type"]) == ("error", "not_found")


async def test_a_stream_closed_early_ends_its_span_as_closed(
    client: AsyncTabbyClient, spans: InMemorySpanExporter
) -> None:
    async with client.models.load_stream(model_name="alpha") as stream:
        async for _ in stream:
            break
    found = attrs(one(spans, "tabby.load"))
    assert found["tabby.outcome"] == "closed"
    assert "error.type" not in found


async def test_a_reattached_load_ends_its_span_ok_once_the_model_shows_up(
    server: TabbyEmulator, client: AsyncTabbyClient, spans: InMemorySpanExporter
) -> None:
    server.faults.drop_stream(after_events=1, stop_load=False)
    event = await guarded(client.models.load(model_name="alpha", reattach_within=30))
    assert event.status == "finished"
    found = attrs(one(spans, "tabby.load"))
    assert found["tabby.outcome"] == "ok"
    assert found["tabby.load.reattached"] is True


async def test_ensure_loaded_records_its_plan_and_parents_the_load(
    client: AsyncTabbyClient, spans: InMemorySpanExporter
) -> None:
    await client.models.ensure_loaded(model_name="beta", max_seq_len=2048)
    ensure = one(spans, "tabby.ensure_loaded")
    found = attrs(ensure)
    assert found["tabby.model.name"] == "beta"
    assert found["tabby.ensure.action"] == "load"
    assert found["tabby.ensure.reasons"] == ("model_name: wanted 'beta', loaded None",)
    assert found["tabby.ensure.done"] == "load"
    assert found["tabby.outcome"] == "ok"
    assert parent_of(one(spans, "tabby.load")) == ensure.context.span_id
    spans.clear()
    await client.models.ensure_loaded(model_name="beta", max_seq_len=4096)
    found = attrs(one(spans, "tabby.ensure_loaded"))
    assert found["tabby.ensure.action"] == "reload"
    assert found["tabby.ensure.reasons"] == ("max_seq_len: wanted 4096, loaded 2048",)
    spans.clear()
    await client.models.ensure_loaded(model_name="beta", max_seq_len=4096)
    assert attrs(one(spans, "tabby.ensure_loaded"))["tabby.ensure.action"] == "none"
    assert named(spans, "tabby.load") == []


async def test_client_ensure_records_the_parts_planned_and_done(
    server: TabbyEmulator, client: AsyncTabbyClient, spans: InMemorySpanExporter
) -> None:
    await client.apply(DesiredState(model=ModelLoadRequest(model_name="beta")))
    found = attrs(one(spans, "tabby.ensure"))
    assert found["server.port"] == server.port
    assert found["tabby.ensure.parts"] == ("model",)
    assert found["tabby.ensure.action"] == "change"
    assert found["tabby.ensure.done"] == ("model",)
    assert found["tabby.ensure.dry_run"] is False


async def test_a_fleet_operation_is_a_parent_span_with_one_child_per_node(
    server: TabbyEmulator, spans: InMemorySpanExporter
) -> None:
    specs = [
        NodeSpec("up-1", server.url, api_key=server.api_key),
        NodeSpec("down", "http://127.0.0.1:9", api_key="k"),  # the discard port: refused
        NodeSpec("up-2", server.url, api_key=server.api_key),
    ]
    async with TabbyFleet(specs) as fleet:
        result = await fleet.status()
    assert [r.status for r in result] == ["ok", "connection_error", "ok"]
    parent = one(spans, "tabby.fleet.status")
    found = attrs(parent)
    assert found["tabby.fleet.nodes"] == 3
    assert found["tabby.fleet.failed"] == 1
    assert found["tabby.outcome"] == "partial"
    children = named(spans, "tabby.fleet.node")
    assert all(parent_of(c) == parent.context.span_id for c in children)
    by_node = {attrs(c)["tabby.node.name"]: attrs(c) for c in children}
    assert sorted(by_node) == ["down", "up-1", "up-2"]
    assert by_node["down"]["error.type"] == "connection_error"
    assert by_node["down"]["server.port"] == 9
    assert by_node["up-1"]["tabby.outcome"] == "ok"


async def test_a_rollout_span_has_a_batch_event_per_batch(
    server: TabbyEmulator, spans: InMemorySpanExporter
) -> None:
    specs = [NodeSpec(f"n{i}", server.url, admin_key=server.admin_key) for i in range(3)]
    async with TabbyFleet(specs) as fleet:
        report = await fleet.rollout(model_name="beta", batch_size=2)
    assert report.ok
    rollout = one(spans, "tabby.fleet.rollout")
    found = attrs(rollout)
    assert found["tabby.model.name"] == "beta"
    assert (found["tabby.rollout.batches"], found["tabby.rollout.done"]) == (2, 3)
    assert found["tabby.rollout.halted"] is False
    assert found["tabby.outcome"] == "ok"
    events = [dict(e.attributes or {}) for e in rollout.events if e.name == "tabby.rollout.batch"]
    assert [(e["tabby.rollout.batch"], e["tabby.rollout.nodes"]) for e in events] == [
        (0, ("n0", "n1")),
        (1, ("n2",)),
    ]
    batches = named(spans, "tabby.fleet.rollout.batch")
    assert sorted(attrs(b)["tabby.fleet.batch"] for b in batches) == [1, 2]
    assert all(parent_of(b) == rollout.context.span_id for b in batches)


@pytest.mark.parametrize(
    ("operation", "name", "extra"),
    [
        ("status", "tabby.fleet.status", {}),
        ("rollout batch 2", "tabby.fleet.rollout.batch", {"tabby.fleet.batch": 2}),
        ("rollout check 10", "tabby.fleet.rollout.check", {"tabby.fleet.check": 10}),
        ("", "tabby.fleet.run", {}),
        ("my sweep", "tabby.fleet.my.sweep", {}),
    ],
)
def test_fleet_span_names_stay_few(operation: str, name: str, extra: dict[str, int]) -> None:
    assert span_name(operation) == (name, extra)


# --- without OpenTelemetry -------------------------------------------------------------------

_SCRIPT = """
import asyncio, sys

{block}

from tabby_async import AsyncTabbyClient, DesiredState, ModelLoadRequest
from tabby_async.fleet import NodeSpec, TabbyFleet
from tabby_async.testing import TabbyEmulator


async def main() -> None:
    async with TabbyEmulator(models=["m"], auth=False) as server:
        async with AsyncTabbyClient(server.url) as client:
            await client.models.load(model_name="m")
            await client.models.ensure_loaded(model_name="m", max_seq_len=1024)
            await client.apply(DesiredState(model=ModelLoadRequest(model_name="m")))
        async with TabbyFleet([NodeSpec("a", server.url), NodeSpec("b", server.url)]) as fleet:
            assert (await fleet.status()).ok
            assert (await fleet.rollout(model_name="m")).ok


asyncio.run(main())
print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
"""

_BLOCK = """
import importlib.abc


class NoOpenTelemetry(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"blocked: {name}", name=name)
        return None


sys.meta_path.insert(0, NoOpenTelemetry())
"""


def _run(block: str) -> str:
    script = _SCRIPT.format(block=textwrap.dedent(block))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_without_opentelemetry_installed_nothing_is_imported() -> None:
    assert _run(_BLOCK) == "[]"


def test_opentelemetry_installed_but_unused_is_never_imported() -> None:
    # Installed (as here) but the application never imported it: tracing is off and the SDK
    # does not import it either (not even fastapi's dependency on the API costs a thing).
    assert _run("") == "[]"


def test_opentelemetry_imported_without_a_provider_records_nothing() -> None:
    # The API imported, no provider set: every span is non-recording and dropped at once.
    block = """
    from opentelemetry import trace
    import tabby_async._otel as otel
    assert otel.start_span("x", lambda: {}) is None
    """
    assert "opentelemetry.trace" in _run(block)
