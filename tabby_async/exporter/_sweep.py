"""Sweeping a fleet for the exporter, and reusing a recent sweep.

A sweep asks every node the four status probes (health, the key's
permission, the loaded model, the embedding model) with bounded concurrency
and a per-node timeout; a node that declares a desired state is planned
from the same answers (only a managed sampler preset needs one more read).
A node that fails is a result, never an error of the sweep.

:class:`SweepCache` keeps the last sweep for ``min_interval`` seconds and
shares a sweep under way, so that scrapes that come close together (two
Prometheus servers, say) cost one sweep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from .._client import AsyncTabbyClient
from .._state_plan import DesiredState, Observed, StatePlan, plan_state
from ..errors import TabbyError
from ..fleet import NodeStatus, TabbyFleet
from ..fleet._status import probe_status
from ._snapshot import FleetSnapshot, NodeSnapshot

__all__ = ["SweepCache", "sweep"]

#: The status probes a desired state's parts are planned from.
_NEEDS = {"model": "model", "template": "model", "embedding": "embedding"}


def _plannable(state: DesiredState, status: NodeStatus) -> bool:
    """Whether every probe the state's parts are planned from answered."""
    return not any(_NEEDS.get(part) in status.problems for part in state.parts)


async def _plan(
    client: AsyncTabbyClient, state: DesiredState, status: NodeStatus
) -> StatePlan | None:
    """The node's plan for ``state`` from the status probes' answers (None: it cannot tell)."""
    if not _plannable(state, status):
        return None
    sampling = None
    if state.sampling_preset is not None:
        try:
            sampling = await client.sampling.list()
        except TabbyError:  # the node answered its probes: it is up, its plan unknown
            return None
    return plan_state(state, Observed(status.model, sampling, status.embedding_model))


async def sweep(
    fleet: TabbyFleet,
    desired: Mapping[str, DesiredState],
    *,
    node_timeout: float,
    max_concurrency: int,
    nodes: list[str] | None = None,
) -> FleetSnapshot:
    """One sweep of ``nodes`` of ``fleet`` (default all), each within ``node_timeout`` seconds."""
    started = time.monotonic()

    async def look(name: str, client: AsyncTabbyClient) -> tuple[NodeStatus, StatePlan | None]:
        status = await probe_status(client, timeout=node_timeout)
        state = desired.get(name)
        return status, None if state is None else await _plan(client, state, status)

    result = await fleet.run(
        look,
        nodes=nodes,
        timeout=node_timeout,
        max_concurrency=max_concurrency,
        operation="scrape",
    )
    swept = tuple(
        NodeSnapshot(r.node, None, r.error, r.elapsed)
        if r.value is None
        else NodeSnapshot(r.node, r.value[0], None, r.elapsed, r.value[1])
        for r in result
    )
    return FleetSnapshot(swept, time.monotonic() - started, started)


class SweepCache:
    """The last sweep, reused for ``min_interval`` seconds; one sweep at a time.

    Call :meth:`get` in the event loop that sweeps. ``clock`` is the time
    source (``time.monotonic``; a test's fake clock).
    """

    def __init__(
        self,
        sweep: Callable[[], Awaitable[FleetSnapshot]],
        min_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sweep = sweep
        self._min_interval = min_interval
        self._clock = clock
        self._last: FleetSnapshot | None = None
        self._last_at = 0.0
        self._running: asyncio.Future[FleetSnapshot] | None = None

    @property
    def last(self) -> FleetSnapshot | None:
        """The last sweep that finished (None before the first)."""
        return self._last

    async def get(self) -> FleetSnapshot:
        """The last sweep if it started less than ``min_interval`` ago, else a new one.

        A sweep under way is shared: a second caller waits for it instead of
        starting another. A caller that is cancelled does not cancel it.
        """
        last = self._last
        if last is not None and self._clock() - self._last_at < self._min_interval:
            return last
        running = self._running
        if running is None:
            running = self._running = asyncio.ensure_future(self._run())
        return await asyncio.shield(running)

    async def _run(self) -> FleetSnapshot:
        started = self._clock()
        try:
            snapshot = await self._sweep()
        finally:
            self._running = None
        self._last, self._last_at = snapshot, started
        return snapshot
