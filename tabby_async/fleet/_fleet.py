"""TabbyFleet: many TabbyAPI servers driven as one."""

from __future__ import annotations

import asyncio
import os
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import aiohttp
from yarl import URL

from .._client import AsyncTabbyClient
from .._desired import EnsureResult, LoadPlan, unchanged
from .._resource import build_request
from .._timeouts import TimeoutLike
from ..errors import ClientStateError, InvalidInputError, NodeSkippedError
from ..types import (
    DownloadRequest,
    DownloadResponse,
    EmbeddingModelLoadRequest,
    HealthResponse,
    ModelCard,
    ModelList,
    ModelLoadRequest,
    ModelLoadResponse,
    ModelPropsResponse,
    PermissionResponse,
)
from ._config import NodeSpec, read_nodes_toml
from ._fanout import NodeOp, ResultCallback, fan_out
from ._results import FleetResult, NodeResult
from ._rollout import FleetEnsureReport, RolloutReport, Verifier, default_verify
from ._status import NodeStatus, probe_status
from ._stream import FleetLoadStream

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

__all__ = ["EventCallback", "FleetModels", "RunOptions", "TabbyFleet", "most_nodes_per_host"]

T = TypeVar("T")

#: Called (synchronously) with ``(node, event)`` for every load progress event.
EventCallback = Callable[[str, ModelLoadResponse], object]


class RunOptions(TypedDict, total=False):
    """The fan-out options every fleet operation takes (see :meth:`TabbyFleet.run`)."""

    nodes: Iterable[str] | None
    timeout: float | EllipsisType | None
    fail_fast: bool
    max_concurrency: int | None
    on_result: ResultCallback | None


#: Default bound of one node's control operation (status, get, unload, ...).
DEFAULT_NODE_TIMEOUT = 60.0


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(name, f"must be an integer >= 1, got {value!r}")
    return value


def _seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidInputError(name, f"must be seconds > 0 or None, got {value!r}")
    return float(value)


