"""Desired state on a fleet: plan every node, then ensure where needed, and the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._defaults import USE_CLIENT_DEFAULT
from .._desired import EnsureResult, LoadPlan, in_table_order, unchanged
from ..types import ModelLoadRequest
from ._results import FleetResult, NodeResult
from ._runner import FleetProgressCallback, Runner, RunOptions, node_progress

__all__ = ["FleetEnsureReport", "ensure_on_fleet"]


@dataclass(frozen=True)
class FleetEnsureReport:
    """The outcome of ``fleet.models.ensure_loaded``: the plan, then what was done.

    ``plans`` is every node's plan (or why planning failed). ``results`` is
    every node's :class:`~tabby_async.EnsureResult` (nodes planned as "none"
    are not touched again; a node whose planning failed carries that error);
    it is None for a dry run.
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
    def final(self) -> FleetResult[LoadPlan] | FleetResult[EnsureResult]:
        """The results, or the plans of a dry run."""
        return self.results if self.results is not None else self.plans

    @property
    def ok(self) -> bool:
        """Every node was planned and (unless a dry run) brought to the request."""
        return self.final.ok

    def summary(self) -> str:
        """One line: the plan's actions for a dry run, else the results' counts."""
        if self.results is None:
            actions: dict[str, int] = {}
            for r in self.plans.succeeded:
                assert r.value is not None
                actions[r.value.action] = actions.get(r.value.action, 0) + 1
            shown = ", ".join(f"{n} {a}" for a, n in sorted(actions.items()))
            return f"plan (dry run): {shown or 'nothing'}; {len(self.plans.failed)} failed"
        return self.results.summary()


async def ensure_on_fleet(
    runner: Runner,
    request: ModelLoadRequest,
    *,
    dry_run: bool,
    verify: bool,
    on_plan: Callable[[FleetResult[LoadPlan]], object] | None,
    on_progress: FleetProgressCallback | None,
    options: RunOptions,
) -> FleetEnsureReport:
    """Plan on every chosen node, then ``ensure_loaded`` on those whose plan changes something."""
    timeout = options.get("timeout", USE_CLIENT_DEFAULT)
    # The plan is a quick read: its results are not the caller's final ones.
    plan_options: RunOptions = {**options, "on_result": None, "fail_fast": False}
    plans = await runner.run(
        lambda _n, c: c.models.plan_load(request), **plan_options, operation="plan"
    )
    if on_plan is not None:
        on_plan(plans)
    if dry_run:
        return FleetEnsureReport(plans, None)
    to_change = [r.node for r in plans.succeeded if r.value is not None and r.value.changes]
    act_options: RunOptions = {**options, "nodes": to_change}
    acted = await runner.run(
        lambda name, c: c.models.ensure_loaded(
            request, on_progress=node_progress(on_progress, name), timeout=timeout, verify=verify
        ),
        **act_options,
        operation="ensure",
        kind="load",
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
