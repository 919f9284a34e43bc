"""The load progress stream, over aiohttp-sse-client.

``POST /v1/model/load`` answers ``200 text/event-stream`` and sends one
``data:`` frame per progress step (PROTOCOL.md, "The load stream"). Three
things about it shape this module:

* aiohttp-sse-client's ``EventSource`` reconnects, re-sending the request,
  whenever a stream ends. A load must never be sent twice, so our
  ``EventSource`` opens its one request through the SDK's transport and
  refuses every later ``connect()``: the end of the body is the end.
* aiohttp's ``StreamReader`` splits lines on LF only, while SSE allows CR, LF
  and CRLF; :class:`_Lines` feeds the parser lines split by the SSE rules.
* The end of the body without the model's ``finished`` event is a failed
  load (the server died), and an ``{"error": ...}`` frame is a failed load
  with the server's reason.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
from aiohttp_sse_client.client import EventSource

from . import errors as E
from ._timeouts import Timeout
from ._transport import Route, Transport, translate_exception
from .types import ModelLoadResponse

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["LoadStream"]

#: How long to wait for the end of the body after the model's ``finished``
#: (the real server ends it at once); reaching it lets the connection be reused.
_DRAIN_SECONDS = 1.0


class _FrameError(msgspec.Struct, frozen=True):
    message: str = "the server reported a failed load"
    trace: Any = None


class _ErrorFrame(msgspec.Struct, frozen=True):
    error: _FrameError


_event_decoder = msgspec.json.Decoder(ModelLoadResponse)
_error_decoder = msgspec.json.Decoder(_ErrorFrame)


class _EndOfBody(Exception):
    """The response body ended: raised where EventSource would reconnect."""


class _Lines:
    """Lines of an SSE body, split on CRLF, LF or CR, across chunk bounds.

    It is its own iterator, because EventSource restarts ``async for`` over it
    after every event; the buffered lines must survive that.
    """

    __slots__ = ("_content", "_cr", "_lines", "_tail")

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content
        self._lines: collections.deque[bytes] = collections.deque()
        self._tail = b""
        self._cr = False  # the last chunk ended in CR: a LF next is its pair

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> bytes:
        lines = self._lines
        while not lines:
            chunk = await self._content.readany()
            if not chunk:
                raise StopAsyncIteration  # an unfinished last line is dropped
            self.feed(chunk)
        return lines.popleft()

    def feed(self, chunk: bytes) -> None:
        if self._cr:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._tail:
            chunk = self._tail + chunk
            self._tail = b""
        parts = chunk.splitlines(keepends=True)  # bytes: splits on \r\n, \n, \r only
        if parts and not parts[-1].endswith((b"\n", b"\r")):
            self._tail = parts.pop()
        if parts:
            last = parts[-1]
            self._cr = last.endswith(b"\r")
            self._lines.extend(parts)


class _Body:
    """What EventSource needs of a response: status, lines, close."""

    __slots__ = ("content", "response", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.status = response.status
        self.content = _Lines(response.content)

    def close(self) -> None:
        self.response.close()


class _OneShotEventSource(EventSource):  # type: ignore[misc]
    """An EventSource whose only request is the one it was opened with."""

    def __init__(self, session: aiohttp.ClientSession, response: aiohttp.ClientResponse) -> None:
        # A zero reconnection time: after the body ends EventSource sleeps
        # that long before calling connect(), which then ends the stream.
        super().__init__(
            str(response.url),
            session=session,
            reconnection_time=timedelta(0),
            max_connect_retry=0,
        )
        self._response = _Body(response)
        self._origin = str(response.url.origin())
        self._ready_state = 1  # open

    async def connect(self, retry: int = 0) -> None:
        # EventSource calls this to reconnect, i.e. to send the load again.
        raise _EndOfBody


class LoadStream:
    """The progress of one load.

    An async iterator of :class:`~tabby_async.ModelLoadResponse` and an async
    context manager. The request is sent on entering the block (or at the
    first iteration); HTTP errors before the stream raise then. Iteration ends
    after the main model's ``finished`` event; ``draft`` and ``vision``
    components finish on the way. Leaving the block, :meth:`aclose`, an error
    or cancellation closes the HTTP response at once.

    Closing does not stop the load on the server: it goes on loading and the
    model shows in ``models.get()`` when done (PROTOCOL.md).
    """

    def __init__(
        self,
        transport: Transport,
        route: Route,
        body: msgspec.Struct,
        timeout: Timeout,
        *,
        reattach: Callable[[], Awaitable[bool]] | None = None,
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
        self._source: _OneShotEventSource | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._opening = False
        self._finished = False
        self._closed = False
        #: The last event seen, so a caller can tell how far the load got.
        self.last_event: ModelLoadResponse | None = None

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
        return self._closed

    @property
    def finished(self) -> bool:
        """True once the main model's ``finished`` event has arrived."""
        return self._finished

    async def _open(self) -> None:
        if self._closed:
            raise E.ClientStateError("this load stream is closed")
        if self._source is not None:
            return
        if self._opening:
            raise E.ClientStateError("this load stream is being opened by another task")
        self._opening = True
        try:
            response, _ = await self._transport.send(
                self._route, self._body, self._timeout, read=False
            )
        except BaseException:
            self._closed = True
            raise
        finally:
            self._opening = False
        self._response = response
        if response.content_type != "text/event-stream":
            await self.aclose()
            raise E.StreamError(
                f"{self._route.path}: expected an event stream, got {response.content_type!r}"
            )
        self._source = _OneShotEventSource(self._transport.session(), response)

    async def __anext__(self) -> ModelLoadResponse:
        if self._closed:
            raise StopAsyncIteration
        if self._source is None:
            await self._open()
        assert self._source is not None
        try:
            if self._finished:
                await self._drain(self._source)
                raise StopAsyncIteration
            message = await self._source.__anext__()
            event = self._decode(message.data)
        except StopAsyncIteration:
            await self.aclose()
            raise
        except _EndOfBody:
            await self.aclose()
            return await self._recover(E.StreamError(self._ended_early()))
        except E.TabbyError:
            await self.aclose()
            raise
        except UnicodeDecodeError as exc:
            await self.aclose()
            raise E.StreamError(f"the load stream is not valid UTF-8: {exc}") from None
        except BaseException as exc:
            await self.aclose()
            mapped = translate_exception(exc, self._route, self._timeout, got_head=True)
            if isinstance(mapped, E.TabbyConnectionError):
                broken = E.StreamError(f"{self._ended_early()}: {mapped}")
                broken.__cause__ = exc
                return await self._recover(broken)
            if mapped is None:
                raise
            raise mapped from exc
        self.last_event = event
        if event.model_type == "model" and event.status == "finished":
            self._finished = True
        return event

    async def _recover(self, broken: E.StreamError) -> ModelLoadResponse:
        """After a cut stream: poll for the model if asked to, else raise.

        The server keeps loading after a disconnect, so the load's end can be
        seen by polling ``GET /v1/model``. The load is never sent again.
        """
        if self._reattach is None or self._finished:
            raise broken
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reattach_within
        while True:
            try:
                if await self._reattach():
                    break
            except (E.ModelNotLoadedError, E.TabbyConnectionError, E.TabbyTimeoutError):
                pass  # still loading (503), or the server is busy: poll again
            if loop.time() + self._poll_interval > deadline:
                raise E.StreamError(
                    f"{broken}; the model did not show up in GET /v1/model within "
                    f"{self._reattach_within:g} s"
                ) from broken
            await asyncio.sleep(self._poll_interval)
        last = self.last_event
        modules = last.modules if last is not None and last.model_type == "model" else 1
        event = ModelLoadResponse(
            model_type="model", module=modules, modules=modules, status="finished"
        )
        self.reattached = True
        self._finished = True
        self.last_event = event
        return event

    def _decode(self, data: str) -> ModelLoadResponse:
        try:
            return _event_decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        try:
            failure = _error_decoder.decode(data).error
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise E.StreamError(f"unexpected frame in the load stream: {data[:200]!r}") from None
        raise E.LoadFailedError(failure.message, trace=failure.trace)

    def _ended_early(self) -> str:
        last = self.last_event
        got = f" (last event: {last.model_type} {last.module}/{last.modules})" if last else ""
        return f"the load stream ended before the model finished loading{got}"

    async def _drain(self, source: _OneShotEventSource) -> None:
        """Read to the end of the body so the connection can be reused."""
        try:
            while True:
                await asyncio.wait_for(source.__anext__(), _DRAIN_SECONDS)
        except _EndOfBody:
            pass
        except (asyncio.TimeoutError, aiohttp.ClientError, E.TabbyError):
            pass

    async def aclose(self) -> None:
        """Close the HTTP response now (the server's load goes on)."""
        if self._closed and self._response is None:
            return
        self._closed = True
        response, self._response = self._response, None
        self._source = None
        if response is not None:
            if self._finished and response.content.at_eof():
                response.release()
            else:
                response.close()
