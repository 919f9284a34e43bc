"""One load stream over a whole fleet: every node's events, merged as they come."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from .._client import AsyncTabbyClient
from .._defaults import TimeoutArg
from ..errors import ClientStateError
from ..types import ModelLoadRequest, ModelLoadResponse
from ._fanout import fan_out
from ._results import FleetResult, NodeResult

if TYPE_CHECKING:
    from typing import Self

__all__ = ["FleetLoadEvent", "FleetLoadStream"]


@dataclass(frozen=True, slots=True)
class FleetLoadEvent:
    """One item of a :class:`FleetLoadStream`.

    Either a progress ``event`` of ``node`` (``result`` None), or the node's
    completion (``event`` None, ``result`` its NodeResult: the ``finished``
    event or the error). ``progress`` is the fleet's overall figure at that
    moment, from 0.0 to 1.0 (see :attr:`FleetLoadStream.progress`).
    """

    node: str
    event: ModelLoadResponse | None
    result: NodeResult[ModelLoadResponse] | None
    progress: float

    @property
    def done(self) -> bool:
        """True for a node's completion item."""
        return self.result is not None


_END = object()


class FleetLoadStream:
    """Loads one model on many nodes and yields their events as they arrive.

    Use it as ``async with fleet.models.load_stream(req) as stream: async for
    item in stream: ...``. Each node's load runs with the fleet's bounded
    concurrency; iteration ends when every node has completed (succeeded or
    failed), and :attr:`results` then holds every node's outcome. Leaving the
    block early (``break``, an error, cancellation) or :meth:`aclose` closes
    every open stream and waits for its task: no connection or task outlives
    the block. As with one server, a closed stream does not stop a load
    already running on a node: the server goes on loading after the client
    has gone.
    """

    def __init__(
        self,
        targets: Sequence[tuple[str, AsyncTabbyClient]],
        request: ModelLoadRequest,
        *,
        max_concurrency: int,
        node_timeout: float | None,
        stream_timeout: TimeoutArg,
        fail_fast: bool,
    ) -> None:
        self._targets = list(targets)
        self._request = request
        self._max_concurrency = max_concurrency
        self._node_timeout = node_timeout
        self._stream_timeout = stream_timeout
        self._fail_fast = fail_fast
        self._queue: asyncio.Queue[FleetLoadEvent | object] = asyncio.Queue()
        self._task: asyncio.Task[FleetResult[ModelLoadResponse]] | None = None
        self._fractions: dict[str, float] = {}
        self._fraction_sum = 0.0  # kept with _fractions: progress is O(1) per event
        self._done = 0
        self._failed = 0
        self._closed = False
        self._results: FleetResult[ModelLoadResponse] | None = None

    # --- progress figures ---

    @property
    def total(self) -> int:
        """How many nodes the stream loads on."""
        return len(self._targets)

    @property
    def completed(self) -> int:
        """Nodes that have completed, successfully or not."""
        return self._done

    @property
    def failed(self) -> int:
        """Nodes whose load failed (or timed out, or was cancelled by ``fail_fast``)."""
        return self._failed

    @property
    def progress(self) -> float:
        """The fleet's overall progress, 0.0 to 1.0.

        The mean over nodes of each node's main-model fraction (module /
        modules of its last ``model`` event; draft and vision components
        count as 0), with a completed node counting 1.0 whether it
        succeeded or failed: "how much of the work is over".
        """
        if self._done >= len(self._targets):
            return 1.0  # exact, whatever the running sum's rounding
        return min(1.0, self._fraction_sum / len(self._targets))

    @property
    def results(self) -> FleetResult[ModelLoadResponse]:
        """Every node's outcome; available once the iteration has ended."""
        if self._results is None:
            raise ClientStateError("the fleet load stream has not finished yet")
        return self._results

    # --- lifecycle ---

    async def __aenter__(self) -> Self:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _start(self) -> None:
        if self._closed:
            raise ClientStateError("this fleet load stream is closed")
        if self._task is None:
            self._fractions = dict.fromkeys((name for name, _ in self._targets), 0.0)
            self._fraction_sum = 0.0
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> FleetResult[ModelLoadResponse]:
        put = self._queue.put_nowait
        request, timeout = self._request, self._stream_timeout

        async def one(name: str, client: AsyncTabbyClient) -> ModelLoadResponse:
            async with client.models.load_stream(request, timeout=timeout) as stream:
                async for event in stream:
                    if event.model_type == "model" and event.modules > 0:
                        self._set_fraction(name, min(1.0, event.module / event.modules))
                    put(FleetLoadEvent(name, event, None, self.progress))
            assert stream.last_event is not None  # the stream raises otherwise
            return stream.last_event

        def completed(result: NodeResult[ModelLoadResponse]) -> None:
            self._done += 1
            if not result.ok:
                self._failed += 1
            self._set_fraction(result.node, 1.0)
            put(FleetLoadEvent(result.node, None, result, self.progress))

        try:
            return await fan_out(
                self._targets,
                one,
                max_concurrency=self._max_concurrency,
                timeout=self._node_timeout,
                fail_fast=self._fail_fast,
                on_result=completed,
                operation="load",
            )
        finally:
            put(_END)

    def _set_fraction(self, node: str, fraction: float) -> None:
        self._fraction_sum += fraction - self._fractions.get(node, 0.0)
        self._fractions[node] = fraction

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> FleetLoadEvent:
        if self._closed:
            raise StopAsyncIteration
        self._start()
        item = await self._queue.get()
        if item is _END:
            assert self._task is not None
            self._results = await self._task
            self._closed = True
            raise StopAsyncIteration
        assert isinstance(item, FleetLoadEvent)
        return item

    async def aclose(self) -> None:
        """Stop: close every node's stream and wait for the tasks (idempotent)."""
        self._closed = True
        task = self._task
        if task is None:
            return
        if not task.done():
            task.cancel()
        try:
            result = await asyncio.gather(task, return_exceptions=True)
        finally:
            self._task = None
        if self._results is None and isinstance(result[0], FleetResult):
            self._results = result[0]
