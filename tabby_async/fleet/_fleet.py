"""TabbyFleet: many TabbyAPI servers driven as one."""

from __future__ import annotations

import os
import ssl as _ssl
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import aiohttp

from .._client import AsyncTabbyClient
from .._defaults import USE_CLIENT_DEFAULT, TimeoutArg
from .._model_plan import ModelResult, check_reachable
from .._resource import build_request
from .._state_plan import DesiredState, StatePlan, StateResult
from ..errors import InvalidInputError
from ..types import HealthResponse, ModelLoadRequest, PermissionResponse
from ._config import FleetOptions, NodeSpec, check_fleet_options, read_nodes_toml
from ._fanout import NodeOp, ResultCallback
from ._models import FleetModels
from ._pool import NodePool
from ._results import FleetResult
from ._rollout import BatchCallback, NodeCheck, RolloutReport, StateCheck, rollout_on_fleet
from ._runner import (
    DEFAULT_NODE_TIMEOUT,
    FleetProgressCallback,
    FleetSettings,
    Runner,
    RunOptions,
)
from ._state_apply import FleetStateReport, apply_on_fleet
from ._status import NodeStatus, probe_status

if TYPE_CHECKING:
    from typing import Self, Unpack

    from ..types import ModelLoadFields

__all__ = ["TabbyFleet"]

T = TypeVar("T")


