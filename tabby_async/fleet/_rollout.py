"""Reports of the fleet-wide desired-state operations: ensure and rollout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .._client import AsyncTabbyClient
from .._desired import EnsureResult, LoadPlan, in_table_order, plan_for, unreported_fields
from .._ensure import loaded_card
from ..errors import TabbyError, VerificationError
from ..types import ModelLoadRequest
from ._results import FleetResult, format_table

__all__ = [
    "FleetEnsureReport",
    "RolloutReport",
    "Verifier",
    "default_verify",
]

#: A rollout check of one node after its load: return to pass, raise a
#: :class:`~tabby_async.TabbyError` (e.g. :class:`VerificationError`) to fail.
Verifier = Callable[[str, AsyncTabbyClient, ModelLoadRequest], Awaitable[None]]


async def default_verify(name: str, client: AsyncTabbyClient, request: ModelLoadRequest) -> None:
    """The rollout's check: ``/health`` is healthy and ``get()`` shows the request.

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
class FleetEnsureReport:
    """The outcome of :meth:`TabbyFleet.ensure_loaded`: the plan, then what was done.

    ``plans`` is every node's plan (or why planning failed). ``results`` is
    every node's :class:`~tabby_async.fleet.EnsureResult` (nodes planned as
    "none" are not touched again; a node whose planning failed carries that
    error); it is None for a dry run.
    """

    plans: FleetResult[LoadPlan]
    results: FleetResult[EnsureResult] | None

    @property
    def unchecked(self) -> tuple[str, ...]:
        """The fields the request sets that some node's card could not confirm."""
        found = [f for r in self.plans.succeeded if r.value is not None for f in r.value.unchecked]
        if self.results is not None:
            found += [f for r in self.results.succeeded if r.value for f in r.value.unchecked]
        return in_table_order(found)

    @property
    def ok(self) -> bool:
        final = self.results if self.results is not None else self.plans
        return final.ok

    def format_table(self) -> str:
        final = self.results if self.results is not None else self.plans
        return final.format_table()

    def summary(self) -> str:
        if self.results is None:
            actions: dict[str, int] = {}
            for r in self.plans.succeeded:
                assert r.value is not None
                actions[r.value.action] = actions.get(r.value.action, 0) + 1
            shown = ", ".join(f"{n} {a}" for a, n in sorted(actions.items()))
            return f"plan (dry run): {shown or 'nothing'}; {len(self.plans.failed)} failed"
        return self.results.summary()


@dataclass(frozen=True)
class RolloutReport:
    """The outcome of :meth:`TabbyFleet.rollout`.

    ``results`` has one entry per node in rollout order: the node's
    :class:`~tabby_async.fleet.EnsureResult`, or its error (the load failed,
    a :class:`VerificationError`, or :class:`~tabby_async.fleet.NodeSkippedError`
    for nodes not touched because the rollout halted). ``batches`` lists the
    node names of each batch that ran; ``halted`` says whether failures
    passed ``max_failures`` before every batch ran.
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
        """Every node was loaded and verified."""
        return self.results.ok

    @property
    def done(self) -> list[str]:
        """Nodes that run the requested model, verified."""
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
        state = "halted" if self.halted else "complete"
        return (
            f"rollout of {self.request.model_name} {state} after {len(self.batches)} batches: "
            f"{len(self.done)} done, {len(self.failed)} failed, "
            f"{len(self.not_touched)} not touched (max_failures={self.max_failures})"
        )

    def format_table(self) -> str:
        return format_table(list(self.results))