class TabbyFleet:
    """Many TabbyAPI servers, driven as one.

    Build it from node specs (``TabbyFleet([NodeSpec("gpu-01", url, admin_key=...)])``),
    from a nodes file (:meth:`from_toml`), or from clients you already have
    (``TabbyFleet({"gpu-01": client})`` or a list of clients, named by URL).
    Use it as ``async with TabbyFleet(...) as fleet:`` or call :meth:`aclose`.

    For specs the fleet creates the clients, all on **one** aiohttp session
    whose ``TCPConnector`` (at most ``connection_limit`` connections) is the
    fleet's connection pool; the fleet owns and closes both. Clients passed
    in keep their own sessions and stay open when the fleet closes.
    ``limit_per_host`` bounds the connections of each *node*: the connector
    counts per host:port, so when several nodes share one host:port (path
    prefixes behind one proxy) its per-host bound is ``limit_per_host``
    times the most nodes on one host:port. Otherwise eight connections
    would cap a whole fleet behind one proxy, and its other nodes' calls
    would wait for a connection until they timed out.

    Every operation runs on every node (or on ``nodes=[...]``) with at most
    ``max_concurrency`` nodes at a time and returns a
    :class:`~tabby_async.fleet.FleetResult`: per node the value or the typed
    error, and the time taken. One node failing never stops the others unless
    ``fail_fast=True``. ``node_timeout`` bounds each node's control calls and
    ``load_timeout`` each node's whole load (None: no bound; a dead server is
    still noticed by the stream's read timeout). Both can be overridden per
    call with ``timeout=``.
    """

    def __init__(
        self,
        nodes: Iterable[NodeSpec | AsyncTabbyClient] | Mapping[str, AsyncTabbyClient],
        *,
        max_concurrency: int = 64,
        node_timeout: float | None = DEFAULT_NODE_TIMEOUT,
        load_timeout: float | None = None,
        connection_limit: int | None = None,
        limit_per_host: int = 8,
        client_timeout: TimeoutLike = None,
        stream_timeout: TimeoutLike = None,
        max_retries: int = 2,
        ssl: _ssl.SSLContext | bool = True,
    ) -> None:
        self.max_concurrency = _positive_int("max_concurrency", max_concurrency)
        self.node_timeout = _seconds("node_timeout", node_timeout)
        self.load_timeout = _seconds("load_timeout", load_timeout)
        self._limit_per_host = _positive_int("limit_per_host", limit_per_host)
        # Room for every concurrent node to run status' four probes at once.
        default_limit = max(100, 4 * self.max_concurrency)
        self._connection_limit = _positive_int(
            "connection_limit", default_limit if connection_limit is None else connection_limit
        )
        self._client_options: dict[str, Any] = {"max_retries": max_retries, "ssl": ssl}
        # Not given: the clients' own defaults.
        if client_timeout is not None:
            self._client_options["timeout"] = client_timeout
        if stream_timeout is not None:
            self._client_options["stream_timeout"] = stream_timeout
        items: Iterable[tuple[str | None, NodeSpec | AsyncTabbyClient]]
        if isinstance(nodes, Mapping):
            items = list(nodes.items())
        else:
            items = [(None, node) for node in nodes]
        self._specs: dict[str, NodeSpec] = {}
        self._clients: dict[str, AsyncTabbyClient] = {}
        self._order: list[str] = []
        self._owned: set[str] = set()
        for given_name, node in items:
            if isinstance(node, NodeSpec):
                name = node.name if given_name is None else given_name
            elif isinstance(node, AsyncTabbyClient):
                name = given_name if given_name is not None else str(node.base_url)
            else:
                raise InvalidInputError(
                    "nodes", f"must hold NodeSpec or AsyncTabbyClient, not {type(node).__name__}"
                )
            if name in self._specs or name in self._clients:
                raise InvalidInputError("nodes", f"two nodes are named {name!r}")
            self._order.append(name)
            if isinstance(node, NodeSpec):
                self._specs[name] = node
            else:
                self._clients[name] = node
        if not self._order:
            raise InvalidInputError("nodes", "a fleet needs at least one node")
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.models = FleetModels(self)

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None, **options: Any
    ) -> TabbyFleet:
        """A fleet from a nodes file (see :mod:`tabby_async.fleet._config` for its format).

        Keys come from the environment variables the file names (``env``
        replaces ``os.environ``). Options given here override the file's
        ``[fleet]`` table.
        """
        specs, file_options = read_nodes_toml(path, env=env)
        return cls(specs, **{**file_options, **options})

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return (
            f"TabbyFleet({len(self._order)} nodes, max_concurrency={self.max_concurrency}{state})"
        )

    # --- nodes and lifecycle -------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        """The node names, in fleet order."""
        return list(self._order)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The shared session of the fleet-made clients (None until first use)."""
        return self._session

    def _ensure_clients(self) -> None:
        """Create the shared session and the clients for specs, in the running loop."""
        if self._closed:
            raise ClientStateError("the fleet is closed")
        if self._session is not None or not self._specs:
            return
        asyncio.get_running_loop()  # raises outside a loop, before anything is built
        connector = aiohttp.TCPConnector(
            limit=self._connection_limit,
            limit_per_host=self._limit_per_host * most_nodes_per_host(self._specs.values()),
        )
        session = aiohttp.ClientSession(connector=connector)
        made: dict[str, AsyncTabbyClient] = {}
        try:
            for name, spec in self._specs.items():
                made[name] = AsyncTabbyClient(
                    spec.url,
                    api_key=spec.api_key,
                    admin_key=spec.admin_key,
                    session=session,
                    **self._client_options,
                )
        except BaseException:
            # A bad client option: nothing was sent; drop the unused pool
            # without an "unclosed session" warning.
            session.detach()
            raise
        self._session = session
        self._clients.update(made)
        self._owned.update(made)

    def client(self, name: str) -> AsyncTabbyClient:
        """The client of one node (call inside the event loop)."""
        if name not in self._specs and name not in self._clients:
            raise InvalidInputError("node", f"no node is named {name!r}")
        self._ensure_clients()
        return self._clients[name]

    @property
    def clients(self) -> dict[str, AsyncTabbyClient]:
        """Every node's client, in fleet order (call inside the event loop)."""
        self._ensure_clients()
        return {name: self._clients[name] for name in self._order}

    async def __aenter__(self) -> Self:
        self._ensure_clients()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the clients the fleet made and its shared session (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for name in self._owned:
            await self._clients[name].aclose()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    close = aclose

    def _targets(self, nodes: Iterable[str] | None) -> list[tuple[str, AsyncTabbyClient]]:
        self._ensure_clients()
        if nodes is None:
            return [(name, self._clients[name]) for name in self._order]
        if isinstance(nodes, str):
            raise InvalidInputError("nodes", "must be a list of node names, not one string")
        chosen = list(dict.fromkeys(nodes))
        unknown = [n for n in chosen if n not in self._clients]
        if unknown:
            raise InvalidInputError("nodes", f"unknown node names: {', '.join(unknown)}")
        return [(name, self._clients[name]) for name in chosen]

    # --- running things on every node -----------------------------------------

    async def run(
        self,
        op: NodeOp[T],
        *,
        nodes: Iterable[str] | None = None,
        timeout: float | EllipsisType | None = ...,
        fail_fast: bool = False,
        max_concurrency: int | None = None,
        on_result: ResultCallback | None = None,
        operation: str = "run",
    ) -> FleetResult[T]:
        """Run ``op(name, client)`` on every node; the fan-out every method uses.

        ``timeout`` (seconds or None) bounds each node; it defaults to the
        fleet's ``node_timeout``. ``on_result`` sees each NodeResult as soon as
        the node is done (for live views).
        """
        per_node = self.node_timeout if timeout is ... else _seconds("timeout", timeout)
        limit = self.max_concurrency
        if max_concurrency is not None:
            limit = _positive_int("max_concurrency", max_concurrency)
        return await fan_out(
            self._targets(nodes),
            op,
            max_concurrency=limit,
            timeout=per_node,
            fail_fast=fail_fast,
            on_result=on_result,
            operation=operation,
        )

    async def health(self, **kw: Unpack[RunOptions]) -> FleetResult[HealthResponse]:
        """``GET /health`` on every node (options as for :meth:`run`)."""
        return await self.run(lambda _n, c: c.health(), operation="health", **kw)

    async def permission(self, **kw: Unpack[RunOptions]) -> FleetResult[PermissionResponse]:
        """What each node's key may do (``GET /v1/auth/permission``)."""
        return await self.run(lambda _n, c: c.permission(), operation="permission", **kw)

    async def status(
        self,
        *,
        nodes: Iterable[str] | None = None,
        timeout: float | EllipsisType | None = ...,
        max_concurrency: int | None = None,
        on_result: ResultCallback | None = None,
        concurrent_probes: bool = False,
    ) -> FleetResult[NodeStatus]:
        """A concurrent snapshot of every node, for monitoring.

        Per node, four probes: health, the key's permission, the loaded
        model (with its context) and the embedding model. They go one after
        the other on one connection (health first, so an unreachable node
        costs one connect); ``concurrent_probes=True`` sends them at once on
        four connections. A node that cannot be reached gets its connection
        error or timeout as its result; otherwise a
        :class:`~tabby_async.fleet.NodeStatus` (with any probe that failed,
        e.g. a refused key, in ``problems``).
        """
        return await self.run(
            lambda _n, c: probe_status(c, concurrent=concurrent_probes),
            nodes=nodes,
            timeout=timeout,
            max_concurrency=max_concurrency,
            on_result=on_result,
            operation="status",
        )

    async def plan_load(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        nodes: Iterable[str] | None = None,
        timeout: float | EllipsisType | None = ...,
        max_concurrency: int | None = None,
        on_result: ResultCallback | None = None,
        **fields: Any,
    ) -> FleetResult[LoadPlan]:
        """What :meth:`ensure_loaded` would do on each node, and why; loads nothing."""
        body = build_request(ModelLoadRequest, request, fields)
        return await self.run(
            lambda _n, c: c.models.plan_load(body),
            nodes=nodes,
            timeout=timeout,
            max_concurrency=max_concurrency,
            on_result=on_result,
            operation="plan",
        )

    async def ensure_loaded(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        dry_run: bool = False,
        nodes: Iterable[str] | None = None,
        timeout: float | EllipsisType | None = ...,
        max_concurrency: int | None = None,
        fail_fast: bool = False,
        verify: bool = True,
        on_plan: Callable[[FleetResult[LoadPlan]], object] | None = None,
        on_event: EventCallback | None = None,
        on_result: ResultCallback | None = None,
        **fields: Any,
    ) -> FleetEnsureReport:
        """Bring every node to the requested model and parameters.

        First every node is planned (``GET /v1/model`` and a comparison; see
        :meth:`AsyncModelsService.ensure_loaded`), and ``on_plan`` sees the
        plans. Then the nodes that need it are loaded or reloaded; nodes
        already right are not touched again. ``dry_run`` stops after the
        plan. ``timeout`` bounds each node's ensure (default: the fleet's
        ``load_timeout``).
        """
        body = build_request(ModelLoadRequest, request, fields)
        plans = await self.plan_load(body, nodes=nodes, max_concurrency=max_concurrency)
        if on_plan is not None:
            on_plan(plans)
        if dry_run:
            return FleetEnsureReport(plans, None)
        to_change = [r.node for r in plans.succeeded if r.value is not None and r.value.changes]
        acted = await self.run(
            lambda name, c: c.models.ensure_loaded(
                body, on_progress=_bind(on_event, name), verify=verify
            ),
            nodes=to_change,
            timeout=self.load_timeout if timeout is ... else timeout,
            max_concurrency=max_concurrency,
            fail_fast=fail_fast,
            on_result=on_result,
            operation="ensure",
        )
        merged: list[NodeResult[EnsureResult]] = []
        for planned in plans:
            if planned.node in acted:
                merged.append(acted[planned.node])
            elif planned.error is not None:
                merged.append(NodeResult(planned.node, None, planned.error, planned.elapsed))
            else:
                plan = planned.value
                assert plan is not None
                merged.append(NodeResult(planned.node, unchanged(plan), None, planned.elapsed))
        results = FleetResult(merged, operation="ensure", elapsed=plans.elapsed + acted.elapsed)
        return FleetEnsureReport(plans, results)

    async def rollout(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        batch_size: int = 1,
        max_failures: int = 0,
        verify: bool | Verifier = True,
        nodes: Iterable[str] | None = None,
        timeout: float | EllipsisType | None = ...,
        on_event: EventCallback | None = None,
        on_result: ResultCallback | None = None,
        on_batch: Callable[[int, FleetResult[EnsureResult]], object] | None = None,
        **fields: Any,
    ) -> RolloutReport:
        """A rolling load: ``batch_size`` nodes at a time, each checked before the next batch.

        Each node of a batch gets ``ensure_loaded`` (so a node already right
        is left alone and a re-run resumes a halted rollout). Once the whole
        batch has loaded, each of its nodes is checked: ``/health`` healthy
        and ``get()`` showing the requested model and context (or your own
        ``verify`` coroutine; ``verify=False`` skips it). When the failures
        so far exceed ``max_failures`` the rollout halts; the report says
        what was done, what failed and which nodes were not touched.
        ``timeout`` bounds each node's load (default: ``load_timeout``), the
        checks get ``node_timeout``. ``on_result`` sees each node's final
        result (after its check); ``on_batch(index, results)`` each batch's.
        """
        body = build_request(ModelLoadRequest, request, fields)
        size = _positive_int("batch_size", batch_size)
        if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
            raise InvalidInputError(
                "max_failures", f"must be an integer >= 0, got {max_failures!r}"
            )
        checker: Verifier | None
        if verify is True:
            checker = default_verify
        elif verify is False:
            checker = None
        else:
            checker = verify
        per_node = self.load_timeout if timeout is ... else _seconds("timeout", timeout)
        order = [name for name, _ in self._targets(nodes)]

        def load_one(name: str, client: AsyncTabbyClient) -> Awaitable[EnsureResult]:
            return client.models.ensure_loaded(body, on_progress=_bind(on_event, name))

        check_one: NodeOp[None] | None = None
        if checker is not None:
            verify_with = checker

            async def check(name: str, client: AsyncTabbyClient) -> None:
                await verify_with(name, client, body)

            check_one = check

        started = time.perf_counter()
        done: dict[str, NodeResult[EnsureResult]] = {}
        batches: list[tuple[str, ...]] = []
        failures = 0
        halted = False
        for first in range(0, len(order), size):
            batch = order[first : first + size]
            batches.append(tuple(batch))

            ran = await self.run(
                load_one,
                nodes=batch,
                timeout=per_node,
                max_concurrency=size,
                operation=f"rollout batch {len(batches)}",
            )
            if check_one is not None and ran.succeeded:
                # The whole batch has loaded: check each node now, before the next batch.
                checked = await self.run(
                    check_one,
                    nodes=[r.node for r in ran.succeeded],
                    max_concurrency=size,
                    operation=f"rollout check {len(batches)}",
                )
                final = []
                for r in ran:
                    outcome = checked.get(r.node)
                    if outcome is not None and outcome.error is not None:
                        r = NodeResult(r.node, None, outcome.error, r.elapsed + outcome.elapsed)
                    final.append(r)
                ran = FleetResult(final, operation=ran.operation, elapsed=ran.elapsed)
            for r in ran:
                done[r.node] = r
                if on_result is not None:
                    on_result(r)
            failures += len(ran.failed)
            if on_batch is not None:
                on_batch(len(batches) - 1, ran)
            if failures > max_failures and first + size < len(order):
                halted = True
                break
        results: list[NodeResult[EnsureResult]] = []
        for name in order:
            if name in done:
                results.append(done[name])
            else:
                err = NodeSkippedError(
                    f"{name}: not touched: the rollout halted after {failures} failures "
                    f"(max_failures={max_failures})"
                )
                skipped: NodeResult[EnsureResult] = NodeResult(name, None, err, 0.0)
                results.append(skipped)
                if on_result is not None:
                    on_result(skipped)
        fleet_result = FleetResult(
            results, operation="rollout", elapsed=time.perf_counter() - started
        )
        return RolloutReport(body, fleet_result, tuple(batches), halted, max_failures)


def most_nodes_per_host(specs: Iterable[NodeSpec]) -> int:
    """The most nodes that share one host:port (the key of the connector's per-host bound)."""
    counts: dict[tuple[str, int | None, str], int] = {}
    for spec in specs:
        url = URL(spec.url.strip())
        key = ((url.host or "").lower(), url.port, url.scheme)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=1)


