"""A rolling load: batch by batch, each node checked before the next batch, and its report.

A rollout brings each node to a model (a :class:`~tabby_async.ModelLoadRequest`,
with the one-server ``ensure_loaded``) or to a whole node's state (a
:class:`~tabby_async.DesiredState`, with ``client.apply``); batches, checks
and ``max_failures`` work the same for both.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic

from .._checks import check_count
from .._client import AsyncTabbyClient
from .._defaults import TimeoutArg
from .._log import logger
from .._model_ensure import loaded_card
from .._model_plan import ModelResult, in_table_order, plan_for, unreported_fields
from .._otel import use_span
from .._state_plan import DesiredState, StateResult
from .._words import counted
from ..errors import InvalidInputError, TabbyError
from ..types import ModelLoadRequest
from ._errors import NodeSkippedError, VerificationError
from ._fanout import NodeOp, ResultCallback
from ._observe import RolloutTrace
from ._results import FleetResult, NodeResult
from ._runner import FleetProgressCallback, Runner, node_bound, node_progress
from ._state_apply import state_label, state_plan
from ._status import health_text

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    # Defaults keep a bare ``RolloutReport`` what it was before a rollout
    # could take a DesiredState: a model rollout's report.
    Q = TypeVar("Q", bound=ModelLoadRequest | DesiredState, default=ModelLoadRequest)
    R = TypeVar("R", bound=ModelResult | StateResult, default=ModelResult)
else:
    from typing import TypeVar

    Q = TypeVar("Q")
    R = TypeVar("R")

__all__ = [
    "BatchCallback",
    "NodeCheck",
    "RolloutReport",
    "StateCheck",
    "default_check",
    "default_state_check",
    "rollout_on_fleet",
]

#: A rollout's check of one node after its batch has loaded: return to pass,
#: raise a :class:`~tabby_async.TabbyError` (e.g. :class:`VerificationError`)
#: to fail the node.
NodeCheck = Callable[[str, AsyncTabbyClient, ModelLoadRequest], Awaitable[None]]
#: The same for a rollout of a :class:`~tabby_async.DesiredState`: it gets the state.
StateCheck = Callable[[str, AsyncTabbyClient, DesiredState], Awaitable[None]]
#: Called with each batch's index (from 0) and its nodes' final results.
BatchCallback = Callable[[int, FleetResult[Any]], object]


async def _check_health(name: str, client: AsyncTabbyClient, since: datetime | None) -> None:
    """Fail the node when ``/health`` lists an issue from ``since`` on (None: any issue).

    TabbyAPI says "unhealthy" from its first failed generation until it is
    restarted, while it goes on serving: issues from before the node's step
    of the rollout (by their UTC time, against this machine's clock) only
    make it degraded, which is logged, not a failure.
    """
    health = await client.health()
    if health.healthy:
        return
    times = [i.at for i in health.issues]
    if since is not None and all(t is not None and t < since for t in times):
        logger.warning(
            "%s: %s (from before this rollout; a restart clears it)", name, health_text(health)
        )
        return
    raise VerificationError(f"{name}: /health says {health_text(health)}")


async def default_check(name: str, client: AsyncTabbyClient, request: ModelLoadRequest) -> None:
    """The rollout's check of a node: ``/health`` is healthy and ``get()`` shows the request.

    Called by a rollout, an "unhealthy" ``/health`` whose issues all date
    from before the node's step only logs a warning (the node is degraded,
    still serving); called directly, any issue fails the check.

    "Shows the request" is the same comparison as ensure (model name,
    context and every other reported field the request sets). Called
    directly, a nested name whose last segment is the card id fails: the card
    cannot prove the folder (in a rollout, its ensure just did).
    """
    await _model_check(name, client, request, None)


async def _model_check(
    name: str, client: AsyncTabbyClient, request: ModelLoadRequest, since: datetime | None
) -> None:
    await _check_health(name, client, since)
    card = await loaded_card(client.models)
    # In a rollout (``since`` set) this runs right after the rollout's own
    # ensure of the node, which proved the folder (its load, or the server's
    # "already loaded" answer), so a nested name's card id counts as ours.
    # Called directly, nothing proved it: a name the card cannot prove fails.
    plan = plan_for(request, card, proven=since is not None)
    if plan.action != "none":
        raise VerificationError(f"{name}: after loading, {plan.summary()}")


async def default_state_check(name: str, client: AsyncTabbyClient, state: DesiredState) -> None:
    """The check of a node in a rollout of a state: healthy, and the state's plan is "none".

    Health as for :func:`default_check`.

    The plan is the one ``client.apply(state, dry_run=True)`` makes from a
    fresh look: every managed part as wanted.
    """
    await _state_check(name, client, state, None)


async def _state_check(
    name: str, client: AsyncTabbyClient, state: DesiredState, since: datetime | None
) -> None:
    await _check_health(name, client, since)
    plan = await state_plan(client, state)
    # In a rollout, a part only the server can prove (a nested name) was
    # proved by the rollout's own ensure just before: only a part shown to
    # differ fails. Called directly, a part it cannot tell fails too.
    wrong = [p for p in plan.parts if p.met is False or (p.met is None and since is None)]
    if wrong:
        differs = "; ".join(p.summary() for p in wrong)
        raise VerificationError(f"{name}: after applying, {differs}")


@dataclass(frozen=True)
class RolloutReport(Generic[Q, R]):
    """The outcome of :meth:`TabbyFleet.rollout`.

    ``request`` is what was rolled out: a model's load request or a
    :class:`~tabby_async.DesiredState`. ``results`` has one entry per node
    in rollout order: the node's :class:`~tabby_async.desired.ModelResult` (for a
    state, its :class:`~tabby_async.StateResult`), or its error (the load
    failed, a state did not converge, the check raised, e.g. a
    :class:`VerificationError`, or
    :class:`~tabby_async.fleet.NodeSkippedError` for nodes not touched
    because the rollout halted). ``batches`` lists the node names of each
    batch that ran; ``halted`` says whether failures passed ``max_failures``
    before every batch ran.
    """

    request: Q
    results: FleetResult[R]
    batches: tuple[tuple[str, ...], ...]
    halted: bool
    max_failures: int

    @property
    def unchecked(self) -> tuple[str, ...]:
        """What the request sets that no node can confirm (fields never reported, ...)."""
        model = self.request if isinstance(self.request, ModelLoadRequest) else self.request.model
        found = list(unreported_fields(model)) if model is not None else []
        found += [f for r in self.results.succeeded if r.value for f in r.value.unchecked]
        return in_table_order(found)

    @property
    def ok(self) -> bool:
        """Every node was loaded and passed its check."""
        return self.results.ok

    @property
    def done(self) -> list[str]:
        """Nodes brought to the request (or state) that passed their check."""
        return [r.node for r in self.results.succeeded]

    @property
    def failed(self) -> dict[str, TabbyError]:
        """Nodes whose load or check failed, with why."""
        return {
            r.node: r.error for r in self.results if r.error is not None and r.status != "skipped"
        }

    @property
    def not_touched(self) -> list[str]:
        """Nodes the rollout never got to because it halted."""
        return [r.node for r in self.results if r.status == "skipped"]

    def summary(self) -> str:
        """One line: complete or halted, and how many nodes were done, failed, not touched."""
        state = "halted" if self.halted else "complete"
        what = self.request
        label = what.model_name if isinstance(what, ModelLoadRequest) else state_label(what)
        return (
            f"rollout of {label} {state} after {counted(len(self.batches), 'batch', 'batches')}: "
            f"{len(self.done)} done, {len(self.failed)} failed, "
            f"{len(self.not_touched)} not touched (max_failures={self.max_failures})"
        )


@dataclass(frozen=True, slots=True)
class _Batch:
    """What each batch of one rollout runs."""

    runner: Runner
    load: NodeOp[Any]
    check: NodeOp[None] | None
    timeout: TimeoutArg
    size: int

    async def run(self, nodes: list[str], number: int) -> FleetResult[Any]:
        """Load the batch, then check each node that loaded; a failed check fails the node."""
        ran = await self.runner.run(
            self.load,
            nodes=nodes,
            timeout=self.timeout,
            max_concurrency=self.size,
            operation=f"rollout batch {number}",
            kind="stream",
        )
        if self.check is None or not ran.succeeded:
            return ran
        # The whole batch has loaded: check each node now, before the next batch.
        checked = await self.runner.run(
            self.check,
            nodes=[r.node for r in ran.succeeded],
            max_concurrency=self.size,
            operation=f"rollout check {number}",
        )
        final = []
        for r in ran:
            outcome = checked.get(r.node)
            if outcome is not None and outcome.error is not None:
                r = NodeResult(r.node, None, outcome.error, r.elapsed + outcome.elapsed)
            final.append(r)
        return FleetResult(final, operation=ran.operation, elapsed=ran.elapsed)


#: A rollout's check of one node, for either kind of request.
_AnyCheck = Callable[[str, AsyncTabbyClient, Any], Awaitable[None]]
#: A default check, given when the node's step began.
_SinceCheck = Callable[[str, AsyncTabbyClient, Any, datetime | None], Awaitable[None]]


def _node_ops(
    request: ModelLoadRequest | DesiredState,
    check: bool | NodeCheck | StateCheck,
    verify: bool,
    on_progress: FleetProgressCallback | None,
    timeout: TimeoutArg,
) -> tuple[NodeOp[Any], NodeOp[None] | None]:
    """What a rollout runs on each node: its ensure, and its check (None: no check)."""
    ensure: NodeOp[Any]
    default: _SinceCheck
    # When each node's step began: the default check's line between old and new issues.
    starts: dict[str, datetime] = {}
    if isinstance(request, DesiredState):
        if not verify:
            raise InvalidInputError(
                "verify", "a DesiredState is always verified: ensure reads the node again"
            )
        state = request
        default = _state_check

        def ensure(name: str, client: AsyncTabbyClient) -> Awaitable[StateResult]:
            starts[name] = datetime.now(UTC)
            progress = node_progress(on_progress, name)
            return client.apply(state, on_progress=progress, timeout=timeout)

    else:
        model = request
        default = _model_check

        def ensure(name: str, client: AsyncTabbyClient) -> Awaitable[ModelResult]:
            starts[name] = datetime.now(UTC)
            progress = node_progress(on_progress, name)
            return client.models.ensure_loaded(
                model, on_progress=progress, timeout=timeout, verify=verify
            )

    if check is False:
        return ensure, None
    custom: _AnyCheck | None = None if check is True else check
    wanted: Any = request  # the check that goes with the request's kind was picked above

    async def check_one(name: str, client: AsyncTabbyClient) -> None:
        if custom is not None:
            await custom(name, client, wanted)
        else:
            await default(name, client, wanted, starts.get(name))

    return ensure, check_one


def _skipped(order: Iterable[str], failures: int, max_failures: int) -> list[NodeResult[Any]]:
    """A NodeSkippedError result for each node the halted rollout never reached."""
    return [
        NodeResult(
            name,
            None,
            NodeSkippedError(
                f"{name}: not touched: the rollout halted after {counted(failures, 'failure')} "
                f"(max_failures={max_failures})"
            ),
            0.0,
        )
        for name in order
    ]


async def rollout_on_fleet(
    runner: Runner,
    request: ModelLoadRequest | DesiredState,
    *,
    batch_size: int,
    max_failures: int,
    check: bool | NodeCheck | StateCheck,
    verify: bool,
    nodes: Iterable[str] | None,
    timeout: TimeoutArg,
    on_progress: FleetProgressCallback | None,
    on_result: ResultCallback | None,
    on_batch: BatchCallback | None,
) -> RolloutReport[Any, Any]:
    """The rollout of :meth:`TabbyFleet.rollout` (its arguments checked before any call)."""
    size = check_count("batch_size", batch_size)
    check_count("max_failures", max_failures, minimum=0)
    node_bound(timeout, None)  # a bad timeout is refused before the first batch
    order = [name for name, _ in runner.pool.targets(nodes)]
    ensure, check_one = _node_ops(request, check, verify, on_progress, timeout)
    batch = _Batch(runner, ensure, check_one, timeout, size)
    if isinstance(request, DesiredState):
        target, model = state_label(request), request.model
    else:
        target, model = f"model {request.model_name}", request
    name = model.model_name if model is not None else None
    trace = RolloutTrace.start(target, name, len(order), size, max_failures)
    if trace is None:
        return await _roll(request, order, batch, max_failures, on_result, on_batch, None)
    try:
        with use_span(trace.span):
            report = await _roll(request, order, batch, max_failures, on_result, on_batch, trace)
    except BaseException as exc:
        trace.fail(exc)
        raise
    trace.end(
        len(report.batches),
        len(report.done),
        len(report.failed),
        len(report.not_touched),
        report.halted,
    )
    return report


async def _roll(
    request: ModelLoadRequest | DesiredState,
    order: list[str],
    batch: _Batch,
    max_failures: int,
    on_result: ResultCallback | None,
    on_batch: BatchCallback | None,
    trace: RolloutTrace | None,
) -> RolloutReport[Any, Any]:
    """Run the batches in ``order`` until done or halted (see :func:`rollout_on_fleet`)."""
    started = time.perf_counter()
    done: list[NodeResult[Any]] = []
    batches: list[tuple[str, ...]] = []
    failures = 0
    for first in range(0, len(order), batch.size):
        names = order[first : first + batch.size]
        batches.append(tuple(names))
        ran = await batch.run(names, len(batches))
        done.extend(ran)
        if on_result is not None:
            for r in ran:
                on_result(r)
        failures += len(ran.failed)
        if trace is not None:
            trace.batch(len(batches) - 1, list(ran))
        if on_batch is not None:
            on_batch(len(batches) - 1, ran)
        if failures > max_failures:
            break
    rest = _skipped(order[len(done) :], failures, max_failures)
    if on_result is not None:
        for r in rest:
            on_result(r)
    elapsed = time.perf_counter() - started
    results = FleetResult([*done, *rest], operation="rollout", elapsed=elapsed)
    return RolloutReport(request, results, tuple(batches), bool(rest), max_failures)
