"""The gateway's upkeep: TTL unloads, the periodic refresh, the stall watchdog, the status view.

:class:`Upkeep` is the part of :class:`~tabby_async.gateway.Gateway` that
runs beside the requests rather than for one; the engine's own module holds
the queues and swaps. It names the engine's state it reads (the attributes
below), and the engine provides them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import AsyncTabbyClient, TabbyError
from ..errors import ModelNotLoadedError
from ._catalog import Catalog, CatalogModel, GatewayPolicy, ModelKind, last_segment
from ._metrics import GatewayMetrics
from ._placement import NodeState

__all__ = ["Stream", "Upkeep"]

logger = logging.getLogger("tabby_async.gateway")


@dataclass(eq=False)
class Stream:
    """An open upstream stream, as the stall watchdog sees it."""

    close: Any  # the upstream response's close()
    tokens: int = 0
    seen: int = -1
    since: float = 0.0
    stalled: bool = False


class Upkeep:
    """TTL, refresh, watchdog and status of a gateway (mixed into it)."""

    catalog: Catalog
    policy: GatewayPolicy
    nodes: dict[str, NodeState]
    clients: dict[str, AsyncTabbyClient]
    metrics: GatewayMetrics
    streams: set[Stream]
    _ttl_timer: asyncio.TimerHandle | None
    _queues: dict[str, Any]
    _changed: asyncio.Event

    async def wait_for(
        self, predicate: Callable[[Any], bool], timeout: float | None = 30.0
    ) -> None:
        """Return once ``predicate(self)`` holds, woken by each change of the engine's state.

        A change is a request queued, served from the queue, refused or gone
        from it (its client left), a place's last request ended, a swap started
        or ended, a refresh. For tests::

            await gateway.wait_for(lambda g: g.queued("llama-8b") == 3)

        Raises:
            TimeoutError: ``predicate`` did not hold within ``timeout`` seconds.
        """

        async def wait() -> None:
            while not predicate(self):
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def _spawn(self, coro: Any) -> None:
        raise NotImplementedError

    def _pump(self) -> None:
        raise NotImplementedError

    def _signal(self) -> None:
        """Wake :meth:`wait_for`: the engine's state changed."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def replicas(self, name: str, kind: ModelKind) -> list[str]:
        """The nodes that hold ``name`` and are up."""
        return [n.name for n in self.nodes.values() if n.up and n.holds(name, kind)]

    def queued(self, name: str) -> int:
        """How many requests wait for ``name``."""
        return len(self._queues[name])

    # ------------------------------------------------------------------ TTL

    def _arm_ttl(self) -> None:
        """Set the timer for the next model whose time to live runs out."""
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
            self._ttl_timer = None
        due = self._ttl_due()
        if due:
            soonest = min(at for at, _, _ in due)
            loop = asyncio.get_running_loop()
            delay = max(0.0, soonest - time.monotonic())
            self._ttl_timer = loop.call_later(delay, self._ttl_fire)

    def _ttl_due(self) -> list[tuple[float, NodeState, CatalogModel]]:
        found = []
        for node in self.nodes.values():
            if node.swapping is not None or not node.up:
                continue
            for slot in node.slots.values():
                entry = self.catalog.models.get(slot.model or "")
                if entry is None or entry.ttl is None or entry.pinned or slot.in_flight:
                    continue
                found.append((slot.last_used + entry.ttl, node, entry))
        return found

    def _ttl_fire(self) -> None:
        self._ttl_timer = None
        now = time.monotonic()
        for at, node, entry in self._ttl_due():
            if at <= now and node.swapping is None:
                node.swapping, node.swapping_kind = "", entry.kind
                self._spawn(self._unload(node, entry))
        self._arm_ttl()

    async def _unload(self, node: NodeState, entry: CatalogModel) -> None:
        started = time.monotonic()
        client = self.clients[node.name]
        slot = node.slots[entry.kind]
        try:
            if entry.kind == "model":
                await client.models.unload(missing_ok=True)
            else:
                await client.models.unload_embedding(missing_ok=True)
        except TabbyError as err:
            logger.warning("ttl unload of %s on %s failed: %s", entry.name, node.name, err)
        else:
            slot.model = slot.seen = None
            took = time.monotonic() - started
            self.metrics.swapped(node.name, "ttl", took)
            logger.info("swap on %s: %s unloaded (ttl %g s)", node.name, entry.name, entry.ttl)
        finally:
            node.swapping = None
        self._arm_ttl()
        self._pump()

    def _retry_after(self, entry: CatalogModel, now: float) -> float:
        """Seconds until a node may try ``entry`` again: its back-off's end, else a refresh."""
        ends = [n.backoff[entry.name] - now for n in self.nodes.values() if entry.name in n.backoff]
        later = [e for e in ends if e > 0]
        return min(later) if later else self.policy.refresh_interval

    # ------------------------------------------------------------------ refresh

    async def refresh(self) -> None:
        """Read every node's health and loaded models now (also done every refresh interval)."""
        await asyncio.gather(*(self._refresh_node(n) for n in self.nodes.values()))
        self._arm_ttl()  # a model found idle may have a time to live
        self._pump()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.policy.refresh_interval)
            await self.refresh()

    async def _refresh_node(self, node: NodeState) -> None:
        client = self.clients[node.name]
        try:
            health = await client.health()
            try:
                card_id: str | None = (await client.models.get()).id
            except ModelNotLoadedError:
                card_id = None
            embedding = await client.models.loaded_embedding()
        except TabbyError as err:
            if node.up:
                logger.warning("node %s is down: %s", node.name, err)
            node.up = False
            return
        if not node.up:
            logger.info("node %s is up", node.name)
        node.up = True
        node.healthy = health.healthy
        if node.swapping is not None:
            return  # the swap's own outcome is what it holds
        self._reconcile(node, "model", card_id)
        self._reconcile(node, "embedding", None if embedding is None else embedding.id)

    def _reconcile(self, node: NodeState, kind: ModelKind, card_id: str | None) -> None:
        """Take what the node reports for one place, claiming only what the card proves."""
        slot = node.slots[kind]
        if card_id is None:
            slot.model = slot.seen = None
            return
        held = self.catalog.models.get(slot.model or "")
        if held is not None and last_segment(held.folder) == card_id:
            return  # what the gateway loaded (or proved) is still there
        if slot.model is not None:
            logger.info("node %s: %s was replaced outside the gateway", node.name, slot.model)
        slot.model, slot.seen = None, card_id
        for entry in self.catalog.models.values():
            # A flat folder name is what the card's id shows of it.
            if entry.kind == kind and entry.folder == card_id:
                slot.model, slot.seen = entry.name, None
                slot.last_used = time.monotonic()
                break

    # ------------------------------------------------------------------ the watchdog

    def watch(self, close: Any) -> Stream:
        """Register an open upstream stream with the stall watchdog."""
        stream = Stream(close, since=time.monotonic())
        self.streams.add(stream)
        return stream

    async def _watchdog(self) -> None:
        bound = self.policy.stall_timeout
        while True:
            await asyncio.sleep(min(bound / 3, 5.0))
            now = time.monotonic()
            for stream in list(self.streams):
                if stream.tokens != stream.seen:
                    stream.seen, stream.since = stream.tokens, now
                elif now - stream.since > bound and not stream.stalled:
                    stream.stalled = True
                    stream.close()

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """What each node holds, its requests in flight, idle time and state; each queue."""
        now = time.monotonic()
        nodes = []
        for node in self.nodes.values():
            places: dict[str, Any] = {}
            for kind, slot in node.slots.items():
                places[kind] = {
                    "model": slot.model,
                    "unverified": slot.seen,
                    "in_flight": slot.in_flight,
                    "idle_seconds": None
                    if slot.empty or slot.in_flight
                    else round(now - slot.last_used, 1),
                    "draining": slot.draining,
                }
            nodes.append(
                {
                    "name": node.name,
                    "up": node.up,
                    "degraded": node.up and not node.healthy,
                    "swapping": node.swapping,
                    **places,
                }
            )
        queues = {name: len(q) for name, q in self._queues.items()}
        return {"nodes": nodes, "queues": queues}