def _bind(on_event: EventCallback | None, name: str) -> Callable[[ModelLoadResponse], None] | None:
    """``on_event(name, event)`` as a one-server progress callback."""
    if on_event is None:
        return None

    def progress(event: ModelLoadResponse) -> None:
        on_event(name, event)

    return progress


class FleetModels:
    """The Models API on every node: ``fleet.models``.

    Each method is the one-server method of the same name, fanned out.
    Every method takes ``nodes=``, ``timeout=`` (per node), ``fail_fast=``,
    ``max_concurrency=`` and ``on_result=`` as :meth:`TabbyFleet.run` does.
    Requests are checked once, before any node is contacted.
    """

    def __init__(self, fleet: TabbyFleet) -> None:
        self._fleet = fleet

    async def list(self, **kw: Unpack[RunOptions]) -> FleetResult[ModelList]:
        return await self._fleet.run(lambda _n, c: c.models.list(), operation="list", **kw)

    async def get(self, **kw: Unpack[RunOptions]) -> FleetResult[ModelCard]:
        """The loaded model of each node (ModelNotLoadedError where none is)."""
        return await self._fleet.run(lambda _n, c: c.models.get(), operation="get", **kw)

    async def get_props(self, **kw: Unpack[RunOptions]) -> FleetResult[ModelPropsResponse]:
        return await self._fleet.run(
            lambda _n, c: c.models.get_props(), operation="get_props", **kw
        )

    async def list_draft(self, **kw: Unpack[RunOptions]) -> FleetResult[ModelList]:
        return await self._fleet.run(
            lambda _n, c: c.models.list_draft(), operation="list_draft", **kw
        )

    async def list_embedding(self, **kw: Unpack[RunOptions]) -> FleetResult[ModelList]:
        return await self._fleet.run(
            lambda _n, c: c.models.list_embedding(), operation="list_embedding", **kw
        )

    async def get_embedding(self, **kw: Unpack[RunOptions]) -> FleetResult[ModelCard]:
        return await self._fleet.run(
            lambda _n, c: c.models.get_embedding(), operation="get_embedding", **kw
        )

    async def unload(self, **kw: Unpack[RunOptions]) -> FleetResult[None]:
        return await self._fleet.run(lambda _n, c: c.models.unload(), operation="unload", **kw)

    async def unload_embedding(self, **kw: Unpack[RunOptions]) -> FleetResult[None]:
        return await self._fleet.run(
            lambda _n, c: c.models.unload_embedding(), operation="unload_embedding", **kw
        )

    async def load(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        nodes: Iterable[str] | None = None,
        timeout: float | EllipsisType | None = ...,
        fail_fast: bool = False,
        max_concurrency: int | None = None,
        on_event: EventCallback | None = None,
        on_result: ResultCallback | None = None,
        **fields: Any,
    ) -> FleetResult[ModelLoadResponse]:
        """Load on every node; each node's value is its ``finished`` event.

        Remember the server ignores new parameters for a model it already
        runs: :meth:`ensure_loaded` compares first. ``timeout`` defaults to
        the fleet's ``load_timeout``.
        """
        body = build_request(ModelLoadRequest, request, fields)
        fleet = self._fleet
        return await fleet.run(
            lambda name, c: c.models.load(body, on_progress=_bind(on_event, name)),
            nodes=nodes,
            timeout=fleet.load_timeout if timeout is ... else timeout,
            fail_fast=fail_fast,
            max_concurrency=max_concurrency,
            on_result=on_result,
            operation="load",
        )

    def load_stream(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        nodes: Iterable[str] | None = None,
        timeout: float | EllipsisType | None = ...,
        stream_timeout: TimeoutLike = None,
        fail_fast: bool = False,
        max_concurrency: int | None = None,
        **fields: Any,
    ) -> FleetLoadStream:
        """One async iterator over every node's load events (see FleetLoadStream).

        ``timeout`` bounds each node's whole load (default: the fleet's
        ``load_timeout``); ``stream_timeout`` is the one-server stream timeout.
        """
        body = build_request(ModelLoadRequest, request, fields)
        fleet = self._fleet
        limit = fleet.max_concurrency
        if max_concurrency is not None:
            limit = _positive_int("max_concurrency", max_concurrency)
        return FleetLoadStream(
            fleet._targets(nodes),
            body,
            max_concurrency=limit,
            node_timeout=fleet.load_timeout if timeout is ... else _seconds("timeout", timeout),
            stream_timeout=stream_timeout,
            fail_fast=fail_fast,
        )

    async def plan_load(
        self, request: ModelLoadRequest | None = None, /, **kw: Any
    ) -> FleetResult[LoadPlan]:
        """Same as :meth:`TabbyFleet.plan_load`."""
        return await self._fleet.plan_load(request, **kw)

    async def ensure_loaded(
        self, request: ModelLoadRequest | None = None, /, **kw: Any
    ) -> FleetEnsureReport:
        """Same as :meth:`TabbyFleet.ensure_loaded`."""
        return await self._fleet.ensure_loaded(request, **kw)

    async def load_embedding(
        self,
        request: EmbeddingModelLoadRequest | None = None,
        /,
        *,
        nodes: Iterable[str] | None = None,
        timeout: float | EllipsisType | None = ...,
        fail_fast: bool = False,
        max_concurrency: int | None = None,
        on_result: ResultCallback | None = None,
        **fields: Any,
    ) -> FleetResult[ModelLoadResponse]:
        body = build_request(EmbeddingModelLoadRequest, request, fields)
        fleet = self._fleet
        return await fleet.run(
            lambda _n, c: c.models.load_embedding(body),
            nodes=nodes,
            timeout=fleet.load_timeout if timeout is ... else timeout,
            fail_fast=fail_fast,
            max_concurrency=max_concurrency,
            on_result=on_result,
            operation="load_embedding",
        )

    async def download(
        self,
        request: DownloadRequest | None = None,
        /,
        *,
        nodes: Iterable[str] | None = None,
        timeout: float | EllipsisType | None = ...,
        fail_fast: bool = False,
        max_concurrency: int | None = None,
        on_result: ResultCallback | None = None,
        **fields: Any,
    ) -> FleetResult[DownloadResponse]:
        """Have every node download a Hugging Face repo (``timeout`` default: load_timeout)."""
        body = build_request(DownloadRequest, request, fields)
        fleet = self._fleet
        return await fleet.run(
            lambda _n, c: c.models.download(body),
            nodes=nodes,
            timeout=fleet.load_timeout if timeout is ... else timeout,
            fail_fast=fail_fast,
            max_concurrency=max_concurrency,
            on_result=on_result,
            operation="download",
        )
