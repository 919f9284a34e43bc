"""How the fleet commands show their results: tables of nodes, and the views while they run.

The SDK's fleet results carry data; this module decides how they read in a
terminal. A fleet table has one row per node: its name, its result (``ok``
or the error's code), its time, then columns that depend on what the nodes
returned (:data:`ROW_FORMATS`: a status, a plan, an ensure result, a
state's result), or one ``detail`` column for anything else. A failed
node's error fills the last column. :func:`state_plan_text` is the plan of
``fleet apply``: per node, one line per part that changes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TextIO

from .. import StatePlan, StateResult
from ..desired import ModelPlan, ModelResult, PartPlan
from ..fleet import FleetResult, NodeResult, NodeStatus
from ..types import ModelLoadResponse
from ._format import (
    CELL_LIMIT,
    ENSURE_COLUMNS,
    PLAN_COLUMNS,
    cell,
    cli_words,
    counted,
    ensure_row,
    format_table,
    plan_row,
    unchecked_note,
    value_text,
)
from ._output import terminal_stream, visible
from ._view import Display, NullView, View
from .common import live_display

__all__ = [
    "MAX_NODE_BARS",
    "PROBLEMS_LIMIT",
    "ROW_FORMATS",
    "STATE_COLUMNS",
    "STATUS_COLUMNS",
    "FleetView",
    "PlainView",
    "RolloutTracker",
    "fleet_table",
    "make_view",
    "part_line",
    "print_table",
    "results_json",
    "state_plan_text",
    "state_row",
    "status_row",
    "table_rows",
]

#: Above this many nodes the live view shows one overall bar, not one per node.
MAX_NODE_BARS = 30


# --- tables -----------------------------------------------------------------------

#: The longest ``problems`` cell of a status table (``--json`` has every problem in full).
PROBLEMS_LIMIT = 60

#: The columns of :func:`status_row`.
STATUS_COLUMNS: tuple[str, ...] = ("health", "permission", "model", "ctx", "embedding", "problems")


def status_row(status: NodeStatus) -> tuple[str, ...]:
    """A node's status as a table row: health (since when, the last issue), key, models."""
    return (
        status.health_text,
        status.permission or "-",
        status.model_name or "-",
        str(status.max_seq_len) if status.max_seq_len else "-",
        status.embedding_model.id if status.embedding_model is not None else "-",
        cell(
            ", ".join(f"{probe}: {err.code}" for probe, err in status.problems.items()),
            PROBLEMS_LIMIT,
        ),
    )


def part_line(part: PartPlan) -> str:
    """One part's plan: ``model: reload m (max_seq_len: wanted 4096, loaded 2048)``."""
    reason = part.reason
    if part.part == "model" and part.current is None:
        reason = "nothing loaded"  # rather than "model_name: wanted 'm', loaded None"
    return f"{part.part}: {part.action} {part.wanted} ({reason})"


def state_plan_text(plans: Iterable[NodeResult[StatePlan]], unmanaged: Sequence[str] = ()) -> str:
    """The plan of ``fleet apply``: per node a line, then one line per part that changes.

    A node whose plan failed gets its error; the nodes that declare no
    desired state one line together; the fields no node can confirm the
    ``note:`` line at the end.
    """
    lines: list[str] = []
    unchecked: list[str] = []
    for r in plans:
        if r.value is None:
            lines.append(f"{r.node}: cannot plan: {r.status}: {cli_words(str(r.error))}")
            continue
        unchecked += r.value.unchecked
        changing = [p for p in r.value.parts if p.changes]
        if not changing:
            managed = ", ".join(p.part for p in r.value.parts)
            checked = f"checked: {managed}" if managed else "nothing managed"
            lines.append(f"{r.node}: up to date ({checked})")
            continue
        lines.append(f"{r.node}: {counted(len(changing), 'part')} to change")
        lines += [f"  {part_line(p)}" for p in changing]
    if unmanaged:
        lines.append(f"not managed (no desired state declared): {', '.join(unmanaged)}")
    note = unchecked_note(unchecked)
    return "\n".join([*lines, note] if note else lines)


