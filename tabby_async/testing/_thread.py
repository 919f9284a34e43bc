"""The emulator on its own event loop in a background thread, for synchronous tests.

A synchronous test client such as FastAPI's (Starlette's) ``TestClient``
blocks the thread it is called from until the app has answered. When the
emulator runs on that same thread's event loop (the async ``tabby_emulator``
fixture), it can never answer: the app waits for the emulator, the emulator
waits for the loop, and the test hangs until a timeout fires.
:class:`ThreadedEmulator` serves the emulator from a loop of its own, in a
daemon thread, so that any number of blocking callers can talk to it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, overload

from ._emulator import TabbyEmulator
from ._serve import serve_forever

__all__ = ["ThreadedEmulator"]

_T = TypeVar("_T")

#: How long starting or stopping may take before it is reported as stuck: a
#: guard against a hang, far above the milliseconds either normally takes.
_HANG_GUARD = 60.0


class ThreadedEmulator:
    """A :class:`TabbyEmulator` served from a background thread; a sync context manager.

    It takes the same arguments as :class:`TabbyEmulator`::

        with ThreadedEmulator(models=["a", "b"]) as server:
            os.environ["TABBY_URL"] = server.url  # then use any blocking client
            server.call(lambda emulator: emulator.faults.fail_next(1, status=502))
            assert server.call(lambda emulator: emulator.loaded) is None

    :attr:`url`, :attr:`api_key` and :attr:`admin_key` may be read from any
    thread. Everything else (state, recorded requests, faults) belongs to the
    emulator's loop: reach it through :meth:`call`, which runs a function
    there and returns its result.

    Leaving the block (normally or by an exception) or :meth:`close` closes
    the emulator, stops its loop and joins the thread: no thread, loop or
    socket is left behind.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Built here, not in the thread, so that a bad argument raises in the caller.
        self._emulator = TabbyEmulator(*args, **kwargs)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._url = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ThreadedEmulator:
        """Start the thread and bind the port; returns ``self`` once serving.

        Raises what :meth:`TabbyEmulator.start` raised (e.g. ``OSError`` for a
        port in use); the thread has ended by then. Starting twice does nothing.
        """
        if self._thread is not None:
            return self
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._serve, args=(ready,), name="tabby-emulator", daemon=True
        )
        thread.start()
        try:
            ready.result(_HANG_GUARD)
        except BaseException:
            if self._stop is not None:  # the wait itself failed: stop what did start
                self._request_stop()
            thread.join(_HANG_GUARD)
            raise
        self._thread = thread
        self._url = self._emulator.url
        return self

    def close(self) -> None:
        """Close the emulator, stop its loop and join the thread. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        self._request_stop()
        thread.join(_HANG_GUARD)
        if thread.is_alive():
            raise RuntimeError(f"the emulator thread did not stop within {_HANG_GUARD:.0f} s")

    def __enter__(self) -> ThreadedEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        """The thread: one event loop, alive from start to close."""
        asyncio.run(self._main(ready))

    async def _main(self, ready: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await serve_forever(
                self._emulator, ready=lambda _emulator: ready.set_result(None), stop=self._stop
            )
        except BaseException as exc:
            if ready.done():
                raise
            ready.set_exception(exc)  # start() failed: the caller of start() raises it

    def _request_stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            # The loop may have ended already (asyncio.run returned): nothing to stop.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

    # ------------------------------------------------------------------ access

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43127`` (set once started)."""
        return self._url

    @property
    def api_key(self) -> str:
        """The (first) api key."""
        return self._emulator.api_key

    @property
    def admin_key(self) -> str:
        """The admin key."""
        return self._emulator.admin_key

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`close`."""
        return self._thread is not None

    @overload
    def call(self, func: Callable[[TabbyEmulator], Awaitable[_T]]) -> _T: ...

    @overload
    def call(self, func: Callable[[TabbyEmulator], _T]) -> _T: ...

    def call(self, func: Callable[[TabbyEmulator], Any]) -> Any:
        """Run ``func(emulator)`` on the emulator's loop and return its result.

        ``func`` may be a plain function or return an awaitable, which is
        awaited there: ``server.call(lambda e: e.count("GET", "/v1/model/list"))``,
        ``server.call(lambda e: e.preload("a", max_seq_len=4096))``. An
        exception it raises is raised here. Blocks until done; it must not be
        called from inside ``func`` (that thread is the loop itself).
        """
        loop = self._loop
        if self._thread is None or loop is None:
            raise RuntimeError("the threaded emulator is not running (use it in a with block)")
        if threading.current_thread() is self._thread:
            raise RuntimeError("call() from the emulator's own thread would wait for itself")

        async def run() -> Any:
            result = func(self._emulator)
            if inspect.isawaitable(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), loop).result()
