"""A rolling load: batch by batch, each node checked before the next batch, and its report."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .._checks import check_count
from .._client import AsyncTabbyClient
from .._defaults import TimeoutArg
from .._desired import EnsureResult, in_table_order, plan_for, unreported_fields
from .._ensure import loaded_card
from ..errors import NodeSkippedError, TabbyError, VerificationError
from ..types import ModelLoadRequest
from ._fanout import NodeOp, ResultCallback
from ._results import FleetResult, NodeResult
from ._runner import FleetProgressCallback, Runner, node_bound, node_progress

__all__ = [
    "BatchCallback",
    "NodeCheck",
    "RolloutReport",
    "default_check",
    "rollout_on_fleet",
]

#: A rollout's check of one node after its batch has loaded: return to pass,
#: raise a :class:`~tabby_async.TabbyError` (e.g. :class:`VerificationError`)
#: to fail the node.
NodeCheck = Callable[[str, AsyncTabbyClient, ModelLoadRequest], Awaitable[None]]
#: Called with each batch's index (from 0) and its nodes' final results.
BatchCallback = Callable[[int, FleetResult[EnsureResult]], object]


async def default_check(name: str, client: AsyncTabbyClient, request: ModelLoadRequest) -> None:
    """The rollout's check of a node: ``/health`` is healthy and ``get()`` shows the request.

    "Shows the request" is the same comparison as ensure (model name,
    context and every other reported field the request sets).
    """
    health = await client.health()
    if not health.healthy:
        issues = "; ".join(i.description for i in health.issues) or "no reason given"
        raise VerificationError(f"{name}: /health says {health.status}: {issues}")
    card = await loaded_card(client.models)
    plan = plan_for(request, card)
    if plan.action != "none":
        raise VerificationError(f"{name}: after loading, {plan.summary()}")


@dataclass(frozen=True)
class RolloutReport:
    """The outcome of :meth:`TabbyFleet.rollout`.

    ``results`` has one entry per node in rollout order: the node's
    :class:`~tabby_async.EnsureResult`, or its error (the load failed, the
    check raised, e.g. a :class:`VerificationError`, or
    :class:`~tabby_async.fleet.NodeSkippedError` for nodes not touched
    because the rollout halted). ``batches`` lists the node names of each
    batch that ran; ``halted`` says whether failures passed ``max_failures``
    before every batch ran.
    """

    request: ModelLoadRequest
    results: FleetResult[EnsureResult]
    batches: tuple[tuple[str, ...], ...]
    halted: bool
    max_failures: int

    @property
    def unchecked(self) -> tuple[str, ...]:
        """The fields the request sets that no node's card can confirm."""
        found = list(unreported_fields(self.request))
        found += [f for r in self.results.succeeded if r.value for f in r.value.unchecked]
        return in_table_order(found)

    @property
    def ok(self) -> bool:
        """Every node was loaded and passed its check."""
        return self.results.ok

    @property
    def done(self) -> list[str]:
        """Nodes that run the requested model and passed their check."""
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
        return (
            f"rollout of {self.request.model_name} {state} after {len(self.batches)} batches: "
            f"{len(self.done)} done, {len(self.failed)} failed, "
            f"{len(self.not_touched)} not touched (max_failures={self.max_failures})"
        )


@dataclass(frozen=True, slots=True)
class _Batch:
    """What each batch of one rollout runs."""

    runner: Runner
    load: NodeOp[EnsureResult]
    check: NodeOp[None] | None
    timeout: TimeoutArg
    size: int

    async def run(self, nodes: list[str], number: int) -> FleetResult[EnsureResult]:
        """Load the batch, then check each node that loaded; a failed check fails the node."""
        ran = await self.runner.run(
            self.load,
            nodes=nodes,
            timeout=self.timeout,
            max_concurrency=self.size,
            operation=f"rollout batch {number}",
            kind="load",
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


def _check_op(check: bool | NodeCheck, request: ModelLoadRequest) -> NodeOp[None] | None:
    """The per-node check as a fleet operation (None: no check)."""
    if check is False:
        return None
    checker = default_check if check is True else check

    async def check_one(name: str, client: AsyncTabbyClient) -> None:
        await checker(name, client, request)

    return check_one


def _skipped(
    order: Iterable[str], failures: int, max_failures: int
) -> list[NodeResult[EnsureResult]]:
    """A NodeSkippedError result for each node the halted rollout never reached."""
    return [
        NodeResult(
            name,
            None,
            NodeSkippedError(
                f"{name}: not touched: the rollout halted after {failures} failures "
                f"(max_failures={max_failures})"
            ),
            0.0,
        )
        for name in order
    ]


async def rollout_on_fleet(
    runner: Runner,
    request: ModelLoadRequest,
    *,
    batch_size: int,
    max_failures: int,
    check: bool | NodeCheck,
    verify: bool,
    nodes: Iterable[str] | None,
    timeout: TimeoutArg,
    on_progress: FleetProgressCallback | None,
    on_result: ResultCallback | None,
    on_batch: BatchCallback | None,
) -> RolloutReport:
    """The rollout of :meth:`TabbyFleet.rollout` (its arguments checked before any call)."""
    size = check_count("batch_size", batch_size)
    check_count("max_failures", max_failures, minimum=0)
    node_bound(timeout, None)  # a bad timeout is refused before the first batch
    order = [name for name, _ in runner.pool.targets(nodes)]

    def load_one(name: str, client: AsyncTabbyClient) -> Awaitable[EnsureResult]:
        return client.models.ensure_loaded(
            request, on_progress=node_progress(on_progress, name), timeout=timeout, verify=verify
        )

    batch = _Batch(runner, load_one, _check_op(check, request), timeout, size)
    started = time.perf_counter()
    done: list[NodeResult[EnsureResult]] = []
    batches: list[tuple[str, ...]] = []
    failures = 0
    for first in range(0, len(order), size):
        names = order[first : first + size]
        batches.append(tuple(names))
        ran = await batch.run(names, len(batches))
        done.extend(ran)
        if on_result is not None:
            for r in ran:
                on_result(r)
        failures += len(ran.failed)
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