#: The columns of :func:`state_row`.
STATE_COLUMNS: tuple[str, ...] = ("done", "after")


def state_row(result: StateResult) -> tuple[str, ...]:
    """A state's result as a table row: the parts written, and whether the node is up to date.

    ``after`` reads ``up to date`` when no part differs any more, else the
    parts that still do (``still differs: model reload``; ``to change:`` for
    a dry run, which takes no fresh look): never a bare
    ``model: none``, which would read as "no model loaded".
    """
    done = ", ".join(f"{p.part} {p.action}" for p in result.done) or "nothing to do"
    pending = [p for p in (result.after or result.plan).parts if p.changes]
    if not pending:
        return (done, "up to date")
    # No fresh look (a dry run): the plan's parts are still to be written.
    label = "still differs" if result.after is not None else "to change"
    return (done, f"{label}: " + ", ".join(f"{p.part} {p.action}" for p in pending))


#: Per value type, the columns and the row its nodes get in a fleet table.
ROW_FORMATS: dict[type, tuple[tuple[str, ...], Callable[[Any], Sequence[str]]]] = {
    NodeStatus: (STATUS_COLUMNS, status_row),
    ModelPlan: (PLAN_COLUMNS, plan_row),
    ModelResult: (ENSURE_COLUMNS, ensure_row),
    StateResult: (STATE_COLUMNS, state_row),
}


