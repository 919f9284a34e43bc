"""Server-sent events: the bytes of one response body, turned into events.

A load must never be sent twice, so the SDK reads the load stream's body
itself instead of iterating aiohttp-sse-client's ``EventSource``. That
iterator reconnects, re-sending the request, whenever a body ends, and
sleeps twice the server's ``retry:`` value first: a ``retry: 20000`` line
cost 40 s before the end of the stream was even seen, and a huge value
raised an ``OverflowError``. Of aiohttp-sse-client only the event type,
``MessageEvent``, is used (a test checks that it still has the fields used
here).

The parsing follows the SSE rules of the HTML standard:

* one UTF-8 byte order mark at the very start of the body is dropped;
* a line ends in CRLF, LF or CR; a CR that ends one chunk and the LF that
  starts the next are one line end;
* ``data:`` lines are joined with LF into the event's data; a blank line
  ends the event; an event without data is no event;
* comments (lines starting with ``:``), and the ``event``, ``id`` and
  ``retry`` fields are ignored: a load stream has no named events, and a
  stream that is never re-requested has no use for ids or retry times;
* whatever follows the last blank line when the body ends is dropped.

A line, or an event's data, longer than the cap (:data:`MAX_LINE` bytes, or
the client's ``max_response_bytes`` if smaller) is a
:class:`~tabby_async.ResponseTooLargeError` (a
:class:`~tabby_async.StreamError`): a broken or hostile server cannot make
the client buffer without bound, while the stream as a whole may run as long
as the load does. An unfinished line is kept as a list of pieces and joined
once, so a long line costs time linear in its length. What an error quotes
from the body is redacted first.
"""

from __future__ import annotations

import collections
import sys
from typing import Protocol

from aiohttp_sse_client.client import MessageEvent

from ._mapping import NO_SECRETS, Redactor, size_text
from .errors import ResponseTooLargeError, StreamError

__all__ = ["MAX_LINE", "EventParser", "EventReader", "MessageEvent"]

#: The longest line (and the largest event data) accepted, in bytes. The real
#: server's frames are under 200 bytes.
MAX_LINE = 1 << 20

_BOM = b"\xef\xbb\xbf"
_FRAME_HEAD = b"data: "
_FRAME_END = b"\r\n\r\n"


class EventParser:
    """The SSE rules over chunks of bytes, with no I/O.

    :meth:`feed` takes the body's chunks in order; complete events collect in
    :attr:`events`. A problem (a line over the cap, data that is not UTF-8)
    is kept in :attr:`error` after the events before it, and the rest of the
    body is ignored.
    """

    __slots__ = (
        "_cr",
        "_data",
        "_data_size",
        "_head",
        "_max",
        "_origin",
        "_parts",
        "_redact",
        "_size",
        "error",
        "events",
        "max_line",
    )

    def __init__(
        self, origin: str = "", max_line: int | None = MAX_LINE, redact: Redactor = NO_SECRETS
    ) -> None:
        #: Complete events, oldest first; the reader pops them.
        self.events: collections.deque[MessageEvent] = collections.deque()
        #: Set once the body cannot be parsed further.
        self.error: StreamError | None = None
        #: The longest line and the largest event data, in bytes; None: no bound.
        self.max_line = max_line
        self._max = sys.maxsize if max_line is None else max_line
        self._redact = redact
        self._origin = origin
        self._parts: list[bytes] = []  # the unfinished line, in pieces
        self._size = 0  # bytes in _parts
        self._data: list[bytes] = []  # the current event's data lines
        self._data_size = 0
        self._cr = False  # the last chunk ended in CR: an LF next belongs to it
        self._head: bytes | None = b""  # start of the body until the BOM is ruled out

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body."""
        if not chunk or self.error is not None:
            return
        head = self._head
        if head is not None:
            chunk = head + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._head = chunk  # maybe a BOM cut short: wait for more
                return
            self._head = None
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._cr:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not chunk:
            return
        # The real server's framing: one whole `data:` frame per chunk.
        if (
            not self._parts
            and not self._data
            and chunk[:6] == _FRAME_HEAD
            and chunk[-4:] == _FRAME_END
            and len(chunk) <= self._max
        ):
            payload = chunk[6:-4]
            if b"\n" not in payload and b"\r" not in payload:
                self._data.append(payload)
                self._dispatch()
                return
        lines = chunk.splitlines(keepends=True)  # bytes split on CRLF, LF, CR only
        tail = lines[-1]
        if tail[-1:] in (b"\n", b"\r"):
            tail = b""
            self._cr = chunk[-1:] == b"\r"
        else:
            lines.pop()
        parts = self._parts
        for line in lines:
            if parts:
                parts.append(line)
                line = b"".join(parts)
                parts.clear()
                self._size = 0
            self._line(line.rstrip(b"\r\n"))
            if self.error is not None:
                return
        if tail:
            parts.append(tail)
            self._size += len(tail)
            if self._size > self._max:
                self._too_large("an SSE line is longer")

    def _line(self, line: bytes) -> None:
        if len(line) > self._max:
            self._too_large("an SSE line is longer")
        elif not line:
            self._dispatch()
        elif line[:5] == b"data:":
            value = line[6:] if line[5:6] == b" " else line[5:]
            self._add_data(value)
        elif line == b"data":
            self._add_data(b"")
        # Anything else is a comment, a field we ignore, or an unknown field.

    def _add_data(self, value: bytes) -> None:
        self._data.append(value)
        self._data_size += len(value) + 1
        if self._data_size > self._max:
            self._too_large("an SSE event is larger")

    def _dispatch(self) -> None:
        data = self._data
        if not data:
            return
        raw = data[0] if len(data) == 1 else b"\n".join(data)
        data.clear()
        self._data_size = 0
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            text = None
        if text is None:
            shown = self._redact.text(raw.decode("utf-8", "backslashreplace"))[:80]
            self._fail(StreamError(f"an SSE event is not valid UTF-8: {shown!r}"))
            return
        self.events.append(
            MessageEvent(type=None, message="", data=text, origin=self._origin, last_event_id="")
        )

    def _too_large(self, what: str) -> None:
        self._fail(
            ResponseTooLargeError(f"{what} than the {size_text(self._max)} cap", limit=self._max)
        )

    def _fail(self, error: StreamError) -> None:
        self.error = error
        self._parts.clear()
        self._data.clear()


class _Content(Protocol):
    async def readany(self) -> bytes: ...


class EventReader:
    """The events of one response body, read as they arrive.

    It reads the body it was given and nothing else: it never sends or
    re-sends a request, whatever the body says.
    """

    __slots__ = ("_content", "_events", "_parser")

    def __init__(
        self,
        content: _Content,
        origin: str = "",
        max_line: int | None = MAX_LINE,
        redact: Redactor = NO_SECRETS,
    ) -> None:
        self._content = content
        self._parser = EventParser(origin, max_line, redact)
        self._events = self._parser.events

    async def next(self) -> MessageEvent | None:
        """The next event; ``None`` at the end of the body.

        Raises :class:`~tabby_async.StreamError` when the body breaks the
        rules above (after the events that came before the problem), and
        whatever reading the body raises.
        """
        events = self._events
        parser = self._parser
        while not events:
            if parser.error is not None:
                raise parser.error
            chunk = await self._content.readany()
            if not chunk:
                return None
            parser.feed(chunk)
        return events.popleft()
