"""Reading an answer's body with a bound on its size.

A hostile or broken server can send a body without end, or a small gzip
body that inflates without end; :func:`read_body` stops either at the
client's ``max_response_bytes``, counted after decompression.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import hdrs

from . import errors as E
from ._mapping import size_text
from ._route import Route

__all__ = ["CONTENT_ENCODING", "CONTENT_LENGTH", "read_body", "too_large"]

#: A body with this header is compressed: its Content-Length says nothing of
#: the size after decompression. (aiohttp's header names are ``istr``: a
#: lookup in the answer's case-insensitive headers then skips folding the key.)
CONTENT_ENCODING = hdrs.CONTENT_ENCODING
#: A plain body's size as the server announced it.
CONTENT_LENGTH = hdrs.CONTENT_LENGTH


async def read_body(
    response: aiohttp.ClientResponse, limit: int | None, route: Route[Any]
) -> bytes:
    """The whole body of ``response``, at most ``limit`` bytes after decompression.

    Read chunk by chunk (aiohttp inflates a compressed body in bounded
    pieces), so that no more than about ``limit`` bytes are ever held; a
    plain body whose ``Content-Length`` says it is over is refused unread.

    Raises:
        ResponseTooLargeError: the body is larger than ``limit``; the caller
            closes the response.
    """
    if limit is None:
        return await response.read()
    length = response.content_length
    if length is not None and length > limit and CONTENT_ENCODING not in response.headers:
        raise too_large(route, response.status, limit)
    content = response.content
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            raise too_large(route, response.status, limit)
        parts.append(chunk)


def too_large(route: Route[Any], status: int, limit: int) -> E.ResponseTooLargeError:
    """The error for an answer of ``route`` over the ``limit`` bytes cap."""
    return E.ResponseTooLargeError(
        f"{route.method} {route.path}: the server's {status} answer is larger than the "
        f"{size_text(limit)} cap (max_response_bytes)",
        limit=limit,
    )