def table_rows(results: Sequence[NodeResult[Any]]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a fleet table: node, result, time, then what the value says.

    The first successful value's type picks the columns (:data:`ROW_FORMATS`);
    any other type gets one ``detail`` column. A failed node's error goes in
    the last (widest) column.
    """
    columns: tuple[str, ...] = ("detail",)
    row_of: Callable[[Any], Sequence[str]] = lambda value: (value_text(value),)  # noqa: E731
    found = next((r.value for r in results if r.error is None and r.value is not None), None)
    if found is not None and type(found) in ROW_FORMATS:
        columns, row_of = ROW_FORMATS[type(found)]
    header = ["node", "result", "time", *columns]
    rows: list[list[str]] = []
    for r in results:
        if r.error is not None:
            cells: Sequence[str] = ["-"] * (len(columns) - 1) + [cli_words(str(r.error))]
        else:
            cells = row_of(r.value)
        rows.append([r.node, r.status, f"{r.elapsed:.2f}s", *(cell(c, CELL_LIMIT) for c in cells)])
    return header, rows


def fleet_table(results: Iterable[NodeResult[Any]]) -> str:
    """Results as an aligned plain-text table (no colours, no keys)."""
    header, rows = table_rows(list(results))
    return format_table(header, rows, rule=True, cell_limit=CELL_LIMIT)


# --- live views -------------------------------------------------------------------


class FleetView(Display, Protocol):
    """What a fleet command shows while it runs."""

    def set_total(self, total: int) -> None:
        """How many nodes will report a result."""

    def event(self, node: str, event: ModelLoadResponse) -> None:
        """A node's load progress event."""

    def done(self, result: NodeResult[Any]) -> None:
        """A node's final result."""

    def note(self, text: str) -> None:
        """A line of text (a plan, a batch summary) shown above the live view."""


class PlainView(View):
    """One line per node as it completes; for logs, pipes and dumb terminals."""

    def __init__(self, total: int, *, per_node: bool, file: TextIO | None = None) -> None:
        self._total = total
        self._per_node = per_node
        self._file = file
        self._done = 0
        self._width = len(str(total))

    def _out(self) -> TextIO:
        return self._file if self._file is not None else sys.stdout

    def set_total(self, total: int) -> None:
        self._total = total
        self._width = len(str(total))

    def event(self, node: str, event: ModelLoadResponse) -> None:
        return None  # one line per node, not per module: 1,000 nodes stay readable

    def done(self, result: NodeResult[Any]) -> None:
        self._done += 1
        if not self._per_node:
            return
        detail = (
            cli_words(str(result.error)) if result.error is not None else value_text(result.value)
        )
        out = self._out()
        out.write(
            f"[{self._done:>{self._width}}/{self._total}] {result.node}  {result.status}  "
            f"{result.elapsed:.2f}s  {detail}\n"
        )
        out.flush()

    def note(self, text: str) -> None:
        out = self._out()
        out.write(text + "\n")
        out.flush()


def make_view(args: argparse.Namespace, total: int, title: str, *, per_node: bool) -> FleetView:
    """Live rich bars on a terminal (stderr with ``--json``), else plain lines."""
    json_output = bool(getattr(args, "json", False))
    if live_display(json_output=json_output) and not getattr(args, "plain", False):
        from ._rich import RichFleetView

        return RichFleetView(total, title, stderr=json_output, max_node_bars=MAX_NODE_BARS)
    if json_output:
        return NullView()  # stdout is kept for the document
    return PlainView(total, per_node=per_node)


# --- an interrupted rollout -----------------------------------------------------------


class RolloutTracker:
    """Which nodes a rollout has changed, is working on, and has not touched yet.

    Fed with the rollout's results (:meth:`done`: a batch's, once it is over);
    a rollout takes its nodes in order, ``batch_size`` at a time, so the nodes
    after those with a result, one batch of them, are the batch under way.
    What Ctrl-C must tell: :meth:`groups` and :meth:`text`.
    """

    def __init__(self, order: Sequence[str], batch_size: int) -> None:
        self._order = list(dict.fromkeys(order))
        self._batch_size = batch_size
        self._results: dict[str, NodeResult[Any]] = {}

    def done(self, result: NodeResult[Any]) -> None:
        """A node's final result."""
        self._results[result.node] = result

    def groups(self) -> dict[str, list[str]]:
        """The nodes by what happened to them (changed, unchanged, failed, in progress...)."""
        found: dict[str, list[str]] = {"changed": [], "unchanged": [], "failed": []}
        for node in self._order:
            r = self._results.get(node)
            if r is None:
                continue
            if r.error is not None:
                found["failed"].append(node)
            else:
                found["changed" if getattr(r.value, "changed", True) else "unchanged"].append(node)
        rest = [node for node in self._order if node not in self._results]
        found["in_progress"] = rest[: self._batch_size]
        found["not_touched"] = rest[self._batch_size :]
        return found

    def text(self) -> str:
        """What the rollout had done when it was interrupted, one line per kind of node."""
        labels = {
            "changed": "already changed",
            "unchanged": "already as requested (not changed)",
            "failed": "failed",
            "in_progress": "in progress (a load under way may still finish on its own)",
            "not_touched": "not touched",
        }
        lines = ["the rollout was interrupted:"]
        lines += [
            f"  {labels[kind]}: {', '.join(nodes) or '-'}" for kind, nodes in self.groups().items()
        ]
        return "\n".join(lines)


# --- output -----------------------------------------------------------------------------


def results_json(result: FleetResult[Any]) -> list[dict[str, Any]]:
    """Every node's result as JSON-ready data (an error becomes its code and message)."""
    return [
        {
            "node": r.node,
            "status": r.status,
            "elapsed": round(r.elapsed, 4),
            "value": r.value,
            "error": r.error,
        }
        for r in result
    ]


def print_table(results: Iterable[NodeResult[Any]], title: str = "") -> None:
    """The final table: rich on a terminal when available, else plain text."""
    rows = list(results)
    if live_display(json_output=False):
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        header, cells = table_rows(rows)
        table = Table(title=visible(title) or None)
        for name in header:
            table.add_column(name, overflow="fold")
        for row, result in zip(cells, rows, strict=True):
            # Text, not str: a server's "[bold]" is shown, not read as markup.
            table.add_row(*(Text(visible(c)) for c in row), style=None if result.ok else "red")
        Console(file=terminal_stream()).print(table)
        return
    if title:
        print(title)
    print(fleet_table(rows))
