"""The exporter's own HTTP server: an aiohttp app on the collector's event loop.

One event loop serves every connection (aiohttp closes a connection idle
for ``keepalive_timeout``, 75 s by default), and a sweep under way never
blocks it: unlike prometheus_client's ``start_http_server``, which keeps a
thread per open connection with no idle timeout.

Routes: ``/metrics`` (the whole fleet), ``/probe?target=NODE`` (one node,
the multi-target pattern of the blackbox and SNMP exporters) and ``/`` (a
short index); anything else is a 404.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ..errors import InvalidInputError
from ._collector import AsyncFleetCollector, families

__all__ = ["DEFAULT_PORT", "SCRAPE_TIMEOUT_HEADER", "exporter_app", "probe_bound"]

#: The exporter's default port. Not 9464, OpenTelemetry's Prometheus
#: exporter's, which often runs on the same hosts; Prometheus's list of
#: exporter ports filled 9100-9999, so ours is above it.
DEFAULT_PORT = 10157

#: The header in which Prometheus sends a scrape's timeout, in seconds.
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"

#: What a probe leaves of the scrape's timeout for the answer to get back.
_MARGIN = 0.5

_COLLECTOR = web.AppKey("collector", AsyncFleetCollector)

_INDEX = """tabby-async fleet exporter

/metrics              every node of the nodes file, one sweep
/probe?target=NODE    one node, probed now (NODE: its name in the nodes file)
"""


class _Fixed(Collector):
    """A collector of metric families already made (one request's answer)."""

    def __init__(self, found: list[Metric]) -> None:
        self._found = found

    def collect(self) -> Iterable[Metric]:
        return self._found


def _exposition(found: list[Metric]) -> web.Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(found))
    response = web.Response(body=generate_latest(registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def probe_bound(header: str | None, default: float) -> float:
    """A probe's bound: the scrape timeout Prometheus sent, less a margin; else ``default``.

    The margin is half a second, or half the timeout when that is a second
    or less. A header that is not a positive number is ignored.
    """
    try:
        timeout = float(header) if header is not None else 0.0
    except ValueError:
        timeout = 0.0
    if not timeout > 0 or timeout == float("inf"):
        return default
    return timeout - _MARGIN if timeout > 2 * _MARGIN else timeout / 2


async def _metrics(request: web.Request) -> web.Response:
    collector = request.app[_COLLECTOR]
    return _exposition(families(await collector.refresh()))


async def _probe(request: web.Request) -> web.Response:
    collector = request.app[_COLLECTOR]
    target = request.query.get("target")
    if not target:
        raise web.HTTPBadRequest(text="give ?target=NODE: a node's name in the nodes file\n")
    bound = probe_bound(request.headers.get(SCRAPE_TIMEOUT_HEADER), collector.node_timeout)
    try:
        snapshot = await collector.probe(target, timeout=bound)
    except InvalidInputError:
        shown = "".join(c for c in target[:100] if c.isprintable())
        raise web.HTTPNotFound(
            text=f"unknown target {shown!r}: no such node in the nodes file\n"
        ) from None
    return _exposition(families(snapshot, fleet=False))


async def _index(request: web.Request) -> web.Response:
    return web.Response(text=_INDEX)


def exporter_app(collector: AsyncFleetCollector) -> web.Application:
    """An aiohttp app serving ``collector``: ``/metrics``, ``/probe?target=NODE`` and ``/``.

    Run it in the loop the collector was made in (``web.run_app``, or an
    ``AppRunner``); closing the collector stays the caller's. Unknown paths
    are 404, an unknown target too (its name shown without control
    characters), a missing one 400. A probe is bounded by the scrape's
    timeout Prometheus sends (``X-Prometheus-Scrape-Timeout-Seconds``, less
    half a second), else by the collector's ``node_timeout``.
    """
    app = web.Application()
    app[_COLLECTOR] = collector
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/probe", _probe)
    app.router.add_get("/", _index)
    return app
