"""The interface every benchmarked client implements (imports nothing heavy)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass


@dataclass(frozen=True)
class ClientConfig:
    base_url: str  # e.g. http://127.0.0.1:PORT, no trailing slash
    pool_limit: int  # max connections in the pool, the same for every client
    models: int  # K: how many cards a list must decode to
    events: int  # M: events in a full load stream
    api_key: str = "bench-api-key"
    admin_key: str = "bench-admin-key"
    model_name: str = "Qwen2.5-7B-Instruct-exl2-6.0bpw"
    nodes: tuple[str, ...] = ()  # the fleet's base URLs (fleet_sweep only)
    fleet_concurrency: int = 64  # nodes probed at once, as TabbyFleet's max_concurrency


class BenchError(RuntimeError):
    """A client got something other than what the server sent."""


class BenchClient:
    """One client stack. Each operation returns its number of units (calls or events)."""

    name = "base"

    def __init__(self, cfg: ClientConfig) -> None:
        self.cfg = cfg

    async def start(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def list_models(self) -> int:
        raise NotImplementedError

    async def get_model(self) -> int:
        raise NotImplementedError

    async def get_props(self) -> int:
        raise NotImplementedError

    async def load_stream(self) -> int:
        """Read a full load stream; return the number of events seen."""
        raise NotImplementedError

    async def open_stream(self, stack: AsyncExitStack) -> None:
        """Open a load stream, read its first event, and leave it open on ``stack``."""
        raise NotImplementedError

    async def fleet_sweep(self) -> int:
        """One status sweep of every node in ``cfg.nodes``; returns 1.

        Per node, one after the other (as ``TabbyFleet.status()`` does by default):
        GET /health, /v1/auth/permission, /v1/model, /v1/model/embedding (a 503
        "not loaded" there is an answer); ``cfg.fleet_concurrency`` nodes at once.
        """
        raise NotImplementedError


def check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)
