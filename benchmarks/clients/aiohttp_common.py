"""The one aiohttp pool configuration that every aiohttp-based client uses."""

from __future__ import annotations

import aiohttp


def make_session(pool_limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=pool_limit, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector)