class TabbyFleet:
    """Many TabbyAPI servers, driven as one.

    Build it from node specs (``TabbyFleet([NodeSpec("gpu-01", url, admin_key=...)])``),
    from a nodes file (:meth:`from_toml`), or from clients you already have
    (``TabbyFleet({"gpu-01": client})`` or a list of clients, named by URL).
    Use it as ``async with TabbyFleet(...) as fleet:`` or call :meth:`aclose`.

    For specs the fleet creates the clients (with the client defaults, and
    the ``max_retries`` and ``ssl`` given here), all on **one** aiohttp
    session whose connector (at most ``connection_limit`` connections) is the
    fleet's connection pool; the fleet owns and closes both. For other client
    settings, build the clients yourself and pass them: they keep their own
    sessions and stay open when the fleet closes. ``limit_per_host`` bounds
    the connections of each *node*, also when several nodes share one
    host:port behind a proxy. ``trace_configs`` (aiohttp ``TraceConfig``
    objects, such as OpenTelemetry's aiohttp instrumentation) go to that
    shared session, so every request to a node made from a spec is traced;
    clients passed in keep their own sessions' trace configs.

    Every operation runs on every node (or on ``nodes=[...]``) with at most
    ``max_concurrency`` nodes at a time and returns a
    :class:`~tabby_async.fleet.FleetResult`: per node the value or the typed
    error, and the time taken. One node failing never stops the others unless
    ``fail_fast=True``. :meth:`run` runs any operation of the client this
    way; ``fleet.models`` has the Models API ready-made.

    Every operation takes the run options as its keywords' tail (``**options``:
    :class:`~tabby_async.fleet.RunOptions`, described at :meth:`run`).

    A node's failure is never raised: it is that node's result (its typed
    error), and :meth:`FleetResult.raise_for_errors` turns failures into a
    :class:`~tabby_async.fleet.FleetError` when that is wanted. The operations
    raise only :class:`~tabby_async.InvalidInputError` (a bad request or
    option, an unknown node name, before any node is contacted) and
    :class:`~tabby_async.ClientStateError` (a closed fleet, or one used from
    another event loop). The constructor raises
    :class:`~tabby_async.InvalidInputError` for a bad option, no node, or
    two nodes of one name.
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
        max_retries: int = 2,
        ssl: _ssl.SSLContext | bool = True,
        trace_configs: Iterable[aiohttp.TraceConfig] | None = None,
    ) -> None:
        settings = FleetSettings.checked(max_concurrency, node_timeout, load_timeout)
        if connection_limit is None:
            # Room for every concurrent node to run status' four probes at once.
            connection_limit = max(100, 4 * settings.max_concurrency)
        self._pool = NodePool(
            nodes,
            connection_limit=connection_limit,
            limit_per_host=limit_per_host,
            max_retries=max_retries,
            ssl=ssl,
            trace_configs=trace_configs,
        )
        self._runner = Runner(self._pool, settings)
        #: The Models API on every node.
        self.models = FleetModels(self._runner)

    @classmethod
    def from_toml(
        cls,
        path: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        **options: Unpack[FleetOptions],
    ) -> TabbyFleet:
        """A fleet from a nodes file (its format: :func:`~tabby_async.fleet.read_nodes_toml`).

        Keys come from the environment variables the file names (``env``
        replaces ``os.environ``). Options given here override the file's
        ``[fleet]`` table.

        Raises:
            InvalidInputError: the file cannot be read or is not TOML, or a
                key, value or variable in it is wrong (naming its key path),
                or an option given here is.
        """
        check_fleet_options(options, FleetOptions.__annotations__)
        specs, file_options = read_nodes_toml(path, env=env)
        return cls(specs, **{**file_options, **options})

    def __repr__(self) -> str:
        state = ", closed" if self.closed else ""
        return f"TabbyFleet({len(self.nodes)} nodes, max_concurrency={self.max_concurrency}{state})"

    # --- settings, nodes and lifecycle -------------------------------------------

    @property
    def max_concurrency(self) -> int:
        """The most nodes an operation works on at once (unless it says otherwise)."""
        return self._runner.settings.max_concurrency

    @property
    def node_timeout(self) -> float | None:
        """The default bound of each node's control operation (None: no bound)."""
        return self._runner.settings.node_timeout

    @property
    def load_timeout(self) -> float | None:
        """The default bound of each node's load or download (None: no bound)."""
        return self._runner.settings.load_timeout

    @property
    def nodes(self) -> list[str]:
        """The node names, in fleet order."""
        return list(self._pool.names)

    @property
    def desired(self) -> dict[str, DesiredState]:
        """The desired state each node declares (its spec's ``desired``), in fleet order.

        Nodes that declare none (and nodes given as clients) are left out.
        """
        return self._pool.declared()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._pool.closed

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The shared session of the fleet-made clients (None until first use)."""
        return self._pool.session

    def client(self, name: str) -> AsyncTabbyClient:
        """The client of one node (call inside the event loop)."""
        return self._pool.client(name)

    @property
    def clients(self) -> dict[str, AsyncTabbyClient]:
        """Every node's client, in fleet order (call inside the event loop)."""
        return self._pool.clients()

    async def __aenter__(self) -> Self:
        self._pool.open()
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
        await self._pool.aclose()

    close = aclose

    # --- running things on every node -----------------------------------------

    async def run(
        self, op: NodeOp[T], *, operation: str = "run", **options: Unpack[RunOptions]
    ) -> FleetResult[T]:
        """Run ``op(name, client)`` on every node: the fleet's one fan-out.

        Any operation of the client works, so a new API area needs nothing
        from the fleet::

            health = await fleet.run(lambda node, client: client.health())
            lists = await fleet.run(lambda node, client: client.models.list(), nodes=["gpu-01"])

        The run options (:class:`~tabby_async.fleet.RunOptions`), which
        every fleet operation takes as ``**options``:

        - ``nodes``: the names of the nodes to run on (default: every node).
        - ``timeout``: the bound of each node's whole operation. By default
          (:data:`~tabby_async.USE_CLIENT_DEFAULT`) the fleet's
          ``node_timeout`` (60 s unless set), and for loads and downloads its
          ``load_timeout`` (no bound unless set: a dead server is still
          noticed by the stream's idle bound); None: no bound; a number:
          seconds; a :class:`~tabby_async.Timeout`: its ``total``. The
          methods that mirror a client method (``health()``,
          ``fleet.models.load()``, ...) pass it on to each node's call as
          well, so None leaves no bound anywhere; the calls inside ``op``
          keep their client's own timeouts unless ``op`` passes its own.
        - ``fail_fast``: at the first failed node, cancel the running nodes
          (:class:`~tabby_async.fleet.NodeCancelledError`) and start no other
          (:class:`~tabby_async.fleet.NodeSkippedError`).
        - ``max_concurrency``: the most nodes at once (default: the fleet's).
        - ``on_result``: sees each :class:`~tabby_async.fleet.NodeResult` as
          soon as its node is done (for live views).

        ``operation`` names the result.

        Raises:
            InvalidInputError: a bad option or an unknown node name.
            ClientStateError: the fleet is closed.
        """
        return await self._runner.run(op, operation=operation, **options)

    async def health(self, **options: Unpack[RunOptions]) -> FleetResult[HealthResponse]:
        """``GET /health`` on every node (``**options``: see :class:`RunOptions`)."""
        return await self._runner.each(lambda c, t: c.health(timeout=t), "health", options)

    async def permission(self, **options: Unpack[RunOptions]) -> FleetResult[PermissionResponse]:
        """Each node key's rights, ``GET /v1/auth/permission`` (``**options``: see RunOptions)."""
        return await self._runner.each(lambda c, t: c.permission(timeout=t), "permission", options)

    async def status(
        self, *, concurrent_probes: bool = False, **options: Unpack[RunOptions]
    ) -> FleetResult[NodeStatus]:
        """A concurrent snapshot of every node, for monitoring.

        Per node, four probes: health, the key's permission, the loaded
        model (with its context) and the embedding model. They go one after
        the other on one connection (health first, so an unreachable node
        costs one connect); ``concurrent_probes=True`` sends them at once on
        four connections. A node that cannot be reached gets its connection
        error or timeout as its result; otherwise a
        :class:`~tabby_async.fleet.NodeStatus` (with any probe that failed,
        e.g. a refused key, in ``problems``). ``**options``: see
        :class:`~tabby_async.fleet.RunOptions`.
        """
        return await self._runner.each(
            lambda c, t: probe_status(c, concurrent=concurrent_probes, timeout=t),
            "status",
            options,
        )

    async def apply(
        self,
        state: DesiredState | None = None,
        *,
        dry_run: bool = False,
        on_progress: FleetProgressCallback | None = None,
        on_plan: Callable[[FleetResult[StatePlan]], object] | None = None,
        **options: Unpack[RunOptions],
    ) -> FleetStateReport:
        """Bring every node to a desired state: its model, template, sampler preset, embedding.

        With ``state=None`` each node gets the state it declares (its spec's
        ``desired``, e.g. from the nodes file); the chosen nodes that declare
        none are left out and listed in the report's ``unmanaged`` (and if no
        chosen node declares one, :class:`~tabby_async.InvalidInputError`
        is raised before any node is contacted). With a state, every chosen
        node gets that state.

        First every node is planned (``client.apply(state, dry_run=True)``,
        reads only) and ``on_plan`` sees the plans. Then ``client.apply``
        runs on the nodes whose plan changes something, at most
        ``max_concurrency`` at a time; the others are not touched again, so
        a second run with the same state sends no write. A node that still
        differs after acting gets its :class:`~tabby_async.StateMismatchError`
        as its result. ``dry_run`` stops after the plan. ``timeout`` bounds
        each node's plan and then its ensure (default: ``node_timeout`` for
        the plan, ``load_timeout`` for the ensure) and is passed on to the
        loads; ``on_progress(node, event)`` sees the model loads' events;
        ``fail_fast`` and ``on_result`` apply to the ensure.

        ``**options``: see :class:`~tabby_async.fleet.RunOptions`.

        Raises:
            InvalidInputError: with ``state=None``, no chosen node declares a
                desired state; or a bad option or node name.
            ClientStateError: the fleet is closed.
        """
        return await apply_on_fleet(
            self._runner,
            state,
            dry_run=dry_run,
            on_plan=on_plan,
            on_progress=on_progress,
            options=options,
        )

    async def ensure(
        self,
        state: DesiredState | None = None,
        *,
        dry_run: bool = False,
        on_progress: FleetProgressCallback | None = None,
        on_plan: Callable[[FleetResult[StatePlan]], object] | None = None,
        **options: Unpack[RunOptions],
    ) -> FleetStateReport:
        """Deprecated spelling of :meth:`apply`; it raises what :meth:`apply` raises."""
        warnings.warn(
            "TabbyFleet.ensure is deprecated: use TabbyFleet.apply", DeprecationWarning, 2
        )
        return await self.apply(
            state, dry_run=dry_run, on_progress=on_progress, on_plan=on_plan, **options
        )

    @overload
    async def rollout(
        self,
        request: DesiredState,
        /,
        *,
        batch_size: int = 1,
        max_failures: int = 0,
        check: bool | StateCheck = True,
        verify: bool = True,
        nodes: Iterable[str] | None = None,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
        on_progress: FleetProgressCallback | None = None,
        on_result: ResultCallback | None = None,
        on_batch: BatchCallback | None = None,
    ) -> RolloutReport[DesiredState, StateResult]: ...

    @overload
    async def rollout(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        batch_size: int = 1,
        max_failures: int = 0,
        check: bool | NodeCheck = True,
        verify: bool = True,
        nodes: Iterable[str] | None = None,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
        on_progress: FleetProgressCallback | None = None,
        on_result: ResultCallback | None = None,
        on_batch: BatchCallback | None = None,
        **fields: Unpack[ModelLoadFields],
    ) -> RolloutReport[ModelLoadRequest, ModelResult]: ...

    async def rollout(
        self,
        request: ModelLoadRequest | DesiredState | None = None,
        /,
        *,
        batch_size: int = 1,
        max_failures: int = 0,
        check: bool | NodeCheck | StateCheck = True,
        verify: bool = True,
        nodes: Iterable[str] | None = None,
        timeout: TimeoutArg = USE_CLIENT_DEFAULT,
        on_progress: FleetProgressCallback | None = None,
        on_result: ResultCallback | None = None,
        on_batch: BatchCallback | None = None,
        **fields: Unpack[ModelLoadFields],
    ) -> RolloutReport[Any, Any]:
        """A rolling load: ``batch_size`` nodes at a time, each checked before the next batch.

        Each node of a batch gets the one-server ``ensure_loaded`` (so a node
        already right is left alone and a re-run resumes a halted rollout;
        ``verify`` has its meaning there). Once the whole batch has loaded,
        each of its nodes is checked: by default ``/health`` healthy and
        ``get()`` showing the requested model and context
        (:func:`~tabby_async.fleet.default_check`); ``check=`` takes your
        own coroutine ``(node, client, request)``, and ``check=False`` skips
        it. When the failures so far exceed ``max_failures`` the rollout
        halts; the report says what was done, what failed and which nodes
        were not touched. ``timeout`` bounds each node's load (default:
        ``load_timeout``); the checks get ``node_timeout``.
        ``on_progress(node, event)`` sees the load events, ``on_result`` each
        node's final result (after its check), ``on_batch(index, results)``
        each batch's.

        Given a :class:`~tabby_async.DesiredState` in place of a request (and
        no fields), each node gets ``client.apply(state)`` instead, with the
        same batches, checks and ``max_failures``; a node that does not
        converge fails with :class:`~tabby_async.StateMismatchError`. The
        default check (:func:`~tabby_async.fleet.default_state_check`) is
        ``/health`` healthy and the state's plan "none"; your own ``check``
        gets the state in place of the request. A state is always verified
        (``verify=False`` is refused).

        Raises:
            InvalidInputError: a bad request field, fields given with a
                state, ``verify=False`` with a state, a bad ``batch_size`` or
                ``max_failures``, or an unknown node name.
            ClientStateError: the fleet is closed.
        """
        target: ModelLoadRequest | DesiredState
        if isinstance(request, DesiredState):
            if fields:
                raise InvalidInputError(
                    next(iter(fields)), "give the fields in the DesiredState's model"
                )
            target = request
        else:
            target = build_request(ModelLoadRequest, request, fields)
            check_reachable(target)  # once, before any node is touched
        return await rollout_on_fleet(
            self._runner,
            target,
            batch_size=batch_size,
            max_failures=max_failures,
            check=check,
            verify=verify,
            nodes=nodes,
            timeout=timeout,
            on_progress=on_progress,
            on_result=on_result,
            on_batch=on_batch,
        )
