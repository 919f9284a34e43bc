"""FleetCollector: a prometheus_client collector that sweeps a fleet at scrape time.

prometheus_client calls :meth:`FleetCollector.collect` synchronously, from
whichever thread serves the scrape. The fleet's calls are asynchronous and
its clients belong to one event loop, so the collector owns that loop: it
runs in a background thread the collector starts on the first scrape and
stops in :meth:`FleetCollector.close`, after closing the fleet's
connections.
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
from .._state import DesiredState
from ..errors import ClientStateError, InvalidInputError
from ..fleet import NodeSpec, TabbyFleet, read_nodes_toml
from ._snapshot import METRICS, FleetSnapshot, NodeSnapshot, metrics
from ._sweep import SweepCache, sweep

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["FleetCollector"]


class FleetCollector(Collector):
    """Prometheus metrics of a whole fleet, gathered when Prometheus scrapes.

    Register it with any ``prometheus_client`` registry (your app's own, or
    a new ``CollectorRegistry``) and serve that registry as usual::

        from prometheus_client import CollectorRegistry, start_http_server
        from tabby_async.exporter import FleetCollector

        registry = CollectorRegistry()
        collector = FleetCollector.from_toml("nodes.toml")
        registry.register(collector)
        start_http_server(9464, "127.0.0.1", registry)
        ...
        collector.close()

    Each scrape sweeps every node (health, the key's permission, the loaded
    model and the embedding model) with at most ``max_concurrency`` nodes at
    once, each bounded by ``node_timeout`` seconds. A sweep that started less
    than ``min_interval`` seconds ago is reused, and a sweep under way is
    shared: two Prometheus servers scraping the same exporter do not double
    the load on the fleet. A node that fails is ``tabby_up`` 0; a scrape
    never fails because of a node.

    ``desired`` maps node names to their desired state; by default each
    node spec's own (``desired`` in the nodes file). Such nodes also get
    ``tabby_desired_state_match`` and ``tabby_desired_state_info``.
    ``trace_configs`` go to the fleet's session (as for
    :class:`~tabby_async.fleet.TabbyFleet`).

    The fleet runs on an event loop in a background thread, started on the
    first scrape; :meth:`close` (or leaving ``with``) closes the fleet and
    stops the thread.
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
        self._cache = SweepCache(self._sweep, interval)
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
        own bounds); ``options`` are :class:`FleetCollector`'s.
        """
        specs, _ = read_nodes_toml(path, env=env)
        return cls(specs, **options)

    # --- what prometheus_client calls ------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (so registering sweeps nothing)."""
        return [_family(name) for name in METRICS]

    def collect(self) -> Iterable[Metric]:
        """Sweep the fleet (or reuse a recent sweep) and return every metric family."""
        families = []
        for found in metrics(self.snapshot()):
            family = _family(found.name)
            for labels, value in found.samples:
                family.add_metric(labels, value)
            families.append(family)
        return families

    # --- the sweep --------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        """The node names, in fleet order."""
        return self._fleet.nodes

    def snapshot(self) -> FleetSnapshot:
        """The fleet as the current scrape sees it (a recent sweep's result, or a new one).

        Never raises for the fleet's sake: if the sweep itself goes wrong (or
        overruns every node's bound), every node is reported down and the
        problem is logged.
        """
        loop = self._start()
        future = asyncio.run_coroutine_threadsafe(self._cache.get(), loop)
        try:
            return future.result(self._wait_bound())
        except FutureTimeout:
            logger.warning("the fleet sweep overran its bound; reporting every node down")
        except Exception:
            logger.exception("the fleet sweep failed; reporting every node down")
        return FleetSnapshot(tuple(NodeSnapshot(n, None, None, 0.0) for n in self.nodes), 0.0)

    def _wait_bound(self) -> float:
        """The longest a sweep can take: its rounds of nodes, each within its bound, and slack."""
        rounds = math.ceil(len(self.nodes) / self._max_concurrency)
        return (rounds + 1) * self._node_timeout + 5.0

    async def _sweep(self) -> FleetSnapshot:
        return await sweep(
            self._fleet,
            self._desired,
            node_timeout=self._node_timeout,
            max_concurrency=self._max_concurrency,
        )

    # --- the loop thread ------------------------------------------------------------------

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
            asyncio.run_coroutine_threadsafe(self._fleet.aclose(), loop).result(30)
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


def _family(name: str) -> GaugeMetricFamily:
    help_text, labels = METRICS[name]
    return GaugeMetricFamily(name, help_text, labels=labels)

