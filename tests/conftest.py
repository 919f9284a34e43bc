"""Shared helpers for the SDK's tests."""

from __future__ import annotations

import aiohttp

from tabby_async import AsyncTabbyClient


def held_connections(client: AsyncTabbyClient) -> int:
    """Connections the client's connector has handed out and not got back."""
    session = client._session
    if session is None or session.connector is None:
        return 0
    connector: aiohttp.BaseConnector = session.connector
    return len(connector._acquired)
