"""``tabby-async fleet exporter``: Prometheus metrics of every node of a nodes file.

::

    tabby-async fleet exporter --nodes nodes.toml [--host 127.0.0.1] [--port 10157]

Serves ``/metrics`` (the whole fleet) and ``/probe?target=NODE`` (one node)
until Ctrl-C or SIGTERM, with :func:`tabby_async.exporter.exporter_app` on
one event loop. Needs the extra ``exporter`` (prometheus-client), imported
only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio

from ._args import non_negative_seconds, positive_int, positive_seconds
from ._emulator import stop_on_signals
from ._fleet_args import ENV_NODES, nodes_file
from ._format import counted
from .common import EXIT_OK, EXIT_USAGE, CliError

__all__ = ["add_exporter", "port_number"]

#: The default port (tabby_async.exporter.DEFAULT_PORT, which needs the extra to import).
DEFAULT_PORT = 10157


def port_number(text: str) -> int:
    """A TCP port for argparse: 1-65535, or 0 for any free port."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 1-65535 (0: any free port), got {port}")
    return port


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/metrics"


async def _exporter(args: argparse.Namespace) -> int:
    path = nodes_file(args)
    try:
        from aiohttp import web

        from ..exporter import AsyncFleetCollector, exporter_app
    except ImportError:
        raise CliError(
            "the exporter needs prometheus-client: pip install 'tabby-async[exporter]'",
            exit_code=EXIT_USAGE,
        ) from None
    collector = AsyncFleetCollector.from_toml(
        path,
        min_interval=args.min_interval,
        node_timeout=args.node_timeout,
        max_concurrency=args.concurrency,
    )
    async with collector:
        runner = web.AppRunner(exporter_app(collector), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, args.host, args.port)
            try:
                await site.start()
            except OSError as exc:
                problem = exc.strerror or exc
                raise CliError(f"cannot listen on {args.host}:{args.port}: {problem}") from None
            host, port = runner.addresses[0][:2]
            print(
                f"serving the metrics of {counted(len(collector.nodes), 'node')} "
                f"on {_url(str(host), port)}"
                "  (Ctrl-C to stop)",
                flush=True,
            )
            stop = asyncio.Event()
            with stop_on_signals(stop):
                await stop.wait()
        finally:
            await runner.cleanup()
    print("exporter stopped", flush=True)
    return EXIT_OK


def add_exporter(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fleet exporter`` to the fleet group's subcommands."""
    exporter = sub.add_parser(
        "exporter",
        help="serve Prometheus metrics of every node (needs the extra 'exporter')",
        description="Serve /metrics for Prometheus: per node whether TabbyAPI answers and is "
        "healthy (and since when not), its loaded model and embedding model, and whether it "
        "is in the desired state the nodes file declares. Each scrape sweeps the fleet, or "
        "reuses a sweep less than --min-interval seconds old. /probe?target=NODE probes one "
        "node, for Prometheus's multi-target pattern.",
    )
    exporter.add_argument(
        "--nodes", metavar="FILE", default=None, help=f"the nodes file (TOML; env {ENV_NODES})"
    )
    exporter.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)"
    )
    exporter.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"the port to listen on, 1-65535 (default {DEFAULT_PORT}; 0: any free port)",
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
        help="bound of each node's probes (default 5; a /probe takes the scrape's timeout)",
    )
    exporter.add_argument(
        "--concurrency",
        type=positive_int,
        default=64,
        metavar="N",
        help="nodes probed at once (default 64)",
    )
    exporter.set_defaults(handler=_exporter, command_name="fleet exporter")
