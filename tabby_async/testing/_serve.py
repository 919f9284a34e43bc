"""Serving an emulator until told to stop: the one helper behind every long-running use.

The ``tabby-async emulator`` command, :class:`~tabby_async.testing.ThreadedEmulator`
and :func:`run_emulator` all serve through :func:`serve_forever`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ._emulator import TabbyEmulator

__all__ = ["run_emulator", "serve_forever"]


async def serve_forever(
    emulator: TabbyEmulator,
    *,
    ready: Callable[[TabbyEmulator], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Start ``emulator`` (if needed) and serve until ``stop`` is set or the task is
    cancelled; then close it.

    ``ready`` is called once the socket is bound, e.g. to print the URL and keys.
    An error of :meth:`TabbyEmulator.start` (``OSError`` for a port in use) is
    raised before ``ready`` is called. The emulator is closed however this ends.
    """
    await emulator.start()
    try:
        if ready is not None:
            ready(emulator)
        await (stop if stop is not None else asyncio.Event()).wait()
    finally:
        await emulator.close()


async def run_emulator(
    *,
    port: int = 5000,
    ready: Callable[[TabbyEmulator], None] | None = None,
    **options: Any,
) -> None:
    """Serve ``TabbyEmulator(port=port, record=False, **options)`` until cancelled.

    :func:`serve_forever` with a command line's defaults: port 5000, and no
    recording (a long-running server should not grow without bound).
    ``options`` are any other :class:`TabbyEmulator` arguments (``models``,
    ``host``, ``api_key``, ...).
    """
    await serve_forever(TabbyEmulator(port=port, record=False, **options), ready=ready)
