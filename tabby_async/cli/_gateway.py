"""``tabby-async gateway``: one OpenAI-compatible endpoint for the nodes of a nodes file.

::

    tabby-async gateway --nodes nodes.toml --catalog catalog.toml
        [--host 127.0.0.1] [--port 8080] [--api-key-env VAR]
        [--queue-size N] [--queue-timeout SECONDS]
    tabby-async gateway --status http://127.0.0.1:8080 [--api-key-env VAR]

Serves until Ctrl-C or SIGTERM. A host other than loopback needs client keys
(``--api-key-env`` names a variable holding them, comma-separated): without
them the command refuses to start. ``--status`` prints what a running
gateway's nodes hold. Needs the extra ``gateway``, imported only when the
command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import os
import re
from typing import Any

import aiohttp

from ._args import positive_int, positive_seconds
from ._emulator import stop_on_signals
from ._exporter import port_number
from ._fleet_args import ENV_NODES, nodes_file
from ._format import counted, format_table
from .common import EXIT_OK, EXIT_USAGE, CliError

__all__ = ["DEFAULT_PORT", "is_loopback", "register"]

#: The default port (TabbyAPI's is 5000).
DEFAULT_PORT = 8080
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve anywhere


def _client_keys(variable: str | None) -> list[str]:
    if variable is None:
        return []
    if not _ENV_NAME.match(variable):
        raise CliError("--api-key-env must name an environment variable", exit_code=EXIT_USAGE)
    value = os.environ.get(variable)
    if value is None:
        raise CliError(f"--api-key-env: {variable} is not set", exit_code=EXIT_USAGE)
    keys = [key.strip() for key in value.split(",") if key.strip()]
    if not keys:
        raise CliError(f"--api-key-env: {variable} holds no key", exit_code=EXIT_USAGE)
    return keys


async def _serve(args: argparse.Namespace) -> int:
    if args.catalog is None:
        raise CliError("give --catalog catalog.toml", exit_code=EXIT_USAGE)
    path = nodes_file(args)
    keys = _client_keys(args.api_key_env)
    if not keys and not is_loopback(args.host):
        raise CliError(
            f"refusing to serve on {args.host} without client keys: "
            "give --api-key-env VAR (or serve on 127.0.0.1)",
            exit_code=EXIT_USAGE,
        )
    try:
        from aiohttp import web

        from ..fleet import TabbyFleet, read_nodes_toml
        from ..gateway import Catalog, Gateway, gateway_pool, read_catalog
    except ImportError:
        raise CliError(
            "the gateway needs prometheus-client: pip install 'tabby-async[gateway]'",
            exit_code=EXIT_USAGE,
        ) from None
    catalog = read_catalog(args.catalog)
    overrides = {
        name: value
        for name, value in (("queue_size", args.queue_size), ("queue_timeout", args.queue_timeout))
        if value is not None
    }
    if overrides:
        catalog = Catalog(catalog.models, dataclasses.replace(catalog.policy, **overrides))
    specs, options = read_nodes_toml(path)
    catalog.check_nodes([spec.name for spec in specs])
    gateway = Gateway(
        TabbyFleet(specs, **gateway_pool(options)), catalog, api_keys=keys, close_fleet=True
    )
    runner = web.AppRunner(gateway.app(), access_log=None, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        try:
            await site.start()
        except OSError as exc:
            problem = exc.strerror or exc
            raise CliError(f"cannot listen on {args.host}:{args.port}: {problem}") from None
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in str(host) else host
        print(
            f"gateway on http://{shown}:{port}/v1 for {counted(len(specs), 'node')} and "
            f"{counted(len(catalog.models), 'model')}  (Ctrl-C to stop)",
            flush=True,
        )
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await stop.wait()
    finally:
        await runner.cleanup()
    print("gateway stopped", flush=True)
    return EXIT_OK


async def _status(args: argparse.Namespace) -> int:
    keys = _client_keys(args.api_key_env)
    headers = {"Authorization": f"Bearer {keys[0]}"} if keys else {}
    url = args.status.rstrip("/")
    url = url.removesuffix("/v1")
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                url + "/status", headers=headers, timeout=aiohttp.ClientTimeout(total=30)
            ) as response,
        ):
            body = await response.read()
            if response.status != 200:
                raise CliError(f"the gateway answered {response.status}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CliError(f"cannot reach the gateway: {type(exc).__name__}") from None
    status = json.loads(body)
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    print(_status_text(status))
    return EXIT_OK


def _status_text(status: dict[str, Any]) -> str:
    """The status as a table: per node its state, model, requests in flight and idle time."""
    rows = []
    for node in status["nodes"]:
        state = "down" if not node["up"] else "degraded" if node["degraded"] else "up"
        if node["swapping"] is not None:
            state += f", swapping to {node['swapping'] or 'nothing'}"
        place = node["model"]
        unverified = place["unverified"]
        model = place["model"] or (f"{unverified} (unverified)" if unverified else "-")
        idle = "-" if place["idle_seconds"] is None else f"{place['idle_seconds']:g} s"
        embedding = node["embedding"]["model"] or node["embedding"]["unverified"] or "-"
        rows.append((node["name"], state, model, place["in_flight"], idle, embedding))
    headers = ("node", "state", "model", "in flight", "idle", "embedding")
    waiting = [f"{name} {n}" for name, n in status["queues"].items() if n]
    return format_table(headers, rows) + "\nqueued: " + (", ".join(waiting) or "nothing")


async def _gateway(args: argparse.Namespace) -> int:
    return await (_status(args) if args.status else _serve(args))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``gateway`` to the top-level commands."""
    parser = subparsers.add_parser(
        "gateway",
        help="one OpenAI-compatible endpoint for a fleet: routes by model, loads on demand",
        description="Serve /v1/chat/completions, /v1/completions, /v1/embeddings and "
        "/v1/models for every node of a nodes file: each request goes to a node holding its "
        "model, loading it there on demand (requests wait in a bounded queue per model), and "
        "a model is never unloaded while requests for it run. /health, /metrics (Prometheus) "
        "need no key. With --status URL (GET /status), print a running gateway's state.",
    )
    parser.add_argument(
        "--nodes", metavar="FILE", default=None, help=f"the nodes file (TOML; env {ENV_NODES})"
    )
    parser.add_argument("--catalog", metavar="FILE", default=None, help="the catalog (TOML)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"the port to listen on (default {DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        default=None,
        help="the variable holding the client keys, comma-separated (needed off loopback)",
    )
    parser.add_argument(
        "--queue-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="most requests waiting per model (overrides the catalog's; default 100)",
    )
    parser.add_argument(
        "--queue-timeout",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="longest wait for a model (overrides the catalog's; default 300)",
    )
    parser.add_argument(
        "--status", metavar="URL", default=None, help="print a running gateway's state and exit"
    )
    parser.add_argument("--json", action="store_true", help="with --status: print the JSON")
    parser.set_defaults(handler=_gateway, command_name="gateway")
