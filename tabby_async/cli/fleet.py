"""``tabby-async fleet``: status, load, ensure, rollout and apply on every node of a nodes file.

::

    tabby-async fleet status  --nodes nodes.toml
    tabby-async fleet load    --nodes nodes.toml NAME [--max-seq-len N ...]
    tabby-async fleet ensure  --nodes nodes.toml NAME [--max-seq-len N ...] [--dry-run]
    tabby-async fleet rollout --nodes nodes.toml NAME [--batch-size 4 --max-failures 1]
    tabby-async fleet apply   --nodes nodes.toml [--dry-run]
    tabby-async fleet exporter --nodes nodes.toml [--host 127.0.0.1 --port 10157]

The nodes file is described in :func:`tabby_async.fleet.read_nodes_toml`
(keys come from the environment variables it names). ``apply`` brings each
node to the desired state the file declares for it (its model, prompt
template, sampler preset and embedding model), in the manner of ``kubectl
apply``: it prints the plan per node (one line per part that changes), then
writes only what differs. While a command runs it shows a live per-node
view on a terminal when rich is installed, and plain lines otherwise (one
per node as it completes); at the end it prints a table of every node.
``--json`` prints one JSON document instead. The exit code is 0 only when
every node succeeded (for ``status``: reachable, healthy, and every probe
answered; for ``apply``: every managed node planned and, unless a dry run,
brought to its state); 1 when any node failed or did not converge; 2 for a
usage error (such as a nodes file that declares no desired state).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import StatePlan
from .. import errors as E
from ..desired import ModelPlan
from ..fleet import (
    FleetModelReport,
    FleetOptions,
    FleetResult,
    FleetStateReport,
    NodeResult,
    NodeStatus,
    RolloutReport,
    TabbyFleet,
)
from ..types import ModelLoadRequest
from ._args import non_negative_int, positive_int
from ._commands import group, leaf
from ._exporter import add_exporter
from ._fleet_args import ENV_NODES, add_load_flags, add_load_timeout, fleet_options, nodes_file
from ._fleet_output import (
    RolloutTracker,
    fleet_table,
    make_view,
    print_table,
    results_json,
    state_plan_text,
)
from ._format import NO_VISION_WARNING, cli_words, counted, unchecked_note, vision_refused
from ._load_options import build_load_request
from .common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CliError, print_json

__all__ = ["ENV_NODES", "main", "register"]

#: What Ctrl-C prints for the load commands (closing a stream does not stop a load).
INTERRUPT_NOTE = (
    "stopped following the loads; nodes that had started one may still finish it "
    "(check with `tabby-async fleet status`)"
)


def _exit_code(failed: bool) -> int:
    return EXIT_ERROR if failed else EXIT_OK


# --- commands ---------------------------------------------------------------------


def _fleet_from_args(args: argparse.Namespace) -> TabbyFleet:
    path = nodes_file(args)
    options: FleetOptions = {}
    if args.concurrency is not None:
        options["max_concurrency"] = args.concurrency
    if args.node_timeout is not None:
        options["node_timeout"] = args.node_timeout
    if getattr(args, "load_timeout", None) is not None:
        options["load_timeout"] = args.load_timeout
    return TabbyFleet.from_toml(path, **options)


def _node_count(args: argparse.Namespace, fleet: TabbyFleet) -> tuple[list[str] | None, int]:
    """The nodes ``--only`` names (None: all), and how many nodes that is."""
    nodes = args.only or None  # an empty --only means every node, as no --only does
    return nodes, len(nodes) if nodes is not None else len(fleet.nodes)


async def _status(args: argparse.Namespace) -> int:
    async with _fleet_from_args(args) as fleet:
        nodes, total = _node_count(args, fleet)
        with make_view(args, total, "status", per_node=False) as view:
            result = await fleet.status(nodes=nodes, on_result=view.done)
    failed = any(not r.ok or not isinstance(r.value, NodeStatus) or not r.value.ok for r in result)
    if args.json:
        print_json({"operation": "status", "nodes": results_json(result)})
    else:
        print_table(result)
        healthy = sum(1 for r in result if isinstance(r.value, NodeStatus) and r.value.ok)
        print(
            f"{counted(len(result), 'node')}: {healthy} ok, {len(result.failed)} unreachable, "
            f"{len(result) - healthy - len(result.failed)} with problems "
            f"({result.elapsed:.2f} s)"
        )
    return _exit_code(failed)


async def _load(args: argparse.Namespace) -> int:
    request = build_load_request(args)
    async with _fleet_from_args(args) as fleet:
        nodes, total = _node_count(args, fleet)
        with make_view(args, total, f"load {request.model_name}", per_node=True) as view:
            result = await fleet.models.load(
                request,
                nodes=nodes,
                fail_fast=args.fail_fast,
                on_progress=view.event,
                on_result=view.done,
            )
        if request.vision and result.succeeded:
            await _warn_without_vision(
                fleet, request.model_name, [r.node for r in result.succeeded]
            )
    if args.json:
        print_json({"operation": "load", "nodes": results_json(result)})
    else:
        print_table(result)
        print(cli_words(result.summary()))
    return _exit_code(not result.ok)


async def _warn_without_vision(fleet: TabbyFleet, name: str, loaded: list[str]) -> None:
    """A warning line per node whose card says ``use_vision: false`` after a ``--vision`` load."""
    cards = await fleet.models.get(nodes=loaded)
    for r in cards:
        if vision_refused(r.value):
            where = f"{r.node}: "
            print(NO_VISION_WARNING.format(where=where, name=name), file=sys.stderr, flush=True)


def _plan_text(plans: FleetResult[ModelPlan]) -> str:
    counts: dict[str, int] = {}
    for r in plans:
        key = r.value.action if r.value is not None else r.status
        counts[key] = counts.get(key, 0) + 1
    shown = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    text = f"plan: {shown}\n{fleet_table(plans)}"
    note = unchecked_note(f for r in plans if r.value is not None for f in r.value.unchecked)
    return f"{text}\n{note}" if note else text


#: Starts a plan-then-act operation on a fleet with the options the command gives.
StartPlanned = Callable[
    [TabbyFleet, dict[str, Any]], Awaitable[FleetModelReport | FleetStateReport]
]


async def _plan_then_act(
    args: argparse.Namespace,
    operation: str,
    title: str,
    plan_text: Callable[[TabbyFleet, FleetResult[Any]], str],
    start: StartPlanned,
) -> int:
    """``fleet ensure`` and ``fleet apply``: show the plan, then the writes, then the results."""
    async with _fleet_from_args(args) as fleet:
        nodes, total = _node_count(args, fleet)
        with make_view(args, total, title, per_node=True) as view:

            def on_plan(plans: FleetResult[Any]) -> None:
                view.note(plan_text(fleet, plans))
                view.set_total(sum(1 for r in plans if r.value is not None and r.value.changes))

            report = await start(
                fleet,
                {
                    "nodes": nodes,
                    "dry_run": args.dry_run,
                    "fail_fast": args.fail_fast,
                    "on_plan": on_plan,
                    "on_progress": view.event,
                    "on_result": view.done,
                },
            )
    if args.json:
        document: dict[str, Any] = {
            "operation": operation,
            "dry_run": args.dry_run,
            "unchecked": list(report.unchecked),
        }
        if isinstance(report, FleetStateReport):
            document["not_managed"] = list(report.unmanaged)
        document["plans"] = results_json(report.plans)
        document["results"] = None if report.results is None else results_json(report.results)
        print_json(document)
    else:
        if report.results is not None:
            print_table(report.results)
        print(cli_words(report.summary()))
    return _exit_code(not report.ok)


async def _ensure(args: argparse.Namespace) -> int:
    request = build_load_request(args)
    return await _plan_then_act(
        args,
        "ensure",
        f"ensure {request.model_name}",
        lambda _fleet, plans: _plan_text(plans),
        lambda fleet, options: fleet.models.ensure_loaded(request, **options),
    )


async def _apply(args: argparse.Namespace) -> int:
    def plan_text(fleet: TabbyFleet, plans: FleetResult[StatePlan]) -> str:
        chosen = args.only or fleet.nodes
        return state_plan_text(plans, [n for n in chosen if n not in fleet.desired])

    try:
        return await _plan_then_act(
            args, "apply", "apply", plan_text, lambda fleet, options: fleet.apply(**options)
        )
    except E.InvalidInputError as exc:
        if exc.field != "state":
            raise
        # The SDK's message names its own API (fleet.apply(state)); say the CLI's way.
        raise CliError(
            "no chosen node declares a desired state: declare it in the nodes file "
            "([desired], or desired in a node's table)",
            EXIT_USAGE,
        ) from None


async def _roll_out(
    args: argparse.Namespace,
    fleet: TabbyFleet,
    request: ModelLoadRequest,
    nodes: list[str] | None,
    total: int,
    tracker: RolloutTracker,
) -> RolloutReport:
    """The rollout itself, with its live view; ``tracker`` sees every node's result."""
    started = time.monotonic()
    with make_view(args, total, f"rollout {request.model_name}", per_node=True) as view:

        def on_batch(index: int, batch: FleetResult[Any]) -> None:
            view.note(
                f"batch {index + 1}: {len(batch.succeeded)} ok, {len(batch.failed)} failed "
                f"({time.monotonic() - started:.1f} s)"
            )

        def on_result(result: NodeResult[Any]) -> None:
            tracker.done(result)
            view.done(result)

        return await fleet.rollout(
            request,
            nodes=nodes,
            batch_size=args.batch_size,
            max_failures=args.max_failures,
            check=not args.no_check,
            on_progress=view.event,
            on_result=on_result,
            on_batch=on_batch,
        )


