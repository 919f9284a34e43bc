"""Running a generation for one request: streamed as SSE, or answered whole.

Both follow the server's handling of its generation jobs:

- a stream sends its head at once, then one event per token chunk, the
  usage chunk (with ``stream_options.include_usage``), ``data: [DONE]``, and
  SSE comment pings on a timer from the head meanwhile;
- a generation cancelled by an explicit unload just stops producing: a stream
  then stays open with pings only (the server's consumer waits for a chunk
  that never comes), a whole answer comes back with what was generated so far,
  ``finish_reason: "stop"`` and no usage;
- a client that goes away (the handler is cancelled) cancels its generation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ._generation import Choice, Generations
from ._inference_wire import (
    FRAME_DONE,
    Kind,
    aggregate_usage,
    data_frame,
    response_body,
    stream_chunk,
    usage_chunk,
    usage_of,
)
from ._pings import Pings
from ._wire import SSE_HEADERS, detail, json_response, ping_frame

__all__ = ["Plan", "answer_whole", "open_stream", "stream_generation"]

_LABELS = {"text": "Completion", "chat": "Chat completion"}


class Plan:
    """What one request generates: its id, model, choices and how to report them."""

    __slots__ = ("card_id", "choices", "delay", "folder", "kind", "request_id", "route", "usage")

    def __init__(
        self,
        kind: Kind,
        request_id: str,
        folder: str,
        card_id: str,
        choices: list[Choice],
        delay: float,
        usage: bool,
    ) -> None:
        self.kind = kind
        self.route = "/v1/completions" if kind == "text" else "/v1/chat/completions"
        self.request_id = request_id
        self.folder = folder
        self.card_id = card_id
        self.choices = choices
        self.delay = delay
        #: ``stream_options.include_usage``: whether usage is reported at all.
        self.usage = usage


def aborted(kind: Kind, request_id: str) -> web.Response:
    """The 503 of a whole answer whose generation failed (e.g. its model went away)."""
    message = (
        f"{_LABELS[kind]} {request_id} aborted. Maybe the model was unloaded? "
        "Please check the server console."
    )
    return json_response(503, detail(message))


def stream_error_message(kind: Kind) -> str:
    """The message of the error event that ends a stream whose generation failed."""
    return f"{_LABELS[kind]} aborted. Please check the server console."


async def open_stream(request: web.BaseRequest) -> web.StreamResponse:
    """An SSE response with its head sent."""
    resp = web.StreamResponse(status=200, headers=SSE_HEADERS)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    return resp


async def stream_generation(
    resp: web.StreamResponse, plan: Plan, books: Generations, ping_interval: float
) -> web.StreamResponse:
    """Generate ``plan`` and stream it on ``resp`` (head already sent) until ``[DONE]``."""
    queue: asyncio.Queue[tuple[Choice, str, dict[str, Any] | None] | None] = asyncio.Queue()
    pings = Pings(lambda: queue.put_nowait(None), ping_interval)
    generation = books.begin(plan.request_id, plan.folder, plan.route, True)
    generation.start(
        plan.choices, plan.card_id, plan.delay, lambda c, t, f: queue.put_nowait((c, t, f))
    )
    remaining = len(plan.choices)
    usage: list[dict[str, Any]] = []
    try:
        while True:
            item = await queue.get()
            if item is None:
                await resp.write(ping_frame())
                continue
            choice, text, finish = item
            chunk = stream_chunk(
                plan.kind,
                plan.request_id,
                choice.index,
                text,
                finish,
                plan.card_id,
                plan.usage and remaining == 1,
            )
            if chunk is not None:
                await resp.write(data_frame(chunk))
            if finish is None:
                continue
            remaining -= 1
            if plan.usage:
                stats = usage_of(finish)
                assert stats is not None
                usage.append(stats)
                if remaining == 0:
                    last = usage_chunk(
                        plan.kind,
                        plan.request_id,
                        choice.index,
                        finish["finish_reason"],
                        aggregate_usage(usage),
                        plan.card_id,
                    )
                    await resp.write(data_frame(last))
            if remaining == 0:
                await resp.write(FRAME_DONE)
                await resp.write_eof()
                return resp
    except ConnectionError:
        return resp  # the client went away; its generation is cancelled below
    finally:
        pings.cancel()
        if generation.outcome is None:
            generation.cancel()


async def answer_whole(plan: Plan, books: Generations) -> web.Response:
    """Generate ``plan`` and answer with the whole completion."""
    generation = books.begin(plan.request_id, plan.folder, plan.route, False)
    generation.start(plan.choices, plan.card_id, plan.delay, lambda c, t, f: None)
    try:
        await generation.wait()
    finally:
        if generation.outcome is None:  # the client went away
            generation.cancel()
    usage: dict[str, Any] | None = None
    if plan.usage:
        stats = [usage_of(c.finish) for c in plan.choices]
        present = [s for s in stats if s is not None]
        if plan.kind == "chat":
            usage = aggregate_usage(present) if present else None
        elif len(stats) == 1:
            usage = stats[0]
        elif len(present) < len(stats):
            # The server's aggregation trips over a choice without stats.
            return aborted(plan.kind, plan.request_id)
        else:
            usage = aggregate_usage(present)
    body = response_body(plan.kind, plan.request_id, plan.choices, plan.card_id, usage)
    return json_response(200, body)
