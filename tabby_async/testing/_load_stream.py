"""The load route's answer: an SSE stream of the load job's frames, with timed pings.

The head goes out at once, even when the load waits behind another; then one
frame per HTTP chunk as the job emits them, and SSE comment pings on a fixed
timer from the head. A client that goes away only stops the stream: the job
carries on. The stream faults (``drop_stream``, ``bom``, ``sse_retry``,
``frames_after_finished``) act here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ._fault_replies import cut_stream, send_trailing, stream_preamble
from ._faults import STAGE_STREAM, STAGE_TRAILING, Fault, FaultInjector
from ._load import LoadJobs
from ._models import EmulatedModel
from ._pings import Pings
from ._wire import SSE_HEADERS, ping_frame

__all__ = ["stream_load"]

# Queue items of a load stream: frame bytes, ``_PING`` (send a ping now) or ``None``
# (the load job ended: finish the stream normally).
_PING = b""


async def stream_load(
    request: web.BaseRequest,
    jobs: LoadJobs,
    model: EmulatedModel,
    fields: dict[str, Any],
    *,
    ping_interval: float,
    faults: FaultInjector,
) -> web.StreamResponse:
    """Queue the load of ``model`` and stream its frames to the client."""
    resp = web.StreamResponse(status=200, headers=SSE_HEADERS)
    resp.enable_chunked_encoding()
    await resp.prepare(request)

    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    job = jobs.start(model, fields, queue.put_nowait)
    job.add_done_callback(lambda _task: queue.put_nowait(None))

    pings = Pings(lambda: queue.put_nowait(_PING), ping_interval)

    drop: Fault | None = None
    trailing: Fault | None = None
    preamble = b""
    if faults:
        drop = faults.take(STAGE_STREAM, "POST", request.path)
        trailing = faults.take(STAGE_TRAILING, "POST", request.path)
        preamble = stream_preamble(faults, request.path)
    sent = 0
    last = b""
    try:
        if preamble:
            await resp.write(preamble)
        if drop is not None and drop.after_events == 0:
            await cut_stream(request, resp, job, drop)
            return resp
        while True:
            item = await queue.get()
            if item is None:
                break
            if not item:  # _PING
                await resp.write(ping_frame())
                continue
            await resp.write(item)
            last = item
            sent += 1
            if drop is not None and sent >= drop.after_events:
                await cut_stream(request, resp, job, drop)
                return resp
        if trailing is not None and last:
            await send_trailing(resp, last, trailing)
        await resp.write_eof()
    except ConnectionError:
        pass  # The client went away; the load carries on in the background.
    finally:
        pings.cancel()
    return resp
