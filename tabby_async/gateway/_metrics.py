"""The gateway's Prometheus metrics: counted on the way, the rest read off its state at scrape.

A request costs one dictionary increment; the gauges (in flight, queue
depth, node up and healthy) are read from the gateway when ``/metrics`` is
scraped, so the hot path pays nothing for them. Labels are model and node
names and fixed words: never a key or a URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ._catalog import Catalog
from ._placement import NodeState


class Observed(Protocol):
    """What the metrics read of the gateway at scrape time."""

    catalog: Catalog
    nodes: dict[str, NodeState]

    def queued(self, name: str) -> int: ...


__all__ = ["GatewayMetrics"]

#: Queue waits and swaps run from milliseconds (a request released by a load
#: that just ended) to minutes (a large model's load).
_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class GatewayMetrics:
    """The gateway's counters and histograms, in a registry of its own (:attr:`registry`)."""

    def __init__(self, gateway: Observed) -> None:
        self._gateway = gateway
        self.registry = CollectorRegistry(auto_describe=True)
        #: (model, node, outcome) -> requests answered.
        self.requests: dict[tuple[str, str, str], int] = {}
        self.swaps: dict[tuple[str, str], int] = {}
        self.failed_loads: dict[tuple[str, str], int] = {}
        self._wait = Histogram(
            "tabby_gateway_queue_wait_seconds",
            "How long requests waited for their model to be loaded",
            ["model"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._swap_time = Histogram(
            "tabby_gateway_swap_duration_seconds",
            "How long swaps took, drain included, by reason",
            ["reason"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)

    def request(self, model: str, node: str, outcome: str) -> None:
        """Count one answered request."""
        key = (model, node, outcome)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1

    def refused(self, model: str, outcome: str, node: str = "") -> None:
        """Count a request the gateway answered itself (queue full, timed out, ...)."""
        self.request(model, node, outcome)

    def waited(self, model: str, seconds: float) -> None:
        """A queued request was released after ``seconds``."""
        self._wait.labels(model).observe(seconds)

    def swapped(self, node: str, reason: str, seconds: float) -> None:
        """A swap (or a TTL unload) ended."""
        key = (node, reason)
        self.swaps[key] = self.swaps.get(key, 0) + 1
        self._swap_time.labels(reason).observe(seconds)

    def load_failures(self, node: str, model: str) -> None:
        """A load failed."""
        key = (node, model)
        self.failed_loads[key] = self.failed_loads.get(key, 0) + 1

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        """Prometheus' collect(): the counters, and the gauges read off the gateway now."""
        gateway = self._gateway
        requests = CounterMetricFamily(
            "tabby_gateway_requests",
            "Requests answered, by model, node (empty: none) and outcome",
            labels=["model", "node", "outcome"],
        )
        for (model, node, outcome), count in sorted(self.requests.items()):
            requests.add_metric([model, node, outcome], count)
        yield requests
        swaps = CounterMetricFamily(
            "tabby_gateway_swaps",
            "Swaps by node and reason (cold, evict, ttl)",
            labels=["node", "reason"],
        )
        for (node, reason), count in sorted(self.swaps.items()):
            swaps.add_metric([node, reason], count)
        yield swaps
        failed = CounterMetricFamily(
            "tabby_gateway_load_failures",
            "Failed loads by node and model",
            labels=["node", "model"],
        )
        for (node, model), count in sorted(self.failed_loads.items()):
            failed.add_metric([node, model], count)
        yield failed
        in_flight = GaugeMetricFamily(
            "tabby_gateway_in_flight",
            "Requests in flight through the gateway, by model",
            labels=["model"],
        )
        depth = GaugeMetricFamily(
            "tabby_gateway_queue_depth", "Requests waiting for their model", labels=["model"]
        )
        for name, entry in gateway.catalog.models.items():
            running = sum(
                n.slots[entry.kind].in_flight
                for n in gateway.nodes.values()
                if n.holds(name, entry.kind)
            )
            in_flight.add_metric([name], running)
            depth.add_metric([name], gateway.queued(name))
        yield in_flight
        yield depth
        up = GaugeMetricFamily("tabby_gateway_node_up", "1 when the node answers", labels=["node"])
        healthy = GaugeMetricFamily(
            "tabby_gateway_node_healthy",
            "1 when the node's /health says healthy (0 and up: degraded)",
            labels=["node"],
        )
        for state in gateway.nodes.values():
            up.add_metric([state.name], 1 if state.up else 0)
            healthy.add_metric([state.name], 1 if state.up and state.healthy else 0)
        yield up
        yield healthy
