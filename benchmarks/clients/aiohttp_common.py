"""The one aiohttp pool configuration that every aiohttp-based client uses."""

from __future__ import annotations

import aiohttp


def make_session(pool_limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=pool_limit, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector)


def make_fleet_session(fleet_concurrency: int) -> aiohttp.ClientSession:
    """The pool TabbyFleet builds for itself: room for 4 probes per node, 8 per host."""
    limit = max(100, 4 * fleet_concurrency)
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=8)
    return aiohttp.ClientSession(connector=connector)
