"""The gateway's engine: queues, swaps and drains over a fleet's clients (upkeep: ``_upkeep``).

:class:`Gateway` holds one state per node and one FIFO queue per model. A request ``acquire``\\ s a
node (at once when a node holds its model, else after waiting in the queue
while the engine loads it somewhere) and ``release``\\ s it when its answer
has been passed on. Everything that changes the state runs on the event
loop without awaiting between the decision and the bookkeeping, so a
request never lands on a node that a swap has just claimed.

What the engine never does, because of how TabbyAPI behaves:

- send a request to a node that lacks its model (with nothing loaded the
  server answers a request naming a model with a bare text 500, and with a
  model loaded it answers with that one, whatever was asked);
- unload, or load over, a model while requests for it run on that node
  (an unload cuts them off; a load over running work parks new requests
  and then fails them): a swap waits for them, up to the drain timeout;
- drop a node whose ``/health`` says unhealthy (it stays so after any error).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .. import AsyncTabbyClient, DesiredState, ModelMismatchError, TabbyError, tracing
from ..fleet import TabbyFleet
from ..types import EmbeddingModelLoadRequest, ModelLoadRequest
from ._catalog import Catalog, CatalogModel, ModelKind
from ._errors import GatewayError
from ._metrics import GatewayMetrics
from ._placement import NodeState, Placement, can_ever_place, pick_replica, place
from ._proxy import routes
from ._upkeep import Stream, Upkeep

__all__ = ["Gateway"]

logger = logging.getLogger("tabby_async.gateway")

#: The most bytes of one request body (long prompts, many embedding inputs).
MAX_BODY = 64 * 1024 * 1024


@dataclass(eq=False)
class _Waiter:
    """One request waiting for its model: resolved with the node that serves it."""

    future: asyncio.Future[NodeState]
    since: float
    timer: asyncio.TimerHandle | None = None


class Gateway(Upkeep):
    """One OpenAI-compatible endpoint over a fleet: routes by model, loads on demand, drains.

    Build it from a :class:`~tabby_async.fleet.TabbyFleet` and a
    :class:`~tabby_async.gateway.Catalog`, then serve :meth:`app` (an
    ``aiohttp.web.Application`` that starts and stops the gateway with
    itself, and can be mounted in another with ``add_subapp``), or call
    :meth:`start` and :meth:`aclose` yourself. ``api_keys``: the keys
    clients must send (``Authorization: Bearer`` or ``x-api-key``); none
    means no check, for a gateway on loopback.

    The gateway reaches each node with the fleet's client of it: the node's
    api key for inference, its admin key only for loads and unloads.
    """

    def __init__(
        self,
        fleet: TabbyFleet,
        catalog: Catalog,
        *,
        api_keys: tuple[str, ...] | list[str] = (),
        close_fleet: bool = False,
    ) -> None:
        catalog.check_nodes(fleet.nodes)
        self.catalog = catalog
        self.policy = catalog.policy
        self.fleet = fleet
        self._close_fleet = close_fleet
        self.api_keys = tuple(api_keys)
        self.clients: dict[str, AsyncTabbyClient] = fleet.clients
        self.nodes: dict[str, NodeState] = {name: NodeState(name) for name in fleet.nodes}
        self._queues: dict[str, deque[_Waiter]] = {name: deque() for name in catalog.models}
        self._loading: dict[str, int] = dict.fromkeys(catalog.models, 0)
        self._drained: dict[tuple[str, ModelKind], asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.streams: set[Stream] = set()
        self._ttl_timer: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()
        self._started = False
        self._closed = False  # no request waits any more
        self._stopped = False  # the background work is stopped
        self.metrics = GatewayMetrics(self)

    def __repr__(self) -> str:
        return f"<Gateway {len(self.nodes)} nodes, {len(self.catalog.models)} models>"

    # ------------------------------------------------------------------ life

    def app(self) -> web.Application:
        """The gateway as an aiohttp application, started and stopped with it.

        Mount it with ``parent.add_subapp("/llm", gateway.app())`` or serve it
        alone, with ``handler_cancellation=True`` (``web.run_app``,
        ``web.AppRunner``) so that a client that goes away cancels its request
        at once and the node stops generating (else at the node's next chunk).
        It raises glibc's mmap threshold: socket reads then stay on the heap.
        """
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes(routes(self))
        app.cleanup_ctx.append(self._life)
        # The server waits for its running handlers before the cleanup runs: the
        # requests that wait in queues are answered when it begins to stop.
        app.on_shutdown.append(lambda _: self._refuse_waiting())
        return app

    async def _life(self, _: web.Application) -> AsyncIterator[None]:
        await self.start()
        yield
        await self.aclose()

    async def start(self) -> None:
        """Read every node's state, start the refresh and the watchdog, load pinned models."""
        if self._started:
            return
        self._started = True
        await self.refresh()
        self._spawn(self._refresh_loop())
        self._spawn(self._watchdog())
        self._pump()

    async def _refuse_waiting(self) -> None:
        """Answer every waiting request with a 503 and queue no more: the gateway stops."""
        self._closed = True
        for queue in self._queues.values():
            while queue:
                self._fail(queue.popleft(), GatewayError(503, "no_capacity", "the gateway stopped"))
        self._signal()

    async def aclose(self) -> None:
        """Stop the background work; waiting requests get 503; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self._refuse_waiting()
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._close_fleet:
            await self.fleet.aclose()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ requests

    async def acquire(self, entry: CatalogModel) -> NodeState:
        """A node to send a request for ``entry`` to, its in-flight count taken.

        Raises:
            GatewayError: the queue is full, the wait timed out, the load
                failed, or no node can take the model.
        """
        kind = entry.kind
        queue = self._queues[entry.name]
        if not queue:
            node = pick_replica(self.nodes.values(), entry.name, kind)
            if node is not None:
                node.slots[kind].in_flight += 1
                return node
        if self._closed:
            raise GatewayError(503, "no_capacity", "the gateway is stopping")
        if len(queue) >= self.policy.queue_size:
            self.metrics.refused(entry.name, "queue_full")
            raise GatewayError(
                503,
                "queue_full",
                f"{self.policy.queue_size} requests already wait for {entry.name!r}",
                retry_after=self.policy.queue_timeout / 10,
            )
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), time.monotonic())
        waiter.timer = loop.call_later(self.policy.queue_timeout, self._expire, entry, waiter)
        queue.append(waiter)
        self._pump()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            # Served in the same step that cancelled us: hand the node back.
            if waiter.future.done() and not waiter.future.cancelled():
                if waiter.future.exception() is None:
                    self.release(waiter.future.result(), kind)
            elif waiter in queue:
                queue.remove(waiter)
                self._signal()
            raise
        finally:
            if waiter.timer is not None:
                waiter.timer.cancel()

    def release(self, node: NodeState, kind: ModelKind) -> None:
        """A request on ``node`` ended: its in-flight count is given back."""
        slot = node.slots[kind]
        slot.in_flight -= 1
        slot.last_used = time.monotonic()
        if slot.in_flight == 0:
            self._signal()  # a place fell idle
            if slot.draining:
                event = self._drained.get((node.name, kind))
                if event is not None:
                    event.set()
            elif slot.model is not None and self.catalog.models[slot.model].ttl is not None:
                self._arm_ttl()
            if any(self._queues.values()):
                self._pump()

    def node_unreachable(self, node: NodeState) -> None:
        """A request could not reach ``node``: it takes no more until a refresh finds it."""
        if node.up:
            node.up = False
            logger.warning("node %s is unreachable; its requests go elsewhere", node.name)
        self._pump()

    def _expire(self, entry: CatalogModel, waiter: _Waiter) -> None:
        queue = self._queues[entry.name]
        if waiter in queue:
            queue.remove(waiter)
            self.metrics.refused(entry.name, "queue_timeout")
            self._fail(
                waiter,
                GatewayError(
                    503,
                    "queue_timeout",
                    f"{entry.name!r} was not ready within {self.policy.queue_timeout:g} s",
                    retry_after=self.policy.queue_timeout / 10,
                ),
            )
            self._pump()

    @staticmethod
    def _fail(waiter: _Waiter, error: GatewayError) -> None:
        if not waiter.future.done():
            waiter.future.set_exception(error)

    # ------------------------------------------------------------------ the pump

    def _pump(self) -> None:
        """Serve what waits, and start the loads that waiting (or pinning) calls for."""
        self._signal()
        if self._closed:
            return
        now = time.monotonic()
        models = self.catalog.models
        for name, queue in self._queues.items():
            entry = models[name]
            if queue:
                self._serve(entry, queue, now)
            wanted = bool(queue) or (entry.pinned and self._started)
            if not wanted:
                continue
            held = len(self.replicas(name, entry.kind)) + self._loading[name]
            if entry.pinned and not queue and held >= entry.max_replicas:
                continue
            spot = place(
                entry,
                self.nodes,
                models,
                now,
                evict_unknown=self.policy.evict_unknown,
                replicas=held,
            )
            if spot is not None and not queue and self.nodes[spot.node].slots[entry.kind].in_flight:
                # A pinned model nobody waits for is loaded only where a node is
                # free: refilling it never drains running requests.
                spot = None
            if spot is not None:
                self._start_swap(entry, spot)
            elif (
                queue
                and not held
                and not can_ever_place(
                    entry, self.nodes, models, now, evict_unknown=self.policy.evict_unknown
                )
            ):
                retry = self._retry_after(entry, now)
                while queue:
                    self.metrics.refused(name, "no_capacity")
                    self._fail(
                        queue.popleft(),
                        GatewayError(
                            503,
                            "no_capacity",
                            f"no node can take {name!r} now (down, backing off it after a "
                            "failed load, or holding models that stay)",
                            retry_after=retry,
                        ),
                    )

    def _serve(self, entry: CatalogModel, queue: deque[_Waiter], now: float) -> None:
        kind = entry.kind
        while queue:
            if queue[0].future.done():  # timed out or cancelled
                queue.popleft()
                continue
            node = pick_replica(self.nodes.values(), entry.name, kind)
            if node is None:
                return
            waiter = queue.popleft()
            node.slots[kind].in_flight += 1
            waiter.future.set_result(node)
            self.metrics.waited(entry.name, now - waiter.since)

    # ------------------------------------------------------------------ swaps

    def _start_swap(self, entry: CatalogModel, spot: Placement) -> None:
        node = self.nodes[spot.node]
        slot = node.slots[entry.kind]
        node.swapping, node.swapping_kind = entry.name, entry.kind
        self._loading[entry.name] += 1
        if slot.in_flight:
            slot.draining = True
            self._drained[(node.name, entry.kind)] = asyncio.Event()
        self._spawn(self._swap(node, entry, spot))

    async def _swap(self, node: NodeState, entry: CatalogModel, spot: Placement) -> None:
        kind = entry.kind
        slot = node.slots[kind]
        started = time.monotonic()
        span = tracing.start_span(
            "tabby.gateway.swap",
            lambda: {
                "tabby.node": node.name,
                "tabby.model": entry.name,
                "tabby.swap.reason": spot.reason,
            },
        )
        failure: str | None = None
        changed = True
        try:
            client = self.clients[node.name]
            if not await self._drain(node, kind):
                # A load over running work would wait for it (and park new
                # requests, then fail them): the unload cuts it off instead.
                if kind == "model":
                    await client.models.unload(missing_ok=True)
                else:
                    await client.models.unload_embedding(missing_ok=True)
            if isinstance(entry.load, ModelLoadRequest):
                try:
                    result = await client.models.ensure_loaded(entry.load)
                    changed = result.changed
                except ModelMismatchError as err:
                    # Loaded, but a reported field differs (the server capped it):
                    # it serves; say so once.
                    logger.warning("%s on %s: %s", entry.name, node.name, err)
            else:
                load: EmbeddingModelLoadRequest = entry.load
                applied = await client.apply(DesiredState(embedding=load))
                changed = applied.changed
        except asyncio.CancelledError:
            if span is not None:
                tracing.end_span(span, "cancelled")
            raise
        except TabbyError as err:
            failure = str(err)
        finally:
            node.swapping = None
            self._loading[entry.name] -= 1
            slot.draining = False
            self._drained.pop((node.name, kind), None)
        took = time.monotonic() - started
        if failure is None:
            slot.model, slot.seen = entry.name, None
            slot.last_used = time.monotonic()
            node.backoff.pop(entry.name, None)
            node.up = True
            if changed:
                self.metrics.swapped(node.name, spot.reason, took)
                logger.info(
                    "swap on %s: %s loaded (%s%s) in %.1f s",
                    node.name,
                    entry.name,
                    spot.reason,
                    f", over {spot.replaces}" if spot.replaces else "",
                    took,
                )
            else:
                logger.info("%s on %s: the server proved it already loaded", entry.name, node.name)
            if span is not None:
                tracing.end_span(span, "ok")
        else:
            self._load_failed(node, entry, failure, span)
        self._arm_ttl()
        self._pump()

    def _load_failed(
        self, node: NodeState, entry: CatalogModel, why: str, span: tracing.SpanLike | None
    ) -> None:
        slot = node.slots[entry.kind]
        # The server unloads before it loads, so the place is most likely empty;
        # nothing is routed there for this model, and the refresh spawned below
        # reads what it really holds.
        slot.model, slot.seen = None, None
        node.backoff[entry.name] = time.monotonic() + self.policy.load_backoff
        self.metrics.load_failures(node.name, entry.name)
        logger.warning("load of %s on %s failed: %s", entry.name, node.name, why)
        if span is not None:
            tracing.set_error(span, "load_failed", why)
            tracing.end_span(span, "error")
        error = GatewayError(
            502, "load_failed", f"loading {entry.name!r} on node {node.name!r} failed: {why}"
        )
        queue = self._queues[entry.name]
        while queue:
            waiter = queue.popleft()
            self.metrics.refused(entry.name, "load_failed", node.name)
            self._fail(waiter, error)
        self._spawn(self._refresh_node(node))

    async def _drain(self, node: NodeState, kind: ModelKind) -> bool:
        """Wait for the place's requests to end; False when the drain timeout passed first."""
        event = self._drained.get((node.name, kind))
        if event is None:
            return True
        try:
            await asyncio.wait_for(event.wait(), self.policy.drain_timeout)
        except TimeoutError:
            logger.warning(
                "drain on %s timed out after %g s: unloading with %d requests running",
                node.name,
                self.policy.drain_timeout,
                node.slots[kind].in_flight,
            )
            return False
        return True
