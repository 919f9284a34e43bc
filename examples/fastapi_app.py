"""A FastAPI app that manages a TabbyAPI server through one shared client.

    TABBY_URL=... TABBY_ADMIN_KEY=... uvicorn examples.fastapi_app:app --port 8000
    # or: python examples/fastapi_app.py

* The app owns one ``AsyncTabbyClient`` for its whole life (the lifespan):
  one connection pool, closed at shutdown. Handlers get it from
  ``app.state``.
* ``GET /models`` lists the models and says which one is loaded.
* ``POST /models/load`` starts a load and streams its progress to the caller
  as server-sent events: ``event: progress`` per step, then ``event: done``,
  or ``event: error``. Errors found before the stream starts (unknown model,
  bad key, server down) are ordinary HTTP errors instead. If the caller goes
  away, the Tabby stream is closed (the server finishes the load anyway).

This example has no auth of its own: put it behind yours before exposing it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import msgspec
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from tabby_async import (
    AsyncTabbyClient,
    DraftModelLoadRequest,
    ModelLoadRequest,
    ModelNotLoadedError,
    TabbyError,
)

#: HTTP status for a TabbyError that happens before the stream starts.
STATUS_FOR_CODE = {
    "not_found": 404,
    "invalid_input": 422,
    "invalid_request": 400,
    "validation_error": 422,
    "connection_error": 502,
    "timeout": 504,
}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # TABBY_URL, TABBY_API_KEY, TABBY_ADMIN_KEY from the environment.
    client = AsyncTabbyClient()
    async with client:
        app.state.tabby = client
        yield


app = FastAPI(title="tabby_async FastAPI example", lifespan=lifespan)


def tabby(request: Request) -> AsyncTabbyClient:
    client: AsyncTabbyClient = request.app.state.tabby
    return client


class LoadBody(BaseModel):
    model_name: str
    max_seq_len: int | None = None
    cache_mode: str | None = None
    draft_model_name: str | None = None


def sse(event: str, data: object) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


@app.get("/models")
async def list_models(request: Request) -> dict[str, object]:
    client = tabby(request)
    try:
        listing = await client.models.list()
        try:
            loaded: str | None = (await client.models.get()).id
        except ModelNotLoadedError:
            loaded = None
    except TabbyError as err:
        raise HTTPException(STATUS_FOR_CODE.get(err.code, 502), err.message) from None
    return {"models": listing.ids, "loaded": loaded}


@app.post("/models/load")
async def load_model(body: LoadBody, request: Request) -> StreamingResponse:
    client = tabby(request)
    draft = (
        DraftModelLoadRequest(draft_model_name=body.draft_model_name)
        if body.draft_model_name
        else None
    )
    stack = contextlib.AsyncExitStack()
    try:
        load = ModelLoadRequest(
            model_name=body.model_name,
            max_seq_len=body.max_seq_len,
            cache_mode=body.cache_mode,
            draft_model=draft,
        )
        # Enter the stream here, so errors before it starts become HTTP errors.
        stream = await stack.enter_async_context(client.models.load_stream(load))
    except TabbyError as err:
        raise HTTPException(STATUS_FOR_CODE.get(err.code, 502), err.message) from None

    async def events() -> AsyncIterator[bytes]:
        async with stack:  # closes the Tabby stream however this body ends
            try:
                async for event in stream:
                    yield sse("progress", event)
            except TabbyError as err:
                yield sse("error", {"code": err.code, "message": err.message})
                return
            yield sse("done", {"model_name": body.model_name})

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # In case the body never starts (the caller left at once): close anyway.
        background=BackgroundTask(stack.aclose),
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
