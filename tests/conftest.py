"""Shared helpers for the SDK's tests."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from tabby_async import AsyncTabbyClient


def held_connections(client: AsyncTabbyClient) -> int:
    """Connections the client's connectors have handed out and not got back.

    Both pools count: the control calls' and the loads' and downloads'.
    """
    held = 0
    for session in (client._sessions._control, client._sessions._long):
        if session is not None and session.connector is not None:
            connector: aiohttp.BaseConnector = session.connector
            held += len(connector._acquired)
    return held


@pytest.fixture(autouse=True)
def _no_tabby_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clients read TABBY_URL/TABBY_API_KEY/TABBY_ADMIN_KEY when no argument is given:
    keep a developer's exported settings out of every test (tests set their own)."""
    for name in ("TABBY_URL", "TABBY_API_KEY", "TABBY_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield
