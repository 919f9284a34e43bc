"""A whole node's desired state on every node of a fleet (``TabbyFleet.apply``), and its report."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .._client import AsyncTabbyClient
from .._defaults import USE_CLIENT_DEFAULT
from .._state_plan import DesiredState, StateMismatchError, StatePlan, StateResult
from .._words import counted
from ..errors import InvalidInputError
from ._model_ensure import PlanReport, plan_then_act
from ._results import FleetResult
from ._runner import FleetProgressCallback, Runner, RunOptions, node_progress

__all__ = ["FleetStateReport", "apply_on_fleet", "state_label", "state_plan"]


def state_label(state: DesiredState) -> str:
    """A desired state in a few words: ``model m, template chatml``."""
    shown = [
        f"model {state.model.model_name}" if state.model is not None else "",
        f"template {state.template}" if state.template is not None else "",
        f"sampling preset {state.sampling_preset}" if state.sampling_preset is not None else "",
        f"embedding {state.embedding.embedding_model_name}" if state.embedding is not None else "",
    ]
    return ", ".join(s for s in shown if s) or "nothing"


async def state_plan(client: AsyncTabbyClient, state: DesiredState) -> StatePlan:
    """What ``client.apply(state)`` would do: its dry run's plan (reads only)."""
    return (await client.apply(state, dry_run=True)).plan


@dataclass(frozen=True)
class FleetStateReport(PlanReport[StatePlan, StateResult]):
    """The outcome of :meth:`TabbyFleet.apply`: every node's plan, then what was done.

    ``plans`` holds each node's :class:`~tabby_async.StatePlan` (or why
    planning failed); ``on_plan`` saw them before anything was written.
    ``results`` (None for a dry run) holds each node's
    :class:`~tabby_async.StateResult`: what was written and the fresh look
    after it. A node whose plan needed nothing was not touched again. A
    node that still differs after acting has its
    :class:`~tabby_async.StateMismatchError` as its error (the error's
    ``result`` says which parts); a node whose planning failed keeps that
    error. ``states`` is the state each node was brought to; ``unmanaged``
    lists the chosen nodes left out because they declare no desired state.
    """

    states: dict[str, DesiredState] = field(default_factory=dict)
    unmanaged: tuple[str, ...] = ()

    def plan_action(self, plan: StatePlan) -> str:
        """``change`` when some part of the node needs a write, else ``none``."""
        return "change" if plan.changes else "none"

    @property
    def changed(self) -> list[str]:
        """The nodes where something was written (and that converged)."""
        if self.results is None:
            return []
        return [r.node for r in self.results.succeeded if r.value is not None and r.value.changed]

    @property
    def mismatched(self) -> dict[str, StateMismatchError]:
        """The nodes that still differ after acting, with the parts that do."""
        found = self.results.errors if self.results is not None else {}
        return {n: e for n, e in found.items() if isinstance(e, StateMismatchError)}

    def summary(self) -> str:
        """One line: the plan for a dry run, else changed, unchanged and failed nodes."""
        unmanaged = f"; not managed: {', '.join(self.unmanaged)}" if self.unmanaged else ""
        if self.results is None:
            return super().summary() + unmanaged
        results = self.results
        counts = sorted(results.counts().items())
        failed = ", ".join(f"{n} {code}" for code, n in counts if code != "ok")
        unchanged = len(results.succeeded) - len(self.changed)
        return (
            f"apply: {counted(len(results), 'node')}: {len(self.changed)} changed, "
            f"{unchanged} unchanged, "
            f"{len(results.failed)} failed{f' ({failed})' if failed else ''} "
            f"in {results.elapsed:.2f} s{unmanaged}"
        )


def _targets(
    runner: Runner, state: DesiredState | None, nodes: Iterable[str] | None
) -> tuple[dict[str, DesiredState], tuple[str, ...]]:
    """The state of each chosen node, and the chosen nodes that declare none."""
    chosen = [name for name, _ in runner.pool.targets(nodes)]
    if state is not None:
        if not isinstance(state, DesiredState):
            raise InvalidInputError("state", "must be a DesiredState or None")
        return {name: state for name in chosen}, ()
    declared = runner.pool.declared()
    states = {name: declared[name] for name in chosen if name in declared}
    if not states:
        raise InvalidInputError(
            "state",
            "no chosen node declares a desired state: give one (fleet.apply(state)) "
            "or declare it in the nodes file ([desired], or desired in a node's table)",
        )
    return states, tuple(name for name in chosen if name not in declared)


async def apply_on_fleet(
    runner: Runner,
    state: DesiredState | None,
    *,
    dry_run: bool,
    on_plan: Callable[[FleetResult[StatePlan]], object] | None,
    on_progress: FleetProgressCallback | None,
    options: RunOptions,
) -> FleetStateReport:
    """Plan every node's state, then ``client.apply`` where a plan changes something."""
    states, unmanaged = _targets(runner, state, options.get("nodes"))
    timeout = options.get("timeout", USE_CLIENT_DEFAULT)
    plans, results = await plan_then_act(
        runner,
        lambda name, client: state_plan(client, states[name]),
        lambda name, client: client.apply(
            states[name], on_progress=node_progress(on_progress, name), timeout=timeout
        ),
        changes=lambda plan: plan.changes or bool(plan.refused),
        unchanged=lambda plan: StateResult(plan, after=plan),
        dry_run=dry_run,
        on_plan=on_plan,
        options={**options, "nodes": list(states)},
        operation="apply",
    )
    return FleetStateReport(plans, results, states, unmanaged)
