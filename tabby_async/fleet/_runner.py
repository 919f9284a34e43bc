"""The fan-out with a fleet's defaults: the options every fleet operation takes.

Every fleet operation is "this call on each chosen node": a :class:`Runner`
picks the nodes, resolves the per-call ``timeout=`` against the fleet's
defaults and hands the work to the fan-out's bounded pool of workers.

``timeout=`` means one thing on every fleet method: the bound of each
node's whole operation. :data:`~tabby_async.USE_CLIENT_DEFAULT` (the
default) is the fleet's ``node_timeout`` for control operations and its
``load_timeout`` for loads and downloads; ``None`` is no bound; a number is
seconds; a :class:`~tabby_async.Timeout` bounds the node by its ``total``.
Methods that mirror one client's method also pass the value to that call,
so that ``None`` leaves no bound anywhere and a number longer than the
client's own default is not cut short by it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, cast

from .._checks import check_count, check_seconds
from .._client import AsyncTabbyClient
from .._defaults import USE_CLIENT_DEFAULT, TimeoutArg, UseClientDefault
from .._route import CallKind
from .._timeouts import Timeout
from ..types import ModelLoadResponse
from ._fanout import NodeOp, ResultCallback, fan_out
from ._pool import NodePool
from ._results import FleetResult

__all__ = [
    "DEFAULT_NODE_TIMEOUT",
    "OPTION_NAMES",
    "FleetProgressCallback",
    "FleetSettings",
    "NodeCall",
    "RunOptions",
    "Runner",
    "StreamOptions",
    "node_bound",
    "node_progress",
    "split_options",
]

T = TypeVar("T")

#: Default bound of one node's control operation (status, get, unload, ...).
DEFAULT_NODE_TIMEOUT = 60.0

#: Called with ``(node, event)`` for every load progress event of every node;
#: may be a plain function or a coroutine function (as the client's
#: ``on_progress``).
FleetProgressCallback = Callable[[str, ModelLoadResponse], Awaitable[None] | None]

#: One client's call with the per-call timeout: ``(client, timeout) -> awaitable``.
NodeCall = Callable[[AsyncTabbyClient, TimeoutArg], Awaitable[T]]


class StreamOptions(TypedDict, total=False):
    """The fan-out options of a fleet load stream (see :meth:`TabbyFleet.run`)."""

    nodes: Iterable[str] | None
    timeout: TimeoutArg
    fail_fast: bool
    max_concurrency: int | None


class RunOptions(StreamOptions, total=False):
    """The fan-out options every fleet operation takes (see :meth:`TabbyFleet.run`).

    A fleet method takes them as its keywords' tail (``**options``), beside
    a request's keyword fields where it has them.
    """

    on_result: ResultCallback | None


#: The option names (a stream's are among them), told apart from a request's
#: fields by name.
OPTION_NAMES: frozenset[str] = RunOptions.__optional_keys__


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """A fleet's fan-out defaults, checked."""

    max_concurrency: int
    node_timeout: float | None
    load_timeout: float | None

    @classmethod
    def checked(
        cls, max_concurrency: object, node_timeout: object, load_timeout: object
    ) -> FleetSettings:
        """The settings, each refused with :class:`~tabby_async.InvalidInputError` naming it."""
        return cls(
            check_count("max_concurrency", max_concurrency),
            check_seconds("node_timeout", node_timeout),
            check_seconds("load_timeout", load_timeout),
        )

    def default_bound(self, kind: CallKind) -> float | None:
        """The bound of a node's operation of ``kind`` when the call gives none.

        A control call gets ``node_timeout``; one that runs for minutes (a
        load's stream, a silent download or embedding load) ``load_timeout``.
        """
        return self.node_timeout if kind == "control" else self.load_timeout


def node_bound(value: TimeoutArg, default: float | None) -> float | None:
    """The bound of each node's operation, from a fleet call's ``timeout=``."""
    if isinstance(value, UseClientDefault):
        return default
    if isinstance(value, Timeout):
        return value.total
    return check_seconds("timeout", value)


def node_progress(
    on_progress: FleetProgressCallback | None, node: str
) -> Callable[[ModelLoadResponse], Awaitable[None] | None] | None:
    """``on_progress(node, event)`` as one client's progress callback."""
    if on_progress is None:
        return None
    return lambda event: on_progress(node, event)


class Runner:
    """Runs operations on a pool's nodes with the fleet's settings."""

    __slots__ = ("pool", "settings")

    def __init__(self, pool: NodePool, settings: FleetSettings) -> None:
        self.pool = pool
        self.settings = settings

    def concurrency(self, value: int | None) -> int:
        """A call's ``max_concurrency``: the fleet's when None."""
        if value is None:
            return self.settings.max_concurrency
        return check_count("max_concurrency", value)

    async def run(
        self,
        op: NodeOp[T],
        *,
        nodes: Iterable[str] | None = None,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
        fail_fast: bool = False,
        max_concurrency: int | None = None,
        on_result: ResultCallback | None = None,
        operation: str = "run",
        kind: CallKind = "control",
    ) -> FleetResult[T]:
        """``op(name, client)`` on the chosen nodes (see :meth:`TabbyFleet.run`)."""
        bound = node_bound(timeout, self.settings.default_bound(kind))
        return await fan_out(
            self.pool.targets(nodes),
            op,
            max_concurrency=self.concurrency(max_concurrency),
            timeout=bound,
            fail_fast=fail_fast,
            on_result=on_result,
            operation=operation,
        )

    async def each(
        self,
        call: NodeCall[T],
        operation: str,
        options: RunOptions,
        kind: CallKind = "control",
    ) -> FleetResult[T]:
        """``call(client, timeout)`` on the chosen nodes: a client method, fanned out.

        The fleet's ``timeout=`` is passed on to each call as it was given.
        """
        timeout = options.get("timeout", USE_CLIENT_DEFAULT)
        return await self.run(
            lambda _name, client: call(client, timeout),
            operation=operation,
            kind=kind,
            **options,
        )


def split_options(keywords: Mapping[str, Any]) -> tuple[RunOptions, dict[str, Any]]:
    """A fleet method's keywords, as its run options and its request's fields.

    The option names are :class:`RunOptions`' own (:data:`OPTION_NAMES`) and
    no request's keyword fields bear one of them (a download's server-side
    ``timeout`` goes in its Struct), so neither can be taken for the other.
    A keyword that is neither stays with the fields, where building the
    request refuses it by name.
    """
    options = {name: value for name, value in keywords.items() if name in OPTION_NAMES}
    fields = {name: value for name, value in keywords.items() if name not in OPTION_NAMES}
    return cast(RunOptions, options), fields
