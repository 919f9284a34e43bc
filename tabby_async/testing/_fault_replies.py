"""What an armed fault puts on the wire: the misbehaviour itself, once a fault has fired.

The injector (:class:`~tabby_async.testing.FaultInjector`) decides *whether* a
fault fires for a request; the functions here carry it out: a whole answer
instead of the route's, a broken body after it, or a disturbed load stream.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ._faults import STAGE_BOM, STAGE_RETRY, Fault, FaultInjector
from ._wire import BOM, FRAME_END, SSE_HEADERS, detail, json_response, reason_phrase

__all__ = ["answer_instead", "break_body", "cut_stream", "send_trailing", "stream_preamble"]

_HTML: dict[str, str] = {"Content-Type": "text/html", "Server": "nginx/1.24.0"}
# nginx's own wording where it differs from the standard reason phrase.
_NGINX_PHRASES = {503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}


def answer_instead(request: web.BaseRequest, fault: Fault) -> web.StreamResponse:
    """The answer of a ``fail_next``, ``proxy_error``, ``not_http`` or ``empty_stream``."""
    if fault.kind == "proxy_error":
        return web.Response(status=fault.status, body=_proxy_page(fault.status), headers=_HTML)
    if fault.kind == "empty_stream":
        return web.Response(status=fault.status, headers=SSE_HEADERS)
    if fault.kind == "not_http":
        # Raw bytes with no status line, then the connection goes: aiohttp's
        # own answer below never reaches the client.
        transport = request.transport
        if transport is not None:
            transport.write(fault.body or b"")
            transport.close()
        return web.Response(status=500)
    body = fault.body if fault.body is not None else detail(fault.detail)
    return json_response(fault.status, body, fault.headers)


def _proxy_page(status: int) -> bytes:
    """The error page nginx sends for ``status`` (e.g. when the upstream is down)."""
    title = f"{status} {_NGINX_PHRASES.get(status) or reason_phrase(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


async def break_body(
    request: web.BaseRequest, resp: web.Response, fault: Fault
) -> web.StreamResponse:
    """``malformed_json``, ``slow_body`` or ``reset_mid_body`` applied to a JSON answer."""
    raw = resp.body
    body = bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else b""
    headers = dict(resp.headers)
    if fault.kind == "malformed_json":
        cut = body[: max(1, len(body) // 2)]
        if len(cut) >= len(body):
            cut = b"{"
        return json_response(200, cut)
    stream = web.StreamResponse(status=resp.status, headers=headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    if fault.kind == "slow_body":
        size = fault.chunk_size
        for offset in range(0, len(body), size):
            await asyncio.sleep(fault.seconds)
            await stream.write(body[offset : offset + size])
        await stream.write_eof()
        return stream
    # reset_mid_body: half the body, then the connection goes away.
    half = body[: len(body) // 2]
    if half:
        await stream.write(half)
    transport = request.transport
    if transport is not None:
        transport.close()
    return stream


def stream_preamble(faults: FaultInjector, path: str) -> bytes:
    """What the ``bom`` and ``sse_retry`` faults put before a load stream's first frame."""
    out = b""
    if faults.take(STAGE_BOM, "POST", path) is not None:
        out += BOM
    retry = faults.take(STAGE_RETRY, "POST", path)
    if retry is not None:
        out += b"retry: " + retry.detail.encode() + FRAME_END
    return out


async def send_trailing(resp: web.StreamResponse, frame: bytes, fault: Fault) -> None:
    """``frames_after_finished``: more copies of the last frame instead of the end."""
    sent = 0
    while fault.count is None or sent < fault.count:
        await asyncio.sleep(fault.seconds)
        await resp.write(frame)
        sent += 1


async def cut_stream(
    request: web.BaseRequest, resp: web.StreamResponse, job: asyncio.Task[None], fault: Fault
) -> None:
    """``drop_stream``: close the connection without a terminating chunk (the server
    "died"), or with ``clean_end`` end the body in good order."""
    if fault.stop_load:
        job.cancel()
    if fault.clean_end:
        await resp.write_eof()
        return
    transport = request.transport
    if transport is not None:
        transport.close()
