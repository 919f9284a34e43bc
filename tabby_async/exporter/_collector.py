"""The collectors: an async one that lives in the caller's event loop, and a threaded one.

:class:`AsyncFleetCollector` is the core. Its fleet's clients belong to the
event loop that runs it, so every sweep is awaited there (``await
collector.refresh()``, or the background :meth:`~AsyncFleetCollector.run`)
and ``collect()``, which prometheus_client calls synchronously, only reads
the last sweep: an async app's loop never waits for a node.

:class:`FleetCollector` is for threaded servers (``start_http_server``, a
WSGI app): it runs an AsyncFleetCollector on an event loop of its own, in a
background thread, and each ``collect()`` waits there for a fresh sweep.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .._checks import check_count, check_seconds
from .._log import logger
from .._state_plan import DesiredState
from ..errors import ClientStateError, InvalidInputError
from ..fleet import NodeSpec, TabbyFleet, read_nodes_toml
from ._snapshot import METRICS, FleetSnapshot, NodeSnapshot, metrics
from ._sweep import SweepCache, sweep

if TYPE_CHECKING:
    from typing import Self

__all__ = ["AsyncFleetCollector", "FleetCollector", "families"]


def families(snapshot: FleetSnapshot, *, fleet: bool = True) -> list[Metric]:
    """The metric families of a snapshot, as prometheus_client takes them."""
    found: list[Metric] = []
    for metric in metrics(snapshot, fleet=fleet):
        family = _family(metric.name)
        for labels, value in metric.samples:
            family.add_metric(labels, value)
        found.append(family)
    return found


def _family(name: str) -> GaugeMetricFamily:
    help_text, labels = METRICS[name]
    return GaugeMetricFamily(name, help_text, labels=labels)


def _all_down(nodes: Iterable[str]) -> FleetSnapshot:
    return FleetSnapshot(tuple(NodeSnapshot(n, None, None, 0.0) for n in nodes), 0.0)


class AsyncFleetCollector(Collector):
    """Prometheus metrics of a whole fleet, swept in the caller's event loop.

    For async apps (aiohttp, or prometheus_client's ``make_asgi_app``):
    create it, and use it, inside the loop that serves. ``await
    collector.refresh()`` sweeps the fleet (or reuses a sweep younger than
    ``min_interval``, or joins one under way); ``collect()`` never does I/O:
    it reports the last sweep (before the first, only ``tabby_nodes``).
    Either await :meth:`refresh` in the handler that serves ``/metrics``,
    or let :meth:`run` refresh in the background::

        collector = AsyncFleetCollector.from_toml("nodes.toml")
        registry.register(collector)
        refresher = asyncio.create_task(collector.run())
        ...
        refresher.cancel()
        await collector.aclose()

    Each sweep asks every node for its health, the key's permission, the
    loaded model and the embedding model, at most ``max_concurrency``
    nodes at once and each within ``node_timeout`` seconds. A node that
    fails is ``tabby_up`` 0; a sweep never fails because of a node.

    ``desired`` maps node names to their desired state; by default each
    node spec's own (``desired`` in the nodes file). Such nodes also get
    ``tabby_desired_state_match``, ``tabby_desired_state_verified`` and
    ``tabby_desired_state_info``. ``trace_configs`` go to the fleet's
    session (as for :class:`~tabby_async.fleet.TabbyFleet`).
    """

    def __init__(
        self,
        nodes: Iterable[NodeSpec],
        *,
        desired: Mapping[str, DesiredState] | None = None,
        min_interval: float = 10.0,
        node_timeout: float = 5.0,
        max_concurrency: int = 64,
        max_retries: int = 0,
        trace_configs: Iterable[aiohttp.TraceConfig] | None = None,
    ) -> None:
        specs = list(nodes)
        for spec in specs:
            if not isinstance(spec, NodeSpec):
                raise InvalidInputError("nodes", f"must hold NodeSpec, not {type(spec).__name__}")
        interval = 0.0 if min_interval == 0 else check_seconds("min_interval", min_interval)
        timeout = check_seconds("node_timeout", node_timeout)
        if interval is None or timeout is None:
            raise InvalidInputError(
                "node_timeout" if interval is not None else "min_interval",
                "must be seconds, not None: a scrape needs a bound",
            )
        self._node_timeout = timeout
        self._max_concurrency = check_count("max_concurrency", max_concurrency)
        self._desired = {s.name: s.desired for s in specs if s.desired is not None}
        for name, state in (desired or {}).items():
            if not isinstance(state, DesiredState):
                raise InvalidInputError(f"desired[{name!r}]", "must be a DesiredState")
            self._desired[name] = state
        self._fleet = TabbyFleet(
            specs,
            max_concurrency=self._max_concurrency,
            node_timeout=timeout,
            max_retries=max_retries,
            trace_configs=trace_configs,
        )
        unknown = sorted(set(self._desired) - set(self._fleet.nodes))
        if unknown:
            raise InvalidInputError("desired", f"unknown node names: {', '.join(unknown)}")
        self._interval = interval
        self._cache = SweepCache(self._sweep, interval)

    @classmethod
    def from_toml(
        cls,
        path: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Self:
        """A collector for the nodes of a nodes file, with their declared desired states.

        The file's ``[fleet]`` options do not apply (the collector has its
        own bounds); ``options`` are the collector's.
        """
        specs, _ = read_nodes_toml(path, env=env)
        return cls(specs, **options)

    @property
    def nodes(self) -> list[str]:
        """The node names, in fleet order."""
        return self._fleet.nodes

    @property
    def node_timeout(self) -> float:
        """The bound of each node's probes, in seconds."""
        return self._node_timeout

    @property
    def last(self) -> FleetSnapshot | None:
        """The last sweep that finished (None before the first)."""
        return self._cache.last

    # --- what prometheus_client calls ------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (so registering sweeps nothing)."""
        return [_family(name) for name in METRICS]

    def collect(self) -> Iterable[Metric]:
        """The metric families of the last sweep (no I/O: :meth:`refresh` sweeps)."""
        last = self._cache.last
        return families(last) if last is not None else [_nodes_family(len(self.nodes))]

    # --- sweeping ---------------------------------------------------------------------

    async def refresh(self) -> FleetSnapshot:
        """A sweep younger than ``min_interval``, the one under way, or a new one.

        Never raises for the fleet's sake: if the sweep itself goes wrong,
        every node is reported down and the problem is logged. Cancelling
        the caller does not cancel a sweep others share.
        """
        try:
            return await self._cache.get()
        except Exception:
            logger.exception("the fleet sweep failed; reporting every node down")
            return _all_down(self.nodes)

    async def probe(self, node: str, *, timeout: float | None = None) -> FleetSnapshot:
        """One node's probes now (no cache), within ``timeout`` seconds (default ``node_timeout``).

        For the multi-target pattern (``/probe?target=NODE``): Prometheus
        schedules each node and owns its ``up`` and its timeout.

        Raises:
            InvalidInputError: ``node`` is not a node of the fleet, or a bad timeout.
        """
        if node not in self._fleet.nodes:
            raise InvalidInputError("target", "is not a node of the nodes file")
        bound = self._node_timeout if timeout is None else check_seconds("timeout", timeout)
        return await sweep(
            self._fleet,
            self._desired,
            node_timeout=bound or self._node_timeout,
            max_concurrency=1,
            nodes=[node],
        )

    async def run(self, interval: float | None = None) -> None:
        """Sweep every ``interval`` seconds (default ``min_interval``, at least 1) until cancelled.

        Run it as a task of the app's loop; ``collect()`` then always has a
        recent sweep and a scrape never waits for one.
        """
        every = check_seconds("interval", interval) or max(self._interval, 1.0)
        while True:
            await self.refresh()
            await asyncio.sleep(every)

    async def _sweep(self) -> FleetSnapshot:
        return await sweep(
            self._fleet,
            self._desired,
            node_timeout=self._node_timeout,
            max_concurrency=self._max_concurrency,
        )

    def wait_bound(self) -> float:
        """The longest a sweep can take: its rounds of nodes, each within its bound, and slack."""
        rounds = math.ceil(len(self.nodes) / self._max_concurrency)
        return (rounds + 1) * self._node_timeout + 5.0

    async def aclose(self) -> None:
        """Close the fleet's connections (idempotent)."""
        await self._fleet.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _nodes_family(count: int) -> GaugeMetricFamily:
    family = _family("tabby_nodes")
    family.add_metric((), count)
    return family


