"""Per-node results of a fleet operation.

A fleet call never raises for one node's failure: every node gets a
:class:`NodeResult` holding either its value or its typed
:class:`~tabby_async.TabbyError`, plus the time it took. :class:`FleetResult`
keeps them in the fleet's node order and answers the usual questions (all
ok? which failed?) without the caller writing loops.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast, overload

from .._words import counted
from ..errors import ErrorCode, TabbyError

__all__ = ["FleetError", "FleetResult", "NodeResult"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


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
        """True when the node succeeded."""
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
        """The node names, in order."""
        return [r.node for r in self._results]

    @property
    def ok(self) -> bool:
        """True when every node succeeded."""
        return all(r.error is None for r in self._results)

    @property
    def succeeded(self) -> list[NodeResult[T]]:
        """The results of the nodes that succeeded, in order."""
        return [r for r in self._results if r.error is None]

    @property
    def failed(self) -> list[NodeResult[T]]:
        """The results of the nodes that failed, in order."""
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
        return (
            f"{self.operation or 'fleet'}: {counted(len(self), 'node')}: {parts} "
            f"in {self.elapsed:.2f} s"
        )


class FleetError(TabbyError):
    """Raised by ``FleetResult.raise_for_errors()``; ``result`` holds every node."""

    code: ClassVar[ErrorCode] = "fleet_error"

    def __init__(self, result: FleetResult[Any]) -> None:
        failed = result.failed
        shown = ", ".join(f"{r.node} ({r.status})" for r in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        super().__init__(
            f"{result.operation or 'fleet operation'}: {len(failed)} of {len(result)} "
            f"nodes failed: {shown}{more}"
        )
        self.result = result
