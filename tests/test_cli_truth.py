"""The CLI's desired state tells the truth: ``fleet ensure`` and ``fleet apply``, emulated.

A nested name whose last segment is the card id is never "up to date" on
the card alone, requests the server does not apply end in a mismatch that a
second run repeats without writing, and a context above the cache is a
usage error before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tabby_async.testing import EmulatedModel, TabbyEmulator
from tests.helpers import run_cli

LOAD = "/v1/model/load"
UNLOAD = "/v1/model/unload"


@pytest.fixture
async def node(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TabbyEmulator]:
    """One emulated node with two folders that end in the same segment."""
    for name in ("TABBY_URL", "TABBY_API_KEY", "TABBY_ADMIN_KEY", "TABBY_FLEET_NODES"):
        monkeypatch.delenv(name, raising=False)
    server = TabbyEmulator(
        models=[
            EmulatedModel("org/model/4.0bpw", modules=2),
            EmulatedModel("other-org/model/4.0bpw", modules=2),
            EmulatedModel("novision", modules=2),
        ],
        ping_interval=0,
    )
    await server.start()
    monkeypatch.setenv("NODE_ADMIN", server.admin_key)
    try:
        yield server
    finally:
        await server.close()


def nodes_file(tmp_path: Path, node: TabbyEmulator, desired: str = "") -> str:
    path = tmp_path / "nodes.toml"
    path.write_text(
        f'{desired}\n[[nodes]]\nname = "n0"\nurl = "{node.url}"\nadmin_key_env = "NODE_ADMIN"\n'
    )
    return str(path)


def writes(server: TabbyEmulator) -> list[str]:
    return [r.path for r in server.requests if r.method == "POST"]


async def test_fleet_ensure_loads_another_folder_with_the_same_last_segment(
    node: TabbyEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node.preload("org/model/4.0bpw")
    node.reset_requests()
    path = nodes_file(tmp_path, node)
    dry = await run_cli(
        capsys, "fleet", "ensure", "--nodes", path, "other-org/model/4.0bpw", "--dry-run"
    )
    assert dry.code == 0, dry.err
    assert "plan: 1 load" in dry.out
    assert "the server decides" in dry.out
    assert "already loaded as requested" not in dry.out

    done = await run_cli(capsys, "fleet", "ensure", "--nodes", path, "other-org/model/4.0bpw")
    assert done.code == 0, done.err
    assert node.loaded == "other-org/model/4.0bpw"
    assert writes(node) == [LOAD]


async def test_fleet_apply_never_says_up_to_date_for_another_folder(
    node: TabbyEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node.preload("org/model/4.0bpw")
    node.reset_requests()
    path = nodes_file(tmp_path, node, '[desired]\nmodel = "other-org/model/4.0bpw"\n')
    dry = await run_cli(capsys, "fleet", "apply", "--nodes", path, "--dry-run")
    assert dry.code == 0, dry.err
    assert "up to date" not in dry.out

    first = await run_cli(capsys, "fleet", "apply", "--nodes", path)
    assert first.code == 0, first.out + first.err
    assert node.loaded == "other-org/model/4.0bpw"

    node.reset_requests()
    again = await run_cli(capsys, "fleet", "apply", "--nodes", path, "--json")
    assert again.code == 0, again.out + again.err
    document = json.loads(again.out)
    (result,) = document["results"]
    assert result["value"]["done"] == []  # the server's no-op proved the folder
    assert writes(node) == [LOAD]  # that no-op, and no unload


async def test_a_request_the_server_does_not_apply_fails_the_same_way_twice_writing_once(
    node: TabbyEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = nodes_file(tmp_path, node)
    first = await run_cli(capsys, "fleet", "ensure", "--nodes", path, "novision", "--vision")
    assert first.code == 1
    assert "vision" in first.out + first.err
    assert writes(node) == [LOAD]
    # One process: the fleet's node client remembers the card its load left.
    # A second run is a new process, which loads once more and fails alike.
    node.reset_requests()
    second = await run_cli(capsys, "fleet", "ensure", "--nodes", path, "novision", "--vision")
    assert second.code == 1
    assert "vision" in second.out + second.err
    assert UNLOAD in writes(node)  # a new client has no memory of the first run


async def test_a_context_above_the_cache_is_refused_before_anything_is_sent(
    node: TabbyEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = nodes_file(tmp_path, node)
    node.reset_requests()
    result = await run_cli(
        capsys,
        "fleet",
        "ensure",
        "--nodes",
        path,
        "novision",
        "--max-seq-len",
        "8192",
        "--cache-size",
        "4096",
    )
    assert result.code == 2
    assert "max_seq_len" in result.err
    assert node.requests == []

    bad = nodes_file(
        tmp_path,
        node,
        '[desired.model]\nmodel_name = "novision"\nmax_seq_len = 8192\ncache_size = 4096\n',
    )
    applied = await run_cli(capsys, "fleet", "apply", "--nodes", bad)
    assert applied.code == 2
    assert "max_seq_len" in applied.err
    assert len(applied.err.strip().splitlines()) == 1
    assert node.requests == []


async def test_cache_mode_and_the_models_own_context_as_the_server_reads_them(
    node: TabbyEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = nodes_file(tmp_path, node)
    node.preload("novision", cache_mode="q4")  # an FP16 cache, whatever it looks like
    node.reset_requests()
    dry = await run_cli(
        capsys, "fleet", "ensure", "--nodes", path, "novision", "--cache-mode", "Q4", "--dry-run"
    )
    assert dry.code == 0, dry.err
    assert "plan: 1 reload" in dry.out
    assert "cache_mode: wanted 'Q4', loaded 'q4'" in dry.out

    same = await run_cli(
        capsys, "fleet", "ensure", "--nodes", path, "novision", "--cache-mode", "FP16"
    )
    assert same.code == 0, same.err
    assert writes(node) == []  # q4 is read as FP16: nothing to do

    own = await run_cli(
        capsys, "fleet", "ensure", "--nodes", path, "novision", "--max-seq-len", "-1"
    )
    assert own.code == 0, own.err
    assert "max_seq_len" in own.out  # named as not compared
    assert writes(node) == []
