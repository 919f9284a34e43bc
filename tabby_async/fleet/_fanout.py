"""Run one operation on many nodes with bounded concurrency.

A fixed pool of ``max_concurrency`` worker tasks takes nodes in order, so a
1,000-node fleet has at most ``max_concurrency`` requests in flight and as
many tasks, not 1,000. A slot freed by a fast node is taken at once by the
next one (no batch barriers), which keeps a fleet load near the ideal
``ceil(N / c) x T``.

A node's :class:`~tabby_async.TabbyError` becomes its result; it never
touches the others unless ``fail_fast`` is set, in which case the running
operations are cancelled and the rest are not started. Any other exception
is a bug: the remaining nodes still finish, then it is raised. Cancelling the
caller cancels every worker and waits for them, so nothing leaks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .._client import AsyncTabbyClient
from .._log import NODE, OPERATION
from .._otel import use_span
from ..errors import TabbyError, TabbyTimeoutError
from ._errors import NodeCancelledError, NodeSkippedError
from ._observe import FleetTrace, log_node_result
from ._results import FleetResult, NodeResult

__all__ = ["NodeOp", "ResultCallback", "fan_out"]

T = TypeVar("T")

#: An operation on one node: ``(node name, its client) -> awaitable value``.
NodeOp = Callable[[str, AsyncTabbyClient], Awaitable[T]]
#: Called (synchronously) with each node's result as soon as it is known.
ResultCallback = Callable[[NodeResult[Any]], object]


async def run_node(
    name: str, client: AsyncTabbyClient, op: NodeOp[T], timeout: float | None
) -> NodeResult[T]:
    """One node's operation as a NodeResult: its value or its TabbyError, and the time."""
    started = time.perf_counter()
    try:
        if timeout is None:
            value = await op(name, client)
        else:
            # A timer in the worker's own task: wait_for would start a task per node.
            async with asyncio.timeout(timeout):
                value = await op(name, client)
    except TabbyError as err:
        return NodeResult(name, None, err, time.perf_counter() - started)
    except TimeoutError:
        late = TabbyTimeoutError(
            f"{name}: no result within the per-node timeout of {timeout:g} s", kind="total"
        )
        return NodeResult(name, None, late, time.perf_counter() - started)
    return NodeResult(name, value, None, time.perf_counter() - started)


async def fan_out(
    targets: Sequence[tuple[str, AsyncTabbyClient]],
    op: NodeOp[T],
    *,
    max_concurrency: int,
    timeout: float | None,
    fail_fast: bool = False,
    on_result: ResultCallback | None = None,
    operation: str = "",
) -> FleetResult[T]:
    """Run ``op`` on every target; return every node's result in target order.

    The operation's span (when tracing) is the parent of one span per node,
    and every record logged meanwhile names ``operation`` and the node.
    """
    started = time.perf_counter()
    trace = FleetTrace.start(operation, len(targets))
    results: list[NodeResult[T] | None] = [None] * len(targets)
    running: dict[int, int] = {}  # worker number -> index of the node it runs
    next_index = 0
    stopping = False
    workers: list[asyncio.Task[None]] = []
    failed_node = ""

    async def worker(number: int) -> None:
        nonlocal next_index, stopping, failed_node
        while not stopping and next_index < len(targets):
            index = next_index
            next_index += 1
            name, client = targets[index]
            running[number] = index
            node = NODE.set(name)
            try:
                if trace is None:
                    result = await run_node(name, client, op, timeout)
                else:
                    result = await trace.node(name, client, run_node(name, client, op, timeout))
            finally:
                NODE.reset(node)
            del running[number]
            results[index] = result
            log_node_result(operation, result)
            if on_result is not None:
                on_result(result)
            if fail_fast and result.error is not None and not stopping:
                stopping = True
                failed_node = name
                for other, task in enumerate(workers):
                    if other != number and other in running:
                        task.cancel()

    count = max(1, min(max_concurrency, len(targets)))
    # The workers start in a copy of this context: with the operation named,
    # and its span as their parent.
    scope = OPERATION.set(operation)
    try:
        with use_span(None if trace is None else trace.span):
            workers.extend(asyncio.create_task(worker(n)) for n in range(count))
    finally:
        OPERATION.reset(scope)
    try:
        outcomes = await asyncio.gather(*workers, return_exceptions=True)
    except BaseException as exc:
        if trace is not None:
            trace.fail(exc)
        raise
    finally:
        # The caller was cancelled (gather cancelled the workers): wait for
        # them so that no stream or connection outlives this call.
        running_yet = [task for task in workers if not task.done()]
        if running_yet:
            for task in running_yet:
                task.cancel()
            await asyncio.gather(*running_yet, return_exceptions=True)
    bug = next(
        (o for o in outcomes if isinstance(o, BaseException) and not _is_cancel(o)),
        None,
    )
    if bug is not None:
        if trace is not None:
            trace.fail(bug)
        raise bug
    out: list[NodeResult[T]] = []
    for index, result in enumerate(results):
        if result is None:
            name = targets[index][0]
            if index in running.values():
                err: TabbyError = NodeCancelledError(
                    f"{name}: cancelled because {failed_node} failed (fail_fast)"
                )
            else:
                err = NodeSkippedError(
                    f"{name}: not started because {failed_node} failed (fail_fast)"
                )
            result = NodeResult(name, None, err, 0.0)
            log_node_result(operation, result)
            if on_result is not None:
                on_result(result)
        out.append(result)
    if trace is not None:
        trace.end(out)
    return FleetResult(out, operation=operation, elapsed=time.perf_counter() - started)


def _is_cancel(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError)
