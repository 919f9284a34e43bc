"""The load progress stream: one ``POST /v1/model/load``, read to its end.

The server answers ``200 text/event-stream`` and sends one ``data:`` frame
per progress step. What shapes this module:

* A load is never sent twice. The body is read by :class:`EventReader`,
  which never re-requests anything; the end of the body is the end.
* The end of the body without the model's ``finished`` event is a failed
  load (the server died), and an ``{"error": ...}`` frame is a failed load
  with the server's reason.
* After the model's ``finished`` the rest of the body is read for at most
  :data:`_DRAIN_SECONDS` and :data:`_DRAIN_BYTES` (the real server ends it at
  once, which lets the connection be reused); whatever a server sends after
  that, the connection is closed instead.
* No raw aiohttp exception is chained to an error raised here: its request
  record holds the keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import msgspec

from . import errors as E
from ._frames import event_decoder, event_reader, frame_error
from ._mapping import translate_exception
from ._otel import LoadTrace
from ._route import Route
from ._sse import EventReader, MessageEvent
from ._timeouts import Timeout
from ._transport import RETRY_STATUSES, Transport
from .types import ModelLoadResponse

if TYPE_CHECKING:
    from typing import Self

__all__ = ["LoadStream", "ProgressCallback", "Reattach", "follow"]

#: After the model's ``finished``: how long, and how many bytes, to read
#: while waiting for the end of the body before closing the connection.
_DRAIN_SECONDS = 1.0
_DRAIN_BYTES = 64 * 1024

#: Called with each load event; may be a plain function or a coroutine function.
ProgressCallback = Callable[[ModelLoadResponse], Awaitable[None] | None]

#: Polls ``GET /v1/model`` once, bounded by the seconds it is given; True
#: when the requested model is the loaded one.
Reattach = Callable[[float], Awaitable[bool]]

_Exc = TypeVar("_Exc", bound=BaseException)


def _keeps_polling(err: E.TabbyError) -> bool:
    """A poll's failure that says "not yet" or "busy", not "stop"."""
    if isinstance(err, (E.ModelNotLoadedError, E.TabbyConnectionError, E.TabbyTimeoutError)):
        return True
    return isinstance(err, E.APIStatusError) and err.status in RETRY_STATUSES


async def _read_to_end(content: aiohttp.StreamReader, limit: int) -> None:
    """Read and drop the body to its end, or until ``limit`` bytes were read."""
    seen = 0
    while seen <= limit:
        chunk = await content.readany()
        if not chunk:
            return
        seen += len(chunk)


