"""``tabby-async gateway``: refusals as one line and exit 2, then a real gateway in a subprocess."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import gateway_node, guarded, node_loads, post_completion, run_cli, tabby_cli

CATALOG = '[models.m1]\n[models.m2]\nttl = 600\n[gateway]\nqueue_size = 7\n'


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    nodes = tmp_path / "nodes.toml"
    nodes.write_text('[[nodes]]\nname = "a"\nurl = "http://127.0.0.1:9"\n')
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    return nodes, catalog


@pytest.mark.parametrize(
    ("extra", "catalog_text", "said"),
    [
        (["--host", "0.0.0.0"], CATALOG, "refusing to serve on 0.0.0.0 without client keys"),
        (["--host", "gateway.example"], CATALOG, "without client keys"),
        (["--api-key-env", "NOT_SET_HERE"], CATALOG, "NOT_SET_HERE is not set"),
        ([], "[models.m1]\nttl = -1\n", "models.m1.ttl: must be seconds above 0"),
        ([], '[models.m1]\nnodes = ["b"]\n', "models.m1.nodes: 'b' is not a node"),
        ([], "[models.m1]\ncache_size = 2048\n", "models.m1.cache_size: a cache of 2048"),
        ([], "[modles.m1]\n", "modles: is not a catalog table"),
        ([], "not toml [", "is not valid TOML"),
    ],
)
async def test_a_refusal_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    files: tuple[Path, Path],
    extra: list[str],
    catalog_text: str,
    said: str,
) -> None:
    nodes, catalog = files
    catalog.write_text(catalog_text)
    result = await run_cli(
        capsys, "gateway", "--nodes", str(nodes), "--catalog", str(catalog), *extra
    )
    assert result.code == 2
    assert said in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert result.out == ""


async def test_the_gateway_serves_a_fleet_and_prints_its_status(
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
    proc = await asyncio.create_subprocess_exec(
        *tabby_cli(),
        "gateway",
        "--nodes",
        str(nodes),
        "--catalog",
        str(catalog),
        "--port",
        "0",
        "--queue-size",
        "3",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        banner = (await guarded(proc.stdout.readline())).decode()
        assert "for 1 node and 2 models" in banner, banner
        url = banner.split()[2].removesuffix("/v1")
        status, data, _ = await guarded(post_completion(http, url, "m1"))
        assert status == 200 and data["choices"][0]["text"].startswith("m1:1 ")
        shown = await asyncio.to_thread(
            subprocess.run,
            [*tabby_cli(), "gateway", "--status", url + "/v1"],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await guarded(proc.communicate())
    assert proc.returncode == 0, err
    assert "gateway stopped" in out.decode()
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["node", "state", "model", "in", "flight", "idle", "embedding"]
    assert lines[1].split()[:4] == ["a", "up", "m1", "0"]
    assert lines[-1] == "queued: nothing"
    assert node_loads(a) == ["m1"]
