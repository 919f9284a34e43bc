"""The nodes of a fleet and their clients: one shared session, bounded per host.

A :class:`NodePool` is built from node specs (it makes their clients) and/or
clients the caller already has (it borrows them). The clients it makes share
one aiohttp session whose connector is the fleet's connection pool; the pool
creates it on first use, in the running event loop, and closes it with them.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Iterable, Mapping

import aiohttp
from yarl import URL

from .._checks import check_count, check_trace_configs
from .._client import AsyncTabbyClient
from .._state_plan import DesiredState
from ..errors import ClientStateError, InvalidInputError
from ._config import NodeSpec

__all__ = ["NodePool", "most_nodes_per_host"]

#: What a fleet is built from: specs and/or clients, or clients by name.
Nodes = Iterable[NodeSpec | AsyncTabbyClient] | Mapping[str, AsyncTabbyClient]


class NodePool:
    """Every node's name and client, in fleet order.

    ``connection_limit`` bounds the shared session's connections and
    ``limit_per_host`` each node's (see :func:`most_nodes_per_host`);
    ``max_retries`` and ``ssl`` are given to every client the pool makes,
    ``trace_configs`` to the shared session.
    """

    def __init__(
        self,
        nodes: Nodes,
        *,
        connection_limit: int,
        limit_per_host: int,
        max_retries: int,
        ssl: _ssl.SSLContext | bool,
        trace_configs: Iterable[aiohttp.TraceConfig] | None = None,
    ) -> None:
        self._connection_limit = check_count("connection_limit", connection_limit)
        self._trace_configs = check_trace_configs(trace_configs)
        self._limit_per_host = check_count("limit_per_host", limit_per_host)
        self._max_retries = max_retries  # checked by each client, when it is made
        self._ssl = ssl
        items: Iterable[tuple[str | None, NodeSpec | AsyncTabbyClient]]
        if isinstance(nodes, Mapping):
            items = list(nodes.items())
        else:
            items = [(None, node) for node in nodes]
        self._specs: dict[str, NodeSpec] = {}
        self._clients: dict[str, AsyncTabbyClient] = {}
        self.names: list[str] = []
        self._owned: set[str] = set()
        for given_name, node in items:
            name = _node_name(given_name, node)
            if name in self._specs or name in self._clients:
                raise InvalidInputError("nodes", f"two nodes are named {name!r}")
            self.names.append(name)
            if isinstance(node, NodeSpec):
                self._specs[name] = node
            else:
                self._clients[name] = node
        if not self.names:
            raise InvalidInputError("nodes", "a fleet needs at least one node")
        self.session: aiohttp.ClientSession | None = None
        self.closed = False

    def open(self) -> None:
        """Create the shared session and the clients for specs, in the running loop."""
        if self.closed:
            raise ClientStateError("the fleet is closed")
        if self.session is not None or not self._specs:
            return
        asyncio.get_running_loop()  # raises outside a loop, before anything is built
        connector = aiohttp.TCPConnector(
            limit=self._connection_limit,
            limit_per_host=self._limit_per_host * most_nodes_per_host(self._specs.values()),
        )
        session = aiohttp.ClientSession(
            connector=connector, trace_configs=list(self._trace_configs) or None
        )
        made: dict[str, AsyncTabbyClient] = {}
        try:
            for name, spec in self._specs.items():
                made[name] = AsyncTabbyClient(
                    spec.url,
                    api_key=spec.api_key,
                    admin_key=spec.admin_key,
                    session=session,
                    max_retries=self._max_retries,
                    ssl=self._ssl,
                )
        except BaseException:
            # A bad client option: nothing was sent; drop the unused pool
            # without an "unclosed session" warning.
            session.detach()
            raise
        self.session = session
        self._clients.update(made)
        self._owned.update(made)

    def client(self, name: str) -> AsyncTabbyClient:
        """The client of one node (call inside the event loop)."""
        if name not in self._specs and name not in self._clients:
            raise InvalidInputError("node", f"no node is named {name!r}")
        self.open()
        return self._clients[name]

    def clients(self) -> dict[str, AsyncTabbyClient]:
        """Every node's client, in fleet order (call inside the event loop)."""
        self.open()
        return {name: self._clients[name] for name in self.names}

    def declared(self) -> dict[str, DesiredState]:
        """Each node's declared desired state, in fleet order (nodes with none left out)."""
        specs = ((name, self._specs.get(name)) for name in self.names)
        return {name: spec.desired for name, spec in specs if spec and spec.desired is not None}

    def targets(self, nodes: Iterable[str] | None) -> list[tuple[str, AsyncTabbyClient]]:
        """The named nodes (every node for None), each once, with their clients."""
        self.open()
        if nodes is None:
            return [(name, self._clients[name]) for name in self.names]
        if isinstance(nodes, str):
            raise InvalidInputError("nodes", "must be a list of node names, not one string")
        chosen = list(dict.fromkeys(nodes))
        unknown = [n for n in chosen if n not in self._clients]
        if unknown:
            raise InvalidInputError("nodes", f"unknown node names: {', '.join(unknown)}")
        return [(name, self._clients[name]) for name in chosen]

    async def aclose(self) -> None:
        """Close the clients the pool made and its shared session (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for name in self._owned:
            await self._clients[name].aclose()
        session, self.session = self.session, None
        if session is not None:
            await session.close()


def _node_name(given: str | None, node: object) -> str:
    """A node's name: the mapping's key, else the spec's name or the client's URL."""
    if isinstance(node, NodeSpec):
        return node.name if given is None else given
    if isinstance(node, AsyncTabbyClient):
        return given if given is not None else str(node.base_url)
    raise InvalidInputError(
        "nodes", f"must hold NodeSpec or AsyncTabbyClient, not {type(node).__name__}"
    )


def most_nodes_per_host(specs: Iterable[NodeSpec]) -> int:
    """The most nodes that share one host:port (the key of the connector's per-host bound).

    The connector counts connections per host:port, so when several nodes
    share one (path prefixes behind one proxy), its per-host bound is the
    per-node bound times this number. Otherwise eight connections would cap
    a whole fleet behind one proxy, and its other nodes' calls would wait for
    a connection until they timed out.
    """
    counts: dict[tuple[str, int | None, str], int] = {}
    for spec in specs:
        url = URL(spec.url.strip())
        key = ((url.host or "").lower(), url.port, url.scheme)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=1)
