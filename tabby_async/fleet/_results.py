"""Per-node results of a fleet operation, and their plain-text table.

A fleet call never raises for one node's failure: every node gets a
:class:`NodeResult` holding either its value or its typed
:class:`~tabby_async.TabbyError`, plus the time it took. :class:`FleetResult`
keeps them in the fleet's node order and answers the usual questions (all
ok? which failed?) without the caller writing loops.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast, overload

from ..errors import FleetError, TabbyError
from ..types import (
    DownloadResponse,
    HealthResponse,
    ModelCard,
    ModelList,
    ModelLoadResponse,
    ModelPropsResponse,
    PermissionResponse,
)

__all__ = [
    "FleetResult",
    "NodeResult",
    "format_table",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: Longest text of one table cell; error messages can be long.
_CELL_LIMIT = 100


@dataclass(frozen=True)
class NodeResult(Generic[T_co]):
    """One node's outcome: ``value`` when ``error`` is None, else the error.

    ``elapsed`` is the node's own wall time in seconds (its wait for a
    concurrency slot not included).
    """

    node: str
    value: T_co | None = None
    error: TabbyError | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        """``"ok"``, or the error's stable ``code`` (``"timeout"``, ``"skipped"``, ...)."""
        return "ok" if self.error is None else self.error.code

    def unwrap(self) -> T_co:
        """The value; raises the node's error if it failed."""
        if self.error is not None:
            raise self.error
        return cast(T_co, self.value)


class FleetResult(Generic[T]):
    """Every node's :class:`NodeResult`, in the fleet's node order.

    Index by position or by node name (``result["gpu-01"]``); iterate for
    the NodeResults. ``elapsed`` is the wall time of the whole fan-out.
    """

    __slots__ = ("_by_node", "_results", "elapsed", "operation")

    def __init__(
        self, results: Sequence[NodeResult[T]], *, operation: str = "", elapsed: float = 0.0
    ) -> None:
        self._results: tuple[NodeResult[T], ...] = tuple(results)
        self._by_node = {r.node: r for r in self._results}
        self.operation = operation
        self.elapsed = elapsed

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[NodeResult[T]]:
        return iter(self._results)

    @overload
    def __getitem__(self, key: int) -> NodeResult[T]: ...
    @overload
    def __getitem__(self, key: str) -> NodeResult[T]: ...
    def __getitem__(self, key: int | str) -> NodeResult[T]:
        if isinstance(key, str):
            return self._by_node[key]
        return self._results[key]

    def get(self, node: str) -> NodeResult[T] | None:
        """The result of the named node, or None if it was not part of this operation."""
        return self._by_node.get(node)

    def __contains__(self, node: object) -> bool:
        return node in self._by_node

    def __repr__(self) -> str:
        failed = len(self.failed)
        return (
            f"FleetResult({self.operation or '?'}: {len(self)} nodes, "
            f"{len(self) - failed} ok, {failed} failed, {self.elapsed:.2f} s)"
        )

    @property
    def nodes(self) -> list[str]:
        return [r.node for r in self._results]

    @property
    def ok(self) -> bool:
        """True when every node succeeded."""
        return all(r.error is None for r in self._results)

    @property
    def succeeded(self) -> list[NodeResult[T]]:
        return [r for r in self._results if r.error is None]

    @property
    def failed(self) -> list[NodeResult[T]]:
        return [r for r in self._results if r.error is not None]

    @property
    def values(self) -> dict[str, T]:
        """The value of every node that succeeded, by node name."""
        return {r.node: cast(T, r.value) for r in self._results if r.error is None}

    @property
    def errors(self) -> dict[str, TabbyError]:
        """The error of every node that failed, by node name."""
        return {r.node: r.error for r in self._results if r.error is not None}

    def counts(self) -> dict[str, int]:
        """How many nodes ended in each status (``ok`` or an error code)."""
        out: dict[str, int] = {}
        for r in self._results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def raise_for_errors(self) -> None:
        """Raise :class:`FleetError` if any node failed."""
        if not self.ok:
            raise FleetError(self)

    def summary(self) -> str:
        """One line: counts per status and the total time."""
        parts = ", ".join(f"{n} {status}" for status, n in sorted(self.counts().items()))
        return f"{self.operation or 'fleet'}: {len(self)} nodes: {parts} in {self.elapsed:.2f} s"

    def format_table(self) -> str:
        """A plain-text table: node, result, time and what the value says."""
        return format_table(self._results)


# --- describing values -------------------------------------------------------


def describe(value: object) -> str:
    """A short text for a node's value, for tables and progress lines."""
    if value is None:
        return ""
    summary = getattr(value, "summary", None)
    if callable(summary):
        return str(summary())
    if isinstance(value, ModelLoadResponse):
        return f"{value.model_type} {value.module}/{value.modules} {value.status}"
    if isinstance(value, ModelCard):
        ctx = value.parameters.max_seq_len if value.parameters is not None else None
        return value.id if ctx is None else f"{value.id} (max_seq_len {ctx})"
    if isinstance(value, ModelList):
        return f"{len(value.data)} models"
    if isinstance(value, HealthResponse):
        issues = "; ".join(i.description for i in value.issues)
        return value.status + (f": {issues}" if issues else "")
    if isinstance(value, PermissionResponse):
        return value.permission
    if isinstance(value, ModelPropsResponse):
        return f"n_ctx {value.default_generation_settings.n_ctx}, {value.total_slots} slots"
    if isinstance(value, DownloadResponse):
        return value.download_path
    return repr(value)


def _cell(text: str) -> str:
    text = " ".join(text.split())  # no line breaks inside a row
    return text if len(text) <= _CELL_LIMIT else text[: _CELL_LIMIT - 1] + "…"


def table_rows(results: Sequence[NodeResult[Any]]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of :func:`format_table` (shared with the rich view).

    When the successful values have ``TABLE_COLUMNS`` and ``table_row()``
    (as NodeStatus, LoadPlan and EnsureResult do), those become columns;
    otherwise one ``detail`` column describes the value.
    """
    columns: tuple[str, ...] = ("detail",)
    for r in results:
        if r.error is None and r.value is not None:
            found = getattr(type(r.value), "TABLE_COLUMNS", None)
            if isinstance(found, tuple) and hasattr(r.value, "table_row"):
                columns = found
            break
    header = ["node", "result", "time", *columns]
    rows: list[list[str]] = []
    for r in results:
        cells: list[str]
        if r.error is not None:  # the reason goes in the last (widest) column
            cells = ["-"] * (len(columns) - 1) + [str(r.error)]
        elif columns != ("detail",) and hasattr(r.value, "table_row"):
            row_of: Any = r.value
            cells = [str(c) for c in row_of.table_row()]
        else:
            cells = [describe(r.value)]
        rows.append([r.node, r.status, f"{r.elapsed:.2f}s", *(_cell(c) for c in cells)])
    return header, rows


def format_table(results: Sequence[NodeResult[Any]]) -> str:
    """Results as an aligned plain-text table (no colours, no keys)."""
    header, rows = table_rows(results)
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    return "\n".join(out)
