"""Health as the fleet sees it: a node is up only when TabbyAPI itself answered ``/health``.

A proxy's 502/503/504 page, HTML, another service's JSON or a garbage 200 in front of a
node make it down (with the reason); TabbyAPI's own 503 "unhealthy" keeps it up, degraded,
with when that began and the latest issue, in ``fleet status``, in the SDK's NodeStatus and
in a rollout's check (an issue from before the node's step does not fail it forever).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from tabby_async import AsyncTabbyClient, ModelLoadRequest, ResponseDecodeError, ServerError
from tabby_async.fleet import NodeSpec, NodeStatus, TabbyFleet, VerificationError, default_check
from tabby_async.fleet._status import health_text, probe_status
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tabby_async.types import HealthIssue, HealthResponse

NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

#: Answers of something in front of the node, not of TabbyAPI: (status, body).
NOT_TABBY = [
    pytest.param(502, NGINX_502, id="nginx 502"),
    pytest.param(503, NGINX_502.replace(b"502 Bad Gateway", b"503 Service"), id="nginx 503"),
    pytest.param(504, b'{"detail":"Gateway Timeout"}', id="504 json"),
    pytest.param(200, b"<html><body>It works!</body></html>", id="html 200"),
    pytest.param(200, b'{"status":"healthy"}', id="a gateway's own health"),
    pytest.param(200, b'{"status":"ok","issues":[]}', id="another status"),
    pytest.param(200, b'{"status":"healthy","issues":[{"x":1}]}', id="issues of another shape"),
    pytest.param(200, b'{"status":"unhealthy","issues":[]}', id="unhealthy without issues"),
    pytest.param(200, b"\x00\xff garbage", id="garbage 200"),
]


@pytest.mark.parametrize(("status", "body"), NOT_TABBY)
async def test_a_node_behind_a_proxy_that_is_not_tabby_is_down_with_the_reason(
    tabby_emulator_factory: EmulatorFactory, status: int, body: bytes
) -> None:
    server = await tabby_emulator_factory(models=["m"])
    server.faults.fail_next(None, status=status, body=body, path="/health")
    async with TabbyFleet([NodeSpec("n", server.url)], max_retries=0) as fleet:
        result = await fleet.status()
    node = result["n"]
    assert node.value is None  # down: no NodeStatus
    error = node.error
    assert isinstance(error, ServerError if status >= 500 else ResponseDecodeError)
    assert "/health" in str(error) and "<" not in str(error)


async def test_the_servers_own_unhealthy_answer_is_up_and_degraded(
    tabby_emulator_factory: EmulatorFactory,
) -> None:
    server = await tabby_emulator_factory(models=["m"])
    before = datetime.now(UTC)
    server.add_health_issue("RuntimeError: CUDA error\x1b[31m: out of memory\n  at line 3")
    server.add_health_issue("AssertionError: cannot be enqueued")
    async with AsyncTabbyClient(server.url) as client:
        status = await probe_status(client)
    assert isinstance(status, NodeStatus)
    assert status.degraded and not status.healthy
    assert status.unhealthy_since is not None and status.unhealthy_since >= before
    assert status.last_issue is not None
    assert status.last_issue.description == "AssertionError: cannot be enqueued"
    assert status.health is not None
    first = status.health.issues[0].summary()
    assert first == "RuntimeError: CUDA error [31m: out of memory at line 3"
    text = health_text(status.health)
    assert text.startswith("unhealthy (2 issues) since ")
    assert text.endswith(", last: AssertionError: cannot be enqueued")


def test_an_issue_summary_is_one_bounded_line() -> None:
    issue = HealthIssue(time="bad", description="x\ty\r\n" * 500)
    assert issue.at is None
    summary = issue.summary()
    assert len(summary) == 200 and summary.endswith("…")
    assert all(c.isprintable() for c in summary)
    naive = HealthIssue(time="2026-11-30T10:00:00", description="d")
    assert naive.at == datetime(2026, 11, 30, 10, tzinfo=UTC)
    health = HealthResponse(status="unhealthy", issues=[naive, issue])
    assert health.since == naive.at  # the issue without a time is left out
    assert health_text(health) == (
        f"unhealthy (2 issues) since 2026-11-30 10:00:00Z, last: {summary}"
    )


async def test_fleet_status_shows_since_when_and_the_last_issue(
    tabby_emulator_factory: EmulatorFactory,
) -> None:
    server = await tabby_emulator_factory(models=["m"])
    server.add_health_issue("generation failed")
    async with TabbyFleet([NodeSpec("n", server.url)]) as fleet:
        result = await fleet.status()
    status = result["n"].unwrap()
    assert status.degraded
    assert "unhealthy (1 issue) since " in status.summary()
    assert status.summary().split(", ")[1] == "last: generation failed"


async def test_a_rollout_passes_a_node_unhealthy_from_before_and_logs_it(
    tabby_emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await tabby_emulator_factory(models=["m"])
    server.add_health_issue("an old generation error")
    spec = NodeSpec("n", server.url, admin_key=server.admin_key)
    with caplog.at_level(logging.WARNING, logger="tabby_async"):
        async with TabbyFleet([spec]) as fleet:
            report = await fleet.rollout(model_name="m")
    assert report.ok, report.summary()
    assert "n: unhealthy (1 issue) since " in caplog.text
    assert "an old generation error (from before this rollout" in caplog.text


async def test_the_default_check_called_directly_fails_on_any_issue(
    tabby_emulator_factory: EmulatorFactory,
) -> None:
    server = await tabby_emulator_factory(models=["m"])
    server.add_health_issue("an old generation error")
    async with AsyncTabbyClient(server.url, admin_key=server.admin_key) as client:
        with pytest.raises(VerificationError) as caught:
            await default_check("n", client, ModelLoadRequest(model_name="m"))
    message = str(caught.value)
    assert "n: /health says unhealthy (1 issue) since " in message
    assert message.endswith("last: an old generation error")
