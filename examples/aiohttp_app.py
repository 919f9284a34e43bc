"""An aiohttp.web app that manages a TabbyAPI server through one shared client.

    TABBY_URL=... TABBY_ADMIN_KEY=... python examples/aiohttp_app.py

The same two routes as ``fastapi_app.py``:

* ``GET /models``: the model names and the loaded one.
* ``POST /models/load`` with ``{"model_name": ...}``: the load's progress as
  server-sent events (``progress`` per step, then ``done`` or ``error``);
  errors before the stream starts are plain HTTP errors.

The client lives in a ``cleanup_ctx`` generator: created at startup, closed
at shutdown, and shared by every request through a typed ``web.AppKey``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import msgspec
from aiohttp import web

from tabby_async import AsyncTabbyClient, ModelLoadRequest, ModelNotLoadedError, TabbyError

TABBY = web.AppKey("tabby", AsyncTabbyClient)

#: HTTP status for a TabbyError that happens before the stream starts.
STATUS_FOR_CODE = {
    "not_found": 404,
    "invalid_input": 422,
    "invalid_request": 400,
    "validation_error": 422,
    "connection_error": 502,
    "timeout": 504,
}


async def tabby_client(app: web.Application) -> AsyncIterator[None]:
    # TABBY_URL, TABBY_API_KEY, TABBY_ADMIN_KEY from the environment.
    client = AsyncTabbyClient()
    async with client:
        app[TABBY] = client
        yield


def error_response(err: TabbyError) -> web.Response:
    status = STATUS_FOR_CODE.get(err.code, 502)
    return web.json_response({"detail": err.message, "code": err.code}, status=status)


def sse(event: str, data: object) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


async def list_models(request: web.Request) -> web.Response:
    client = request.app[TABBY]
    try:
        listing = await client.models.list()
        try:
            loaded: str | None = (await client.models.get()).id
        except ModelNotLoadedError:
            loaded = None
    except TabbyError as err:
        return error_response(err)
    return web.json_response({"models": listing.ids, "loaded": loaded})


async def load_model(request: web.Request) -> web.StreamResponse:
    client = request.app[TABBY]
    try:
        body = await request.json()
        load = ModelLoadRequest(model_name=body["model_name"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"detail": 'expected {"model_name": NAME}'}, status=422)
    try:
        async with client.models.load_stream(load) as stream:  # errors here: before the head
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
            )
            await response.prepare(request)
            try:
                async for event in stream:
                    await response.write(sse("progress", event))
            except TabbyError as err:
                await response.write(sse("error", {"code": err.code, "message": err.message}))
            else:
                await response.write(sse("done", {"model_name": load.model_name}))
            await response.write_eof()
            return response
    except TabbyError as err:
        return error_response(err)


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(tabby_client)
    app.router.add_get("/models", list_models)
    app.router.add_post("/models/load", load_model)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
