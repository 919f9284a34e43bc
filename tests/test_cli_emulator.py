"""``tabby-async emulator`` as a user starts it: its start-up lines, and ``--nodes N``.

Each test runs the command in a subprocess (tests/helpers.py's ``cli_emulator``,
on free loopback ports) and uses what it prints as a user would: the
``export`` line's variables, and for ``--nodes`` the nodes file it writes.
"""

from __future__ import annotations

import asyncio
import subprocess
import tomllib
from pathlib import Path

import pytest

from tabby_async import AsyncTabbyClient
from tabby_async.cli import main
from tabby_async.cli._emulator import _DEMO_DRAFTS, _DEMO_EMBEDDINGS, _DEMO_MODELS
from tabby_async.cli._emulator_nodes import MARK, node_names, nodes_toml
from tabby_async.fleet import TabbyFleet, read_nodes_toml
from tests.helpers import cli_emulator, export_variables, guarded, on_a_free_port, tabby_cli


async def banner_of(args: list[str], cwd: Path) -> tuple[str, asyncio.subprocess.Process]:
    """Start the emulator and read its start-up lines up to the ``try`` command."""
    proc = await asyncio.create_subprocess_exec(
        *tabby_cli(),
        "emulator",
        *on_a_free_port(args),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    seen = ""
    while "then try:" not in seen:
        line = (await guarded(proc.stdout.readline())).decode()
        assert line, seen
        seen += line
    seen += (await guarded(proc.stdout.readline())).decode()
    return seen, proc


async def stop(proc: asyncio.subprocess.Process) -> str:
    proc.terminate()
    out, err = await guarded(proc.communicate())
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_the_start_up_line_names_every_model_and_the_export_line_works(
    tmp_path: Path,
) -> None:
    banner, proc = await banner_of([], tmp_path)
    try:
        first = banner.splitlines()[0]
        assert first.startswith(f"TabbyAPI emulator serving {', '.join(_DEMO_MODELS)} on http")
        assert f"drafts:     {', '.join(_DEMO_DRAFTS)}" in banner
        assert f"embeddings: {', '.join(_DEMO_EMBEDDINGS)}" in banner
        (export,) = [line.strip() for line in banner.splitlines() if "export " in line]
        variables = export_variables(export)
        assert sorted(variables) == ["TABBY_ADMIN_KEY", "TABBY_API_KEY", "TABBY_URL"]
        client = AsyncTabbyClient(
            variables["TABBY_URL"],
            api_key=variables["TABBY_API_KEY"],
            admin_key=variables["TABBY_ADMIN_KEY"],
        )
        async with client:
            assert (await client.models.list()).ids == list(_DEMO_MODELS)
            await client.models.load(model_name=_DEMO_MODELS[1])
            assert (await client.models.get()).id == _DEMO_MODELS[1]
    finally:
        assert (await stop(proc)).rstrip().endswith("emulator stopped")


async def test_keys_given_are_not_echoed_nor_exported(tmp_path: Path) -> None:
    banner, proc = await banner_of(
        ["--api-key", "sekrit-api", "--admin-key", "sekrit-admin"], tmp_path
    )
    try:
        assert "sekrit" not in banner
        (export,) = [line.strip() for line in banner.splitlines() if "export " in line]
        assert list(export_variables(export)) == ["TABBY_URL"]
    finally:
        await stop(proc)


async def test_nodes_serves_a_fleet_its_nodes_file_describes(tmp_path: Path) -> None:
    async with cli_emulator(["--nodes", "3"], cwd=tmp_path) as variables:
        assert sorted(variables) == [
            "TABBY_ADMIN_KEY",
            "TABBY_API_KEY",
            "TABBY_FLEET_NODES",
            "TABBY_URL",
        ]
        path = Path(variables["TABBY_FLEET_NODES"])
        assert path == tmp_path / "nodes.toml"
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        assert text.startswith(MARK)
        assert "TABBY_ADMIN_KEY" in text and variables["TABBY_ADMIN_KEY"] not in text
        specs, _ = read_nodes_toml(path, env=variables)
        assert [s.name for s in specs] == ["gpu-01", "gpu-02", "gpu-03"]
        assert all(s.url.startswith("http://127.0.0.1:") for s in specs)
        assert specs[0].url == variables["TABBY_URL"]
        assert len({s.url for s in specs}) == 3
        async with TabbyFleet.from_toml(path, env=variables) as fleet:
            loads = await fleet.models.load(model_name=_DEMO_MODELS[0])
            assert loads.ok, loads.summary()
            status = await fleet.status()
            assert [n.value.model.id if n.value and n.value.model else None for n in status] == [
                _DEMO_MODELS[0]
            ] * 3
    # Stopping removed the file it wrote.
    assert not (tmp_path / "nodes.toml").exists()


async def test_nodes_never_replaces_a_nodes_file_of_yours(tmp_path: Path) -> None:
    mine = tmp_path / "nodes.toml"
    mine.write_text('[[nodes]]\nname = "prod"\nurl = "http://127.0.0.1:1"\n', encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        *tabby_cli(),
        "emulator",
        "--nodes",
        "2",
        "--port",
        "0",
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = await guarded(proc.communicate())
    assert proc.returncode == 2
    assert "was not written by the emulator; pass --nodes-file" in err.decode()
    assert mine.read_text(encoding="utf-8").startswith("[[nodes]]")
    # Another name works, and a file of its own is replaced on the next start.
    async with cli_emulator(["--nodes", "1", "--nodes-file", "emu.toml"], cwd=tmp_path) as env:
        assert Path(env["TABBY_FLEET_NODES"]) == tmp_path / "emu.toml"
    (tmp_path / "emu.toml").write_text(nodes_toml(["http://127.0.0.1:1"]), encoding="utf-8")
    async with cli_emulator(["--nodes", "1", "--nodes-file", "emu.toml"], cwd=tmp_path) as env:
        [spec], _ = read_nodes_toml(env["TABBY_FLEET_NODES"], env=env)
        assert spec.url == env["TABBY_URL"] != "http://127.0.0.1:1"


def test_node_names_and_the_file_format() -> None:
    assert node_names(3) == ["gpu-01", "gpu-02", "gpu-03"]
    assert node_names(100)[-1] == "gpu-100" and node_names(100)[0] == "gpu-001"
    data = tomllib.loads(nodes_toml(["http://127.0.0.1:5000", "http://127.0.0.1:5001"]))
    assert data == {
        "defaults": {"api_key_env": "TABBY_API_KEY", "admin_key_env": "TABBY_ADMIN_KEY"},
        "nodes": [
            {"name": "gpu-01", "url": "http://127.0.0.1:5000"},
            {"name": "gpu-02", "url": "http://127.0.0.1:5001"},
        ],
    }


@pytest.mark.parametrize("count", ["0", "257", "two"])
def test_a_bad_node_count_is_a_usage_error(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--nodes", count]) == 2
    assert "--nodes" in capsys.readouterr().err
