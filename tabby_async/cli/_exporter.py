"""``tabby-async fleet exporter``: Prometheus metrics of every node of a nodes file.

::

    tabby-async fleet exporter --nodes nodes.toml [--host 127.0.0.1] [--port 9464]

Serves ``/metrics`` until Ctrl-C or SIGTERM; each scrape sweeps the fleet
(or reuses a sweep less than ``--min-interval`` seconds old). Needs the
extra ``exporter`` (prometheus-client), imported only when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from ._args import non_negative_seconds, positive_int, positive_seconds
from .common import EXIT_OK, EXIT_USAGE, CliError
from .fleet import ENV_NODES

__all__ = ["add_exporter"]

DEFAULT_PORT = 9464  # what OpenTelemetry's Prometheus exporters use too


@contextlib.contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM sets ``stop`` (as Ctrl-C ends the wait), where a handler can be set."""
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    except ValueError:  # not the main thread: the caller stops it otherwise
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/metrics"


def _exporter(args: argparse.Namespace) -> int:
    path = args.nodes or os.environ.get(ENV_NODES)
    if not path:
        raise CliError(f"give --nodes nodes.toml (or set {ENV_NODES})", exit_code=EXIT_USAGE)
    try:
        from prometheus_client import CollectorRegistry, start_http_server

        from ..exporter import FleetCollector
    except ImportError:
        raise CliError(
            "the exporter needs prometheus-client: pip install 'tabby-async[exporter]'",
            exit_code=EXIT_USAGE,
        ) from None
    collector = FleetCollector.from_toml(
        path,
        min_interval=args.min_interval,
        node_timeout=args.node_timeout,
        max_concurrency=args.concurrency,
    )
    with collector:
        registry = CollectorRegistry()
        registry.register(collector)
        try:
            server, thread = start_http_server(args.port, args.host, registry)
        except OSError as exc:
            problem = exc.strerror or exc
            raise CliError(f"cannot listen on {args.host}:{args.port}: {problem}") from None
        host, port = server.server_address[:2]
        print(
            f"serving the metrics of {len(collector.nodes)} nodes on {_url(str(host), port)}"
            "  (Ctrl-C to stop)",
            flush=True,
        )
        stop = threading.Event()
        try:
            with _stop_on_sigterm(stop), contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
    print("exporter stopped", flush=True)
    return EXIT_OK


def add_exporter(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fleet exporter`` to the fleet group's subcommands."""
    exporter = sub.add_parser(
        "exporter",
        help="serve Prometheus metrics of every node (needs the extra 'exporter')",
        description="Serve /metrics for Prometheus: per node whether it is up and healthy, "
        "its loaded model and embedding model, and whether it is in the desired state the "
        "nodes file declares. Each scrape sweeps the fleet, or reuses a sweep less than "
        "--min-interval seconds old.",
    )
    exporter.add_argument(
        "--nodes", metavar="FILE", default=None, help=f"the nodes file (TOML; env {ENV_NODES})"
    )
    exporter.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)"
    )
    exporter.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the port to listen on (default {DEFAULT_PORT}; 0: any free port)",
    )
    exporter.add_argument(
        "--min-interval",
        type=non_negative_seconds,
        default=10.0,
        metavar="SECONDS",
        help="reuse a sweep younger than this (default 10; 0: sweep on every scrape)",
    )
    exporter.add_argument(
        "--node-timeout",
        type=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="bound of each node's probes (default 5)",
    )
    exporter.add_argument(
        "--concurrency",
        type=positive_int,
        default=64,
        metavar="N",
        help="nodes probed at once (default 64)",
    )
    exporter.set_defaults(handler=_exporter, command_name="fleet exporter")