async def _rollout(args: argparse.Namespace) -> int:
    request = build_load_request(args)
    async with _fleet_from_args(args) as fleet:
        nodes, total = _node_count(args, fleet)
        tracker = RolloutTracker(nodes or fleet.nodes, args.batch_size)
        try:
            report = await _roll_out(args, fleet, request, nodes, total, tracker)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Ctrl-C: say where the rollout stood (the view is stopped by now).
            print(tracker.text(), file=sys.stderr, flush=True)
            args.interrupt_details = tracker.groups()  # into the --json error document
            raise
    if args.json:
        print_json(
            {
                "operation": "rollout",
                "halted": report.halted,
                "unchecked": list(report.unchecked),
                "done": report.done,
                "failed": sorted(report.failed),
                "not_touched": report.not_touched,
                "nodes": results_json(report.results),
            }
        )
    else:
        print_table(report.results)
        note = unchecked_note(report.unchecked)
        if note:
            print(note)
        print(cli_words(report.summary()))
    return _exit_code(not report.ok)


# --- parser -----------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fleet status|load|ensure|rollout|apply`` to the top-level parser."""
    sub = group(
        subparsers,
        "fleet",
        "Drive every server listed in a nodes file (TOML) at once.",
        "status, load, ensure, rollout and apply on many servers (a nodes file)",
    )

    leaf(
        sub,
        "status",
        _status,
        "a snapshot of every node: health, key permission, loaded model",
        "Ask every node, concurrently, for its health, what its key may do, "
        "its loaded model and context, and its embedding model. Exit 1 if any node is "
        "unreachable, unhealthy or refused a probe.",
        options=fleet_options(),
    )

    load = leaf(
        sub,
        "load",
        _load,
        "load a model on every node (the server ignores new parameters for a model "
        "it already runs: see ensure)",
        options=fleet_options(),
        interrupt_note=INTERRUPT_NOTE,
    )
    add_load_flags(load)
    load.add_argument("--fail-fast", action="store_true", help="stop at the first failure")

    ensure = leaf(
        sub,
        "ensure",
        _ensure,
        "make every node run the model with these parameters (plan, then act)",
        "Compare each node's loaded model with the request, print the plan, "
        "then load or unload-and-reload only where needed.",
        options=fleet_options(),
        interrupt_note=INTERRUPT_NOTE,
    )
    add_load_flags(ensure)
    ensure.add_argument("--dry-run", action="store_true", help="print the plan only")
    ensure.add_argument("--fail-fast", action="store_true", help="stop at the first failure")

    rollout = leaf(
        sub,
        "rollout",
        _rollout,
        "a rolling ensure, batch by batch, each batch verified before the next",
        options=fleet_options(),
        interrupt_note=INTERRUPT_NOTE,
    )
    add_load_flags(rollout)
    rollout.add_argument(
        "--batch-size", type=positive_int, default=1, metavar="N", help="nodes per batch"
    )
    rollout.add_argument(
        "--max-failures",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="halt when more than N nodes have failed (default 0)",
    )
    rollout.add_argument(
        "--no-check",
        action="store_true",
        help="skip the check of each node after its batch (health, and the model and "
        "context loaded)",
    )

    apply = leaf(
        sub,
        "apply",
        _apply,
        "bring every node to the desired state the nodes file declares (plan, then act)",
        "Plan each node's declared desired state (model, prompt template, sampler "
        "preset, embedding model: [desired] in the nodes file), print the plan, then write "
        "only the parts that differ. Exit 1 if any node failed or did not converge.",
        options=fleet_options(),
        interrupt_note=INTERRUPT_NOTE,
    )
    add_load_timeout(apply)
    apply.add_argument("--dry-run", action="store_true", help="print the plan only")
    apply.add_argument("--fail-fast", action="store_true", help="stop at the first failure")

    add_exporter(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """``tabby-async fleet ...`` on its own (the ``tabby-async`` command runs the same)."""
    from . import main as cli_main

    return cli_main(["fleet", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
