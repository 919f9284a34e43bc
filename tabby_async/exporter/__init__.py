"""tabby_async.exporter: Prometheus metrics for a whole fleet (the extra ``exporter``).

::

    from prometheus_client import CollectorRegistry, start_http_server
    from tabby_async.exporter import FleetCollector

    registry = CollectorRegistry()
    registry.register(FleetCollector.from_toml("nodes.toml"))
    start_http_server(9464, "127.0.0.1", registry)

:class:`FleetCollector` sweeps every node of a fleet when Prometheus
scrapes (with bounded concurrency, a per-node timeout and a minimum interval
between sweeps) and exposes, per node: ``tabby_up``, ``tabby_healthy``,
``tabby_model_loaded``, ``tabby_model_info``, ``tabby_model_max_seq_len``,
``tabby_model_cache_size``, ``tabby_embedding_model_info``,
``tabby_probe_duration_seconds`` and, for nodes that declare a desired
state, ``tabby_desired_state_match`` and ``tabby_desired_state_info``; for
the whole sweep ``tabby_scrape_duration_seconds`` and ``tabby_nodes``.
``tabby-async fleet exporter --nodes nodes.toml`` serves it.

Importing this module needs ``prometheus-client``
(``pip install 'tabby-async[exporter]'``).
"""

try:
    import prometheus_client  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError(
        "tabby_async.exporter needs prometheus-client: pip install 'tabby-async[exporter]'"
    ) from exc

from ._collector import FleetCollector
from ._snapshot import METRICS, FleetSnapshot, NodeSnapshot

__all__ = ["METRICS", "FleetCollector", "FleetSnapshot", "NodeSnapshot"]
