"""Fixtures shared by the tests, built on the shipped pytest plugin.

``server`` is an emulator from the plugin's ``tabby_emulator_factory``, set up by
the closest ``@pytest.mark.emulator(**TabbyEmulator arguments)`` mark (a module's
``pytestmark`` or the test's own); for the plugin's default set-up, use its
``tabby_emulator`` fixture instead. ``client`` is an admin-keyed client of it, ``reader`` one with
the api key only, and ``connections`` counts the connections clients hold.
Helper functions are in ``tests/helpers.py``.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tabby_async import AsyncTabbyClient
from tabby_async.testing import TabbyEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import SPAN_EXPORTER, BuiltSite, ConnectionCounter, span_provider


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "emulator(*args, **kwargs): the TabbyEmulator arguments of the server fixture"
    )


@pytest.fixture(autouse=True)
def _no_tabby_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clients read TABBY_URL/TABBY_API_KEY/TABBY_ADMIN_KEY when no argument is given:
    keep a developer's exported settings out of every test (tests set their own)."""
    for name in ("TABBY_URL", "TABBY_API_KEY", "TABBY_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
async def server(
    request: pytest.FixtureRequest, tabby_emulator_factory: EmulatorFactory
) -> TabbyEmulator:
    """A started emulator set up by the test's ``emulator`` mark, closed at teardown."""
    mark = request.node.get_closest_marker("emulator")
    if mark is None:
        pytest.fail("the server fixture needs @pytest.mark.emulator(...) (or use tabby_emulator)")
    # A copy: the mark's arguments are made once per module, the emulator once per test.
    args, kwargs = copy.deepcopy((mark.args, mark.kwargs))
    return await tabby_emulator_factory(*args, **kwargs)


@pytest.fixture
async def client(server: TabbyEmulator) -> AsyncIterator[AsyncTabbyClient]:
    """A client of ``server`` with its admin key."""
    async with AsyncTabbyClient(server.url, admin_key=server.admin_key) as admin:
        yield admin


@pytest.fixture
async def reader(server: TabbyEmulator) -> AsyncIterator[AsyncTabbyClient]:
    """A client of ``server`` with its api key only."""
    async with AsyncTabbyClient(server.url, api_key=server.api_key) as api:
        yield api


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> ConnectionCounter:
    """Counts the connections every client made in this test holds (both of its pools).

    The clients build their pools from ``aiohttp.TCPConnector``; this puts a
    counting subclass in its place (see :class:`tests.helpers.ConnectionCounter`).
    Request it before the client's first call: the pools are made then.
    """
    counter = ConnectionCounter()
    monkeypatch.setattr(aiohttp, "TCPConnector", counter.connector_class)
    return counter


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, for raw HTTP (a gateway's routes)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The exporter that every finished span of this test goes to (emptied first)."""
    span_provider()
    SPAN_EXPORTER.clear()
    yield SPAN_EXPORTER
    SPAN_EXPORTER.clear()


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    """The documentation site, built once per session as ``./scripts/docs`` builds it.

    ``mkdocs build --strict`` with ``NO_MKDOCS_2_WARNING=1``, into a temporary
    directory; what it printed is kept for the tests to read.
    """
    root = Path(__file__).resolve().parent.parent
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return BuiltSite(root=site, output=run.stdout + run.stderr)
