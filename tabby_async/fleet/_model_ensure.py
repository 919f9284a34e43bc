"""Desired state on a fleet: plan every node, then act only where needed, and the report.

The model (``fleet.models.ensure_loaded``) and the whole node's state
(``TabbyFleet.apply``) go the same way: :func:`plan_then_act` plans each
node, shows the plans, then runs the one-server ensure on the nodes whose
plan changes something; :class:`PlanReport` is what both report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .._defaults import USE_CLIENT_DEFAULT
from .._model_plan import ModelPlan, ModelResult, in_table_order, unchanged
from ..types import ModelLoadRequest
from ._fanout import NodeOp
from ._results import FleetResult, NodeResult
from ._runner import FleetProgressCallback, Runner, RunOptions, node_progress

__all__ = ["FleetModelReport", "PlanReport", "ensure_on_fleet", "plan_then_act"]


class _Checked(Protocol):
    """A plan or a result: it names what could not be compared."""

    @property
    def unchecked(self) -> tuple[str, ...]: ...


P = TypeVar("P", bound=_Checked)
R = TypeVar("R", bound=_Checked)


@dataclass(frozen=True)
class PlanReport(Generic[P, R]):
    """Every node's plan, then every node's result (None for a dry run).

    ``results`` holds each planned node's outcome: the one-server result
    where it acted, the "nothing to do" result where its plan needed
    nothing (the node was not touched again), and the planning error where
    planning failed.
    """

    plans: FleetResult[P]
    results: FleetResult[R] | None

    @property
    def unchecked(self) -> tuple[str, ...]:
        """What some node could not confirm (fields the server never reports, ...)."""
        found = [f for r in self.plans.succeeded if r.value is not None for f in r.value.unchecked]
        if self.results is not None:
            found += [f for r in self.results.succeeded if r.value for f in r.value.unchecked]
        return in_table_order(found)

    @property
    def final(self) -> FleetResult[P] | FleetResult[R]:
        """The results, or the plans of a dry run."""
        return self.results if self.results is not None else self.plans

    @property
    def ok(self) -> bool:
        """Every node was planned and (unless a dry run) brought to what was asked."""
        return self.final.ok

    def plan_action(self, plan: P) -> str:
        """The word that says what one node's plan needs (its action)."""
        raise NotImplementedError

    def summary(self) -> str:
        """One line: how many nodes' plans need each action for a dry run, else the results."""
        if self.results is None:
            actions: dict[str, int] = {}
            for r in self.plans.succeeded:
                assert r.value is not None
                action = self.plan_action(r.value)
                actions[action] = actions.get(action, 0) + 1
            shown = ", ".join(f"{n} {a}" for a, n in sorted(actions.items()))
            return f"plan (dry run): {shown or 'nothing'}; {len(self.plans.failed)} failed"
        return self.results.summary()


@dataclass(frozen=True)
class FleetModelReport(PlanReport[ModelPlan, ModelResult]):
    """The outcome of ``fleet.models.ensure_loaded``: the plan, then what was done.

    ``plans`` is every node's :class:`~tabby_async.desired.ModelPlan` (or why planning
    failed). ``results`` is every node's :class:`~tabby_async.desired.ModelResult`
    (nodes planned as "none" are not touched again; a node whose planning
    failed carries that error); it is None for a dry run. ``unchecked``
    names the fields the request sets that some node's card could not
    confirm.
    """

    def plan_action(self, plan: ModelPlan) -> str:
        """The plan's action: ``none``, ``load`` or ``reload``."""
        return plan.action


async def plan_then_act(
    runner: Runner,
    plan: NodeOp[P],
    act: NodeOp[R],
    *,
    changes: Callable[[P], bool],
    unchanged: Callable[[P], R],
    dry_run: bool,
    on_plan: Callable[[FleetResult[P]], object] | None,
    options: RunOptions,
    operation: str,
) -> tuple[FleetResult[P], FleetResult[R] | None]:
    """``plan`` on every chosen node, then ``act`` on those whose plan ``changes`` something.

    The plans are a quick read, bounded as a control call; their results
    are not the caller's final ones (no ``on_result``, no ``fail_fast``).
    ``act`` is bounded as a load. A node whose plan needs nothing gets
    ``unchanged(plan)``; a node whose planning failed keeps that error.
    """
    plan_options: RunOptions = {**options, "on_result": None, "fail_fast": False}
    plans = await runner.run(plan, **plan_options, operation="plan")
    if on_plan is not None:
        on_plan(plans)
    if dry_run:
        return plans, None
    to_change = [r.node for r in plans.succeeded if r.value is not None and changes(r.value)]
    act_options: RunOptions = {**options, "nodes": to_change}
    acted = await runner.run(act, **act_options, operation=operation, kind="stream")
    merged: list[NodeResult[R]] = []
    for planned in plans:
        if planned.node in acted:
            merged.append(acted[planned.node])
        elif planned.error is not None:
            merged.append(NodeResult(planned.node, None, planned.error, planned.elapsed))
        else:
            assert planned.value is not None
            merged.append(NodeResult(planned.node, unchanged(planned.value), None, planned.elapsed))
    return plans, FleetResult(merged, operation=operation, elapsed=plans.elapsed + acted.elapsed)


async def ensure_on_fleet(
    runner: Runner,
    request: ModelLoadRequest,
    *,
    dry_run: bool,
    verify: bool,
    on_plan: Callable[[FleetResult[ModelPlan]], object] | None,
    on_progress: FleetProgressCallback | None,
    options: RunOptions,
) -> FleetModelReport:
    """Plan on every chosen node, then ``ensure_loaded`` on those whose plan changes something."""
    timeout = options.get("timeout", USE_CLIENT_DEFAULT)
    plans, results = await plan_then_act(
        runner,
        lambda _n, c: c.models.plan_load(request),
        lambda name, c: c.models.ensure_loaded(
            request, on_progress=node_progress(on_progress, name), timeout=timeout, verify=verify
        ),
        # A plan that found what the server refused acts too: its ensure
        # raises that mismatch at once, without loading again.
        changes=lambda plan: plan.changes or bool(plan.refused),
        unchanged=unchanged,
        dry_run=dry_run,
        on_plan=on_plan,
        options=options,
        operation="ensure",
    )
    return FleetModelReport(plans, results)