class FleetCollector(Collector):
    """Prometheus metrics of a whole fleet, swept when a threaded server scrapes.

    For prometheus_client's own threaded servers (``start_http_server``, a
    WSGI app); an async app takes :class:`AsyncFleetCollector` instead::

        from prometheus_client import CollectorRegistry, start_http_server
        from tabby_async.exporter import FleetCollector

        registry = CollectorRegistry()
        collector = FleetCollector.from_toml("nodes.toml")
        registry.register(collector)
        start_http_server(10157, "127.0.0.1", registry)
        ...
        collector.close()

    Each ``collect()`` waits for a sweep (see :class:`AsyncFleetCollector`,
    whose options it takes) with at most ``max_concurrency`` nodes at once,
    each within ``node_timeout``; a sweep younger than ``min_interval`` is
    reused and one under way is shared, so two Prometheus servers scraping
    do not double the load on the fleet.

    The fleet runs on an event loop in a background thread, started on the
    first scrape; :meth:`close` (or leaving ``with``) closes the fleet and
    stops the thread. ``start_http_server`` keeps a thread per open
    connection with no idle timeout; ``tabby-async fleet exporter`` serves
    with :func:`~tabby_async.exporter.exporter_app` on one event loop instead.
    """

    def __init__(self, nodes: Iterable[NodeSpec], **options: Any) -> None:
        self._core = AsyncFleetCollector(nodes, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_toml(
        cls,
        path: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> FleetCollector:
        """A collector for the nodes of a nodes file, with their declared desired states.

        The file's ``[fleet]`` options do not apply (the collector has its
        own bounds); ``options`` are :class:`AsyncFleetCollector`'s.
        """
        specs, _ = read_nodes_toml(path, env=env)
        return cls(specs, **options)

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (so registering sweeps nothing)."""
        return self._core.describe()

    def collect(self) -> Iterable[Metric]:
        """Sweep the fleet (or reuse a recent sweep) and return every metric family."""
        return families(self.snapshot())

    @property
    def nodes(self) -> list[str]:
        """The node names, in fleet order."""
        return self._core.nodes

    def snapshot(self) -> FleetSnapshot:
        """The fleet as the current scrape sees it (a recent sweep's result, or a new one).

        Never raises for the fleet's sake: if the sweep itself goes wrong (or
        overruns every node's bound), every node is reported down and the
        problem is logged.
        """
        loop = self._start()
        future = asyncio.run_coroutine_threadsafe(self._core.refresh(), loop)
        try:
            return future.result(self._core.wait_bound())
        except FutureTimeout:
            logger.warning("the fleet sweep overran its bound; reporting every node down")
        except Exception:
            logger.exception("the fleet sweep failed; reporting every node down")
        return _all_down(self.nodes)

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise ClientStateError("the collector is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve, args=(loop,), name="tabby-exporter", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def close(self) -> None:
        """Close the fleet's connections and stop the background thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._core.aclose(), loop).result(30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            if not thread.is_alive():
                loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The background thread: run ``loop`` until the collector stops it."""
    asyncio.set_event_loop(loop)
    loop.run_forever()
