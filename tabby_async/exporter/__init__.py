"""tabby_async.exporter: Prometheus metrics for a whole fleet (the extra ``exporter``).

``tabby-async fleet exporter --nodes nodes.toml`` serves them (on
127.0.0.1:10157); in a program of your own:

- :class:`AsyncFleetCollector` for async apps: it sweeps in the app's own
  event loop (``await collector.refresh()``, or the background
  ``collector.run()``), and its ``collect()`` only reads the last sweep;
  :func:`exporter_app` serves it as an aiohttp app with ``/metrics``,
  ``/probe?target=NODE`` (one node, for Prometheus's multi-target pattern)
  and 404 for anything else;
- :class:`FleetCollector` for threaded servers (``start_http_server``): it
  sweeps on a loop of its own, in a background thread, at each scrape.

Per node: ``tabby_up`` (TabbyAPI itself answered ``/health``),
``tabby_healthy``, ``tabby_probe_error_info`` (why a node is down), the
health issues (``tabby_health_issues``,
``tabby_unhealthy_since_timestamp_seconds``,
``tabby_last_health_issue_timestamp_seconds``,
``tabby_last_health_issue_info``), ``tabby_model_loaded``,
``tabby_model_info``, ``tabby_model_max_seq_len_tokens``,
``tabby_model_cache_size_tokens``, ``tabby_embedding_model_info``,
``tabby_probe_duration_seconds`` and, for nodes that declare a desired
state, ``tabby_desired_state_match`` (absent when it cannot be told),
``tabby_desired_state_verified`` and ``tabby_desired_state_info``; for the
whole sweep ``tabby_scrape_duration_seconds`` and ``tabby_nodes``.

Importing this module needs ``prometheus-client``
(``pip install 'tabby-async[exporter]'``).
"""

try:
    import prometheus_client  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError(
        "tabby_async.exporter needs prometheus-client: pip install 'tabby-async[exporter]'"
    ) from exc

from ._collector import AsyncFleetCollector, FleetCollector
from ._http import DEFAULT_PORT, exporter_app
from ._snapshot import METRICS, FleetSnapshot, NodeSnapshot

__all__ = [
    "DEFAULT_PORT",
    "METRICS",
    "AsyncFleetCollector",
    "FleetCollector",
    "FleetSnapshot",
    "NodeSnapshot",
    "exporter_app",
]
