"""Log records of the ``tabby_async`` logger: the fleet operation and node as ``extra`` fields
(``tabby_operation``, ``tabby_node``) that a JSON handler can index, and never a key."""

from __future__ import annotations

import json
import logging

import pytest

from tabby_async import AsyncTabbyClient, PermissionDeniedError
from tabby_async.fleet import NodeSpec, TabbyFleet
from tabby_async.testing import TabbyEmulator

pytestmark = pytest.mark.emulator(models=["alpha", "beta"], auth=True)

WRONG_KEY = "wrong-key-0123456789abcdef"


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tabby_async"]


def as_json(record: logging.LogRecord) -> dict[str, object]:
    """What a JSON log handler makes of a record: its message and every extra field."""
    plain = logging.LogRecord("", 0, "", 0, "", (), None).__dict__
    fields = {k: v for k, v in record.__dict__.items() if k not in plain}
    shown = {"level": record.levelname, "message": record.getMessage(), **fields}
    return json.loads(json.dumps(shown, default=str))


async def test_fleet_records_name_the_operation_and_the_node(
    server: TabbyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    specs = [
        NodeSpec("gpu-01", server.url, api_key=server.api_key),
        NodeSpec("gpu-02", server.url, api_key=WRONG_KEY),
        NodeSpec("gpu-03", "http://127.0.0.1:9", api_key=server.api_key),
    ]
    with caplog.at_level(logging.DEBUG, logger="tabby_async"):
        async with TabbyFleet(specs, max_retries=0) as fleet:
            result = await fleet.models.list()
    assert [r.status for r in result] == ["ok", "authentication_error", "connection_error"]
    seen = [as_json(r) for r in records(caplog)]
    per_node = {
        (r["tabby_node"], r["level"])
        for r in seen
        if r["tabby_operation"] == "list" and str(r["message"]).startswith("fleet list")
    }
    assert per_node == {("gpu-01", "DEBUG"), ("gpu-02", "INFO"), ("gpu-03", "INFO")}
    # The request records logged inside a node's operation carry its name too.
    requests = [r for r in seen if str(r["message"]).startswith("GET /v1/model/list")]
    assert {r["tabby_node"] for r in requests} == {"gpu-01"}
    assert {r["tabby_operation"] for r in requests} == {"list"}


async def test_a_retry_inside_a_fleet_operation_names_its_node(
    server: TabbyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    server.faults.fail_next(1, status=502, path="/v1/model/list")
    specs = [NodeSpec("gpu-01", server.url, api_key=server.api_key)]
    with caplog.at_level(logging.DEBUG, logger="tabby_async"):
        async with TabbyFleet(specs) as fleet:
            assert (await fleet.models.list()).ok
    retries = [r for r in records(caplog) if r.getMessage().startswith("retry 1/2")]
    assert [(r.tabby_operation, r.tabby_node) for r in retries] == [("list", "gpu-01")]  # type: ignore[attr-defined]


async def test_records_outside_a_fleet_carry_empty_fields(
    client: AsyncTabbyClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tabby_async"):
        await client.models.list()
    (record,) = records(caplog)
    assert (record.tabby_operation, record.tabby_node) == (None, None)  # type: ignore[attr-defined]


async def test_no_record_holds_a_key(
    server: TabbyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    server.faults.fail_next(2, status=503, path="/v1/model/list")
    specs = [
        NodeSpec("ok", server.url, api_key=server.api_key, admin_key=server.admin_key),
        NodeSpec("bad-admin", server.url, api_key=server.api_key, admin_key=WRONG_KEY),
        NodeSpec("bad-api", server.url, api_key=WRONG_KEY),
    ]
    with caplog.at_level(logging.DEBUG, logger="tabby_async"):
        async with TabbyFleet(specs) as fleet:
            await fleet.models.list()
            await fleet.status()
            await fleet.models.load(model_name="beta")
            await fleet.rollout(model_name="alpha", max_failures=3)
        async with AsyncTabbyClient(server.url, admin_key=WRONG_KEY) as client:
            with pytest.raises(PermissionDeniedError):
                await client.models.unload()
    seen = records(caplog)
    assert any(r.levelno == logging.INFO for r in seen)  # the failures were logged
    text = "\n".join(json.dumps(as_json(r), default=str) + repr(r.args) for r in seen)
    for key in (server.api_key, server.admin_key, WRONG_KEY):
        assert key not in text


async def test_a_fleet_loads_already_loaded_warning_names_its_node(
    server: TabbyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    server.preload("alpha", max_seq_len=2048)
    specs = [NodeSpec("gpu-07", server.url, admin_key=server.admin_key)]
    with caplog.at_level(logging.WARNING, logger="tabby_async"):
        async with TabbyFleet(specs) as fleet:
            result = await fleet.models.load(model_name="alpha", max_seq_len=4096)
    assert result.ok
    (warning,) = [r for r in records(caplog) if "already loaded" in r.getMessage()]
    assert (warning.tabby_operation, warning.tabby_node) == ("load", "gpu-07")  # type: ignore[attr-defined]
