"""SSE keep-alive pings on a fixed timer, as the server's stream responses send them.

The server's SSE responses ping every ``interval`` seconds timed from the
response head (not from the last event), so a stream that sends nothing else
shows a ping per interval; ``0`` disables them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Pings"]


class Pings:
    """Calls ``tick()`` every ``interval`` seconds from now until :meth:`cancel` (0: never)."""

    __slots__ = ("_handle", "_interval", "_loop", "_start", "_tick", "_ticks")

    def __init__(self, tick: Callable[[], None], interval: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._tick = tick
        self._interval = interval
        self._start = self._loop.time()
        self._ticks = 0
        self._handle: asyncio.TimerHandle | None = None
        if interval > 0:
            self._handle = self._loop.call_at(self._start + interval, self._fire)

    def _fire(self) -> None:
        self._ticks += 1
        self._tick()
        next_at = self._start + (self._ticks + 1) * self._interval
        self._handle = self._loop.call_at(next_at, self._fire)

    def cancel(self) -> None:
        """Stop the timer."""
        if self._handle is not None:
            self._handle.cancel()
