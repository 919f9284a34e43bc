"""The options every ``tabby-async fleet`` command shares: the nodes file, the nodes, the bounds."""

from __future__ import annotations

import argparse
import os

from ._args import name_list, positive_int, positive_seconds
from ._load_options import add_load_options
from .common import EXIT_USAGE, CliError

__all__ = ["ENV_NODES", "add_load_flags", "add_load_timeout", "fleet_options", "nodes_file"]

#: Where the fleet commands find the nodes file when ``--nodes`` is not given.
ENV_NODES = "TABBY_FLEET_NODES"


def nodes_file(args: argparse.Namespace) -> str:
    """The nodes file: ``--nodes``, else ``TABBY_FLEET_NODES``; a usage error without either."""
    path: str | None = args.nodes or os.environ.get(ENV_NODES)
    if not path:
        raise CliError(f"give --nodes nodes.toml (or set {ENV_NODES})", exit_code=EXIT_USAGE)
    return path


def fleet_options() -> argparse.ArgumentParser:
    """Options every fleet command takes (defaults suppressed where the top level has them)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("fleet")
    group.add_argument(
        "--nodes",
        metavar="FILE",
        default=None,
        help=f"the nodes file (TOML; env {ENV_NODES})",
    )
    group.add_argument(
        "--only",
        type=name_list,
        metavar="NAME,NAME",
        default=None,
        help="run on these nodes of the file only",
    )
    group.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help="nodes worked on at once (default: the file's [fleet] max_concurrency, or 64)",
    )
    group.add_argument(
        "--node-timeout",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="bound of each node's control calls (default 60)",
    )
    group.add_argument(
        "--plain", action="store_true", help="plain lines even on a terminal (no live bars)"
    )
    parent.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document with every node's result instead of a table",
    )
    return parent


def add_load_flags(parser: argparse.ArgumentParser) -> None:
    add_load_options(parser)
    add_load_timeout(parser)


def add_load_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--load-timeout",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="bound of each node's whole load (default: none)",
    )
