"""What a fleet operation shows operators: its span, one child span per node, its log records.

The span of an operation is named after it (``tabby.fleet.status``; a
rollout's batches are ``tabby.fleet.rollout.batch`` with the batch number as
an attribute) and is the parent of one ``tabby.fleet.node`` span per node
that ran, which is in turn the parent of that node's own spans (its loads,
its HTTP requests). Log records name the operation and the node in their
``extra`` (see the ``tabby_async`` logger); they never hold a key.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from .._client import AsyncTabbyClient
from .._log import logger
from .._otel import (
    Attributes,
    AttributeValue,
    Traced,
    end_span,
    fail_span,
    server_attributes,
    set_error,
    start_span,
    use_span,
)
from .._words import counted
from ._results import NodeResult

__all__ = ["FleetTrace", "RolloutTrace", "log_node_result", "span_name"]

T = TypeVar("T")


def span_name(operation: str) -> tuple[str, dict[str, AttributeValue]]:
    """The span name of a fleet operation, and the attributes its name leaves out.

    ``"status"`` is ``tabby.fleet.status``; a trailing number becomes an
    attribute, so that names stay few: ``"rollout batch 2"`` is
    ``tabby.fleet.rollout.batch`` with ``tabby.fleet.batch`` 2.
    """
    words = operation.split() or ["run"]
    extra: dict[str, AttributeValue] = {}
    if len(words) > 1 and words[-1].isdigit():
        number = int(words.pop())
        extra[f"tabby.fleet.{words[-1]}"] = number
    return "tabby.fleet." + ".".join(words), extra


class FleetTrace(Traced):
    """The span of one fleet operation while it records (see :meth:`start`)."""

    __slots__ = ()

    @classmethod
    def start(cls, operation: str, nodes: int) -> FleetTrace | None:
        """The span of ``operation`` on ``nodes`` nodes, or None when tracing is off."""
        name, extra = span_name(operation)

        def attributes() -> Attributes:
            return {"tabby.fleet.operation": operation, "tabby.fleet.nodes": nodes, **extra}

        span = start_span(name, attributes)
        return None if span is None else cls(span)

    async def node(
        self, name: str, client: AsyncTabbyClient, run: Awaitable[NodeResult[T]]
    ) -> NodeResult[T]:
        """Await one node's ``run`` inside its own child span."""

        def attributes() -> Attributes:
            return {"tabby.node.name": name, **server_attributes(client.base_url)}

        with use_span(self.span):
            span = start_span("tabby.fleet.node", attributes)
        if span is None:
            return await run
        with use_span(span):
            try:
                result = await run
            except BaseException as exc:
                fail_span(span, exc)
                raise
        if result.error is None:
            end_span(span, "ok")
        else:
            fail_span(span, result.error)
        return result

    def end(self, results: Sequence[NodeResult[Any]]) -> None:
        """End the operation's span: ``ok``, ``partial`` (some nodes failed) or ``error`` (all)."""
        failed = sum(1 for r in results if r.error is not None)
        span = self.span
        span.set_attribute("tabby.fleet.failed", failed)
        if not failed:
            end_span(span, "ok")
        elif failed < len(results):
            end_span(span, "partial")
        else:
            set_error(span, "fleet_error", f"every node failed ({failed})")
            end_span(span, "error")


def log_node_result(operation: str, result: NodeResult[Any]) -> None:
    """Log one node's result: failures at INFO, successes at DEBUG."""
    error = result.error
    if error is None and not logger.isEnabledFor(logging.DEBUG):
        return
    extra = {"tabby_operation": operation, "tabby_node": result.node}
    if error is not None:
        logger.info(
            "fleet %s: node %s failed (%s): %s",
            operation,
            result.node,
            error.code,
            error,
            extra=extra,
        )
    else:
        logger.debug(
            "fleet %s: node %s ok in %.3f s", operation, result.node, result.elapsed, extra=extra
        )


class RolloutTrace(Traced):
    """The span of one rollout while it records: each batch is a span event."""

    __slots__ = ()

    @classmethod
    def start(
        cls, target: str, model: str | None, nodes: int, batch_size: int, max_failures: int
    ) -> RolloutTrace | None:
        """The span of a rollout to ``target`` (``model`` when it loads one), or None."""

        def attributes() -> Attributes:
            found: dict[str, AttributeValue] = {
                "tabby.fleet.operation": "rollout",
                "tabby.fleet.nodes": nodes,
                "tabby.rollout.target": target,
                "tabby.rollout.batch_size": batch_size,
                "tabby.rollout.max_failures": max_failures,
            }
            if model is not None:
                found["tabby.model.name"] = model
            return found

        span = start_span("tabby.fleet.rollout", attributes)
        return None if span is None else cls(span)

    def batch(self, index: int, results: Sequence[NodeResult[Any]]) -> None:
        """Batch ``index`` (from 0) is done: its nodes and how many failed."""
        self.span.add_event(
            "tabby.rollout.batch",
            {
                "tabby.rollout.batch": index,
                "tabby.rollout.nodes": [r.node for r in results],
                "tabby.rollout.failed": [r.node for r in results if r.error is not None],
            },
        )

    def end(self, batches: int, done: int, failed: int, not_touched: int, halted: bool) -> None:
        """End the span: ``ok``, ``partial`` (failures within ``max_failures``) or halted."""
        span = self.span
        span.set_attribute("tabby.rollout.batches", batches)
        span.set_attribute("tabby.rollout.done", done)
        span.set_attribute("tabby.rollout.failed", failed)
        span.set_attribute("tabby.rollout.not_touched", not_touched)
        span.set_attribute("tabby.rollout.halted", halted)
        if halted:
            set_error(span, "rollout_halted", f"halted after {counted(failed, 'failed node')}")
            end_span(span, "error")
        else:
            end_span(span, "partial" if failed else "ok")
