"""The load stream's frames: progress events, and the server's error frame.

A frame is decoded here, and a frame that is not a progress event becomes
its error: the server's :class:`~tabby_async.LoadFailedError`, or a
:class:`~tabby_async.StreamError` for junk. Either is redacted, since a
server that echoes the request could put the keys in it.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from . import errors as E
from ._mapping import Redactor
from ._sse import MAX_LINE, EventReader
from .types import ModelLoadResponse

__all__ = ["event_decoder", "event_reader", "frame_error"]


class _FrameError(msgspec.Struct, frozen=True):
    message: str = "the server reported a failed load"
    trace: Any = None


class _ErrorFrame(msgspec.Struct, frozen=True):
    error: _FrameError


#: Decodes one progress event.
event_decoder = msgspec.json.Decoder(ModelLoadResponse)
_error_decoder = msgspec.json.Decoder(_ErrorFrame)


def event_reader(
    content: aiohttp.StreamReader, origin: str, max_response_bytes: int | None, redact: Redactor
) -> EventReader:
    """The reader of a load stream's body: each event within the client's caps.

    An event is at most 1 MiB, or ``max_response_bytes`` when that is
    smaller; ``None`` lifts both.
    """
    limit = None if max_response_bytes is None else min(MAX_LINE, max_response_bytes)
    return EventReader(content, origin, limit, redact)


def frame_error(data: str, redact: Redactor) -> E.TabbyError:
    """The error for a frame that is not a progress event: the server's failure, or junk."""
    try:
        failure = _error_decoder.decode(data).error
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        shown = redact.text(data)[:200]
        return E.StreamError(f"unexpected frame in the load stream: {shown!r}")
    return redact.error(E.LoadFailedError(failure.message, trace=failure.trace))
