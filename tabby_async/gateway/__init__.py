"""tabby_async.gateway: one OpenAI-compatible endpoint for a whole TabbyAPI fleet.

TabbyAPI serves one model per process. The gateway sits in front of many
and routes each request by its ``model`` to a node holding that model,
loading it on demand (waiting requests queue, bounded, per model), and never
unloads a model while requests for it still run there::

    from tabby_async.fleet import TabbyFleet
    from tabby_async.gateway import Gateway, read_catalog

    fleet = TabbyFleet.from_toml("nodes.toml")
    gateway = Gateway(fleet, read_catalog("catalog.toml"), close_fleet=True)
    web.run_app(gateway.app(), host="127.0.0.1", port=8080, handler_cancellation=True)

or from the command line: ``tabby-async gateway --nodes nodes.toml --catalog
catalog.toml``. The routes, the catalog's format, the policies and what
TabbyAPI does that the gateway works around are in the documentation's
gateway guide. Needs the extra ``gateway``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from .._public import publish as _publish
from ..fleet import TabbyFleet, read_nodes_toml
from ._catalog import (
    Catalog,
    CatalogModel,
    GatewayPolicy,
    ModelKind,
    parse_catalog,
    read_catalog,
    unservable,
)
from ._errors import GatewayCode, GatewayError
from ._gateway import Gateway

__all__ = [
    "Catalog",
    "CatalogModel",
    "Gateway",
    "GatewayCode",
    "GatewayError",
    "GatewayPolicy",
    "ModelKind",
    "create_app",
    "gateway_pool",
    "parse_catalog",
    "read_catalog",
    "unservable",
]


#: The connections the gateway's fleet may open, in all and to one node (the fleet's own
#: default, 8, would queue the ninth stream in the client).
LIMIT_PER_NODE = 10_000


def gateway_pool(options: Mapping[str, Any]) -> dict[str, Any]:
    """A nodes file's fleet options with the gateway's pool: every stream holds a connection.

    The fleet's defaults suit admin calls (a few connections per node); the
    gateway keeps one open per request in flight, so it lifts the bounds
    unless the nodes file sets them.
    """
    return {"connection_limit": LIMIT_PER_NODE, "limit_per_host": LIMIT_PER_NODE, **options}


def create_app(
    nodes: str | os.PathLike[str],
    catalog: str | os.PathLike[str],
    *,
    api_keys: Sequence[str] = (),
) -> web.Application:
    """An app factory: the gateway over a nodes file and a catalog file.

    Raises:
        InvalidInputError: either file is wrong (naming its key), or the
            catalog names a node the nodes file does not have.
    """
    parsed = read_catalog(catalog)
    specs, options = read_nodes_toml(nodes)
    parsed.check_nodes([spec.name for spec in specs])
    fleet = TabbyFleet(specs, **gateway_pool(options))
    return Gateway(fleet, parsed, api_keys=list(api_keys), close_fleet=True).app()


_publish(globals(), __all__, __name__)