class LoadStream:
    """The progress of one load.

    An async iterator of :class:`~tabby_async.types.ModelLoadResponse` and an async
    context manager. The request is sent on entering the block (or at the
    first iteration); HTTP errors before the stream raise then. Iteration ends
    after the main model's ``finished`` event; ``draft`` and ``vision``
    components finish on the way. Leaving the block, :meth:`aclose`, an error
    or cancellation closes the HTTP response at once.

    :meth:`aclose` may be called from another task at any time, also while
    the stream is still being opened: it cancels the opening request and
    closes the response before it returns, and the stream yields nothing
    more. The task iterating it sees the iteration end
    (``StopAsyncIteration``: its ``async for`` simply ends), and a task
    still entering ``async with`` gets the stream back already closed;
    ``closed`` is then True, and ``finished`` tells whether the model's
    ``finished`` event had arrived. A ``load()`` whose stream ends that way
    before ``finished`` raises :class:`~tabby_async.StreamError`.

    Closing does not stop the load on the server: it goes on loading and the
    model shows in ``models.get()`` when done.

    Raises:
        ModelNotFoundError: on entering: no such model folder (any other
            refusal: its :class:`~tabby_async.APIStatusError`, as any call).
        LoadFailedError: while iterating: the server's error frame, with its
            reason.
        StreamError: the body ended or broke before the model's ``finished``,
            was not a ``200`` event stream (a 204, an empty body), or had a
            line over 1 MiB (a :class:`~tabby_async.ResponseTooLargeError`).
        ClientStateError: entering a closed stream, or one another task opens.
    """

    def __init__(
        self,
        transport: Transport,
        route: Route[Any],
        body: msgspec.Struct,
        timeout: Timeout,
        *,
        reattach: Reattach | None = None,
        reattach_within: float = 0.0,
        poll_interval: float = 0.5,
    ) -> None:
        self._transport = transport
        self._route = route
        self._body = body
        self._timeout = timeout
        self._reattach = reattach
        self._reattach_within = reattach_within
        self._poll_interval = poll_interval
        #: True when the stream broke and the load's end was seen by polling.
        self.reattached = False
        self._reader: EventReader | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._opening: asyncio.Task[tuple[aiohttp.ClientResponse, bytes | None]] | None = None
        self._finished = False
        self._closed = False
        #: The last event seen, so a caller can tell how far the load got.
        self.last_event: ModelLoadResponse | None = None
        self._events = 0
        #: The load's OpenTelemetry span while one records; None otherwise.
        self._trace: LoadTrace | None = None

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    @property
    def closed(self) -> bool:
        """True once the stream is closed: it yields nothing more."""
        return self._closed

    @property
    def finished(self) -> bool:
        """True once the main model's ``finished`` event has arrived."""
        return self._finished

    @property
    def already_loaded(self) -> bool:
        """True when the server answered with its "already loaded" no-op.

        Asked to load the model it already runs, the server does nothing and
        ignores the request's parameters; its stream is then exactly
        ``processing 1/1``, ``finished 1/1``. A real load reports one event
        per module (and its draft and vision components first).
        """
        last = self.last_event
        return (
            self._finished
            and not self.reattached
            and self._events == 2
            and last is not None
            and last.modules == 1
        )

    async def _open(self) -> None:
        """Send the load and check the answer's head; a no-op once open.

        The request runs as its own task so that :meth:`aclose` from another
        task can cancel it; cancelling the task that opens cancels it too.
        """
        if self._closed:
            raise E.ClientStateError("this load stream is closed")
        if self._reader is not None:
            return
        if self._opening is not None:
            raise E.ClientStateError("this load stream is being opened by another task")
        send = self._transport.send(self._route, self._body, self._timeout, 0, read=False)
        trace = self._trace = LoadTrace.start(
            self._transport.base_url, self._route.path, getattr(self._body, "model_name", None)
        )
        if trace is None:
            sending = asyncio.ensure_future(send)
        else:
            with trace.context():  # the request's own span is the load's child
                sending = asyncio.ensure_future(send)
        self._opening = sending
        try:
            await asyncio.wait((sending,))
        except BaseException as exc:  # this task was cancelled: so is the request
            self._fail(exc)
            self._closed = True
            sending.cancel()
            await asyncio.wait((sending,))
            if not sending.cancelled():
                _close_sent(sending)
            raise
        finally:
            self._opening = None
        if sending.cancelled() or self._closed:  # aclose() from another task
            _close_sent(sending)
            self._closed = True
            return
        failure = sending.exception()
        if failure is not None:
            self._closed = True
            raise self._fail(failure)
        response, _ = sending.result()
        self._response = response
        problem = _not_a_stream(response)
        if problem is not None:
            not_a_stream = self._fail(E.StreamError(f"{self._route.path}: {problem}"))
            await self.aclose()
            raise not_a_stream
        transport = self._transport
        self._reader = event_reader(
            response.content,
            str(response.url.origin()),
            transport.max_response_bytes,
            transport.redact,
        )

    async def __anext__(self) -> ModelLoadResponse:
        reader = self._reader
        if reader is None:
            if self._closed:
                raise StopAsyncIteration
            await self._open()
            reader = self._reader
            if reader is None:  # closed by aclose() while opening
                raise StopAsyncIteration
        if self._finished:
            await self._end()
            raise StopAsyncIteration
        failure: E.TabbyError | None = None
        message: MessageEvent | None = None
        try:
            message = await reader.next()
        except E.TabbyError as err:
            failure = err
        except Exception as exc:
            failure = translate_exception(
                exc, self._route, self._timeout, True, self._transport.redact
            )
            if failure is None:
                self._fail(exc)
                await self.aclose()
                raise
        except BaseException as exc:
            self._fail(exc)
            await self.aclose()
            raise
        if self._closed:  # aclose() from another task while this one waited
            raise StopAsyncIteration
        if failure is not None or message is None:
            await self._close()  # the span stays open: polling may yet see the model
            if failure is None:
                return await self._recover(E.StreamError(self._ended_early()))
            if isinstance(failure, E.TabbyConnectionError):
                return await self._recover(E.StreamError(f"{self._ended_early()}: {failure}"))
            raise self._fail(failure)
        try:
            event = event_decoder.decode(message.data)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            event = None  # raised below: msgspec's error must not be the context
        if event is None:
            bad_frame = self._fail(frame_error(message.data, self._transport.redact))
            await self.aclose()
            raise bad_frame
        self.last_event = event
        self._events += 1
        trace = self._trace
        if trace is not None and trace.saw(event.model_type, event.status, event.modules):
            self._trace = None
        if event.model_type == "model" and event.status == "finished":
            self._finished = True
        return event

    async def _recover(self, broken: E.StreamError) -> ModelLoadResponse:
        """After a cut stream: poll for the model if asked to, else raise.

        The server keeps loading after a disconnect, so the load's end can be
        seen by polling ``GET /v1/model``. The load is never sent again. A
        poll that finds the server busy or not done (a 429, 502, 503 or 504,
        a connection error or timeout) does not end the polling; each poll is
        bounded by the time left, so the whole takes about ``reattach_within``.
        """
        if self._reattach is None or self._finished:
            raise self._fail(broken)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reattach_within
        stopped: E.TabbyError | None = None
        while True:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                if await self._reattach(left):
                    return self._reattached()
            except E.TabbyError as err:
                if not _keeps_polling(err):
                    stopped = err
            if stopped is not None:
                problem = f"{broken}; polling GET /v1/model failed: {stopped}"
                raise self._fail(E.StreamError(problem)) from stopped
            if loop.time() + self._poll_interval >= deadline:
                break
            await asyncio.sleep(self._poll_interval)
        raise self._fail(
            E.StreamError(
                f"{broken}; the model did not show up in GET /v1/model within "
                f"{self._reattach_within:g} s"
            )
        ) from broken

    def _reattached(self) -> ModelLoadResponse:
        last = self.last_event
        modules = last.modules if last is not None and last.model_type == "model" else 1
        event = ModelLoadResponse(
            model_type="model", module=modules, modules=modules, status="finished"
        )
        self.reattached = True
        self._finished = True
        self.last_event = event
        trace, self._trace = self._trace, None
        if trace is not None:
            trace.finished(reattached=True)
        return event

    def _fail(self, exc: _Exc) -> _Exc:
        """End the load's span (if traced) with ``exc``; returns ``exc``, to be raised."""
        trace, self._trace = self._trace, None
        if trace is not None:
            trace.fail(exc)
        return exc

    def _ended_early(self) -> str:
        last = self.last_event
        got = f" (last event: {last.model_type} {last.module}/{last.modules})" if last else ""
        none = "" if last else " (no events)"
        return f"the load stream ended before the model finished loading{got}{none}"

    async def _end(self) -> None:
        """After ``finished``: wait briefly for the end of the body, then let go.

        At the end of the body the connection goes back to the pool; a server
        that goes on sending gets its connection closed after at most
        :data:`_DRAIN_SECONDS` or :data:`_DRAIN_BYTES`.
        """
        response = self._response
        if response is not None and not response.content.at_eof():
            # On a timeout or error aclose() closes the connection: it is not at the end.
            with contextlib.suppress(asyncio.TimeoutError, aiohttp.ClientError):
                await asyncio.wait_for(_read_to_end(response.content, _DRAIN_BYTES), _DRAIN_SECONDS)
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP response now (the server's load goes on).

        Safe from any task at any time, also while the stream is opening:
        the opening request is cancelled, and no connection is held once
        this returns. Idempotent; raises no :class:`~tabby_async.TabbyError`.

        Raises:
            asyncio.CancelledError: only when the task calling it is cancelled while
                the opening request winds down.
        """
        await self._close()
        trace, self._trace = self._trace, None
        if trace is not None:  # closed before the model finished
            trace.closed()

    async def _close(self) -> None:
        """Cancel the opening request and close the response; the load's span stays open."""
        self._closed = True
        opening = self._opening
        if opening is not None:
            opening.cancel()
            await asyncio.wait((opening,))
            _close_sent(opening)
        response, self._response = self._response, None
        self._reader = None
        if response is not None:
            if self._finished and response.content.at_eof():
                response.release()
            else:
                response.close()


def _close_sent(sending: asyncio.Task[tuple[aiohttp.ClientResponse, bytes | None]]) -> None:
    """Close the response of a finished opening request, if it got one."""
    if sending.done() and not sending.cancelled() and sending.exception() is None:
        sending.result()[0].close()


def _not_a_stream(response: aiohttp.ClientResponse) -> str | None:
    """Why an answer that is not an error is still not a load stream, or None."""
    if response.status != 200:
        return f"expected 200 with an event stream, got {response.status}"
    if response.content_type != "text/event-stream":
        return f"expected an event stream, got {response.content_type!r}"
    return None


async def follow(stream: LoadStream, on_progress: ProgressCallback | None) -> ModelLoadResponse:
    """Read a load stream to its end, showing every event to ``on_progress``.

    Returns the model's ``finished`` event. A stream that ends without it
    (closed by ``aclose()`` from another task) is a :class:`~tabby_async.StreamError`.
    """
    async with stream:
        async for event in stream:
            if on_progress is not None:
                shown = on_progress(event)
                if inspect.isawaitable(shown):
                    await shown
    last = stream.last_event
    if not stream.finished or last is None:
        raise E.StreamError("the load stream ended before the model finished loading")
    return last
