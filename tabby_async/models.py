"""AsyncModelsService: the Models API of one TabbyAPI server.

Each method is a few lines over the client's one request path. Methods that
take a request accept either the request Struct or its fields as keyword
arguments (or both: keywords override the Struct's fields)::

    await client.models.load(ModelLoadRequest(model_name="m"), max_seq_len=4096)
    await client.models.load(model_name="m", max_seq_len=4096)

Every method takes ``timeout=`` (seconds or a :class:`~tabby_async.Timeout`)
and ``max_retries=`` (read-only calls only retry; see the README's
"Guarantees").
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from . import _ensure
from . import _routes as R
from ._desired import same_model
from ._stream import LoadStream
from ._timeouts import Timeout, TimeoutLike, resolve_timeout
from .errors import InvalidInputError, StreamError
from .types import (
    DownloadRequest,
    DownloadResponse,
    DraftModelLoadRequest,
    EmbeddingModelLoadRequest,
    ModelCard,
    ModelList,
    ModelLoadRequest,
    ModelLoadResponse,
    ModelPropsResponse,
)

if TYPE_CHECKING:
    from ._client import AsyncTabbyClient

__all__ = ["AsyncModelsService", "ProgressCallback"]

#: Called with each load event; may be a plain function or a coroutine function.
ProgressCallback = Callable[[ModelLoadResponse], Awaitable[None] | None]

Req = TypeVar("Req", ModelLoadRequest, EmbeddingModelLoadRequest, DownloadRequest)

_model_list = msgspec.json.Decoder(ModelList)
_model_card = msgspec.json.Decoder(ModelCard)
_props = msgspec.json.Decoder(ModelPropsResponse)
_download = msgspec.json.Decoder(DownloadResponse)
_load_response = msgspec.json.Decoder(ModelLoadResponse)


def _build(cls: type[Req], request: Req | None, fields: dict[str, Any]) -> Req:
    """The request from a Struct and/or keyword fields, checked before sending."""
    if request is not None and not isinstance(request, cls):
        raise InvalidInputError(
            "request", f"must be a {cls.__name__}, not {type(request).__name__}"
        )
    for name in fields:
        if name not in cls.__struct_fields__:
            raise InvalidInputError(name, f"is not a field of {cls.__name__}")
    draft = fields.get("draft_model")
    if isinstance(draft, dict):
        fields["draft_model"] = _build(DraftModelLoadRequest, None, dict(draft))  # type: ignore[type-var]
    if request is None:
        try:
            return cls(**fields)
        except TypeError as exc:  # a required field is missing
            raise InvalidInputError(cls.__name__, str(exc)) from None
    if not fields:
        return request
    # Rebuild rather than structs.replace, so that the checks run again.
    merged = {name: getattr(request, name) for name in cls.__struct_fields__}
    merged.update(fields)
    return cls(**merged)


class AsyncModelsService:
    """The model-management calls of one server: ``client.models``."""

    def __init__(self, client: AsyncTabbyClient) -> None:
        self._client = client
        self._transport = client._transport

    def _timeout(
        self, value: TimeoutLike, *, stream: bool = False, silent: bool = False
    ) -> Timeout:
        """The call's timeout: the control default, or the stream default.

        ``silent`` calls (download, embedding load) send nothing until they
        are done, so the stream default's read (idle) bound would cut them
        off, and a cut download is cancelled on the server: they get no read
        bound unless the caller sets one.
        """
        client = self._client
        if not stream:
            return resolve_timeout(value, client.timeout)
        default = client.stream_timeout
        if silent:
            default = Timeout(total=default.total, connect=default.connect, read=None)
        return resolve_timeout(value, default)

    async def list(
        self, *, timeout: TimeoutLike = None, max_retries: int | None = None
    ) -> ModelList:
        """Every model folder on the server (``GET /v1/model/list``)."""
        return await self._transport.request(
            R.LIST, _model_list, None, self._timeout(timeout), max_retries
        )

    async def get(
        self, *, timeout: TimeoutLike = None, max_retries: int | None = None
    ) -> ModelCard:
        """The loaded model with its ``parameters`` (``GET /v1/model``).

        Raises :class:`~tabby_async.ModelNotLoadedError` when none is loaded,
        and also while a load is running (the server says so then too).
        """
        return await self._transport.request(
            R.GET, _model_card, None, self._timeout(timeout), max_retries
        )

    async def get_props(
        self, *, timeout: TimeoutLike = None, max_retries: int | None = None
    ) -> ModelPropsResponse:
        """Slots, chat template and context length of the loaded model (``GET /props``)."""
        return await self._transport.request(
            R.PROPS, _props, None, self._timeout(timeout), max_retries
        )

    async def list_draft(
        self, *, timeout: TimeoutLike = None, max_retries: int | None = None
    ) -> ModelList:
        """The draft model folders (``GET /v1/model/draft/list``)."""
        return await self._transport.request(
            R.LIST_DRAFT, _model_list, None, self._timeout(timeout), max_retries
        )

    def load_stream(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        timeout: TimeoutLike = None,
        reattach_within: float | None = None,
        **fields: Any,
    ) -> LoadStream:
        """Start a load and follow its progress (``POST /v1/model/load``).

        Use it as ``async with client.models.load_stream(req) as stream:
        async for event in stream: ...``. The request is sent once, on
        entering the block; it is never re-sent. The default timeout has no
        total bound, only a read (idle) bound well above the 15 s pings.

        ``reattach_within`` (seconds, opt-in): if the connection drops
        mid-load, poll ``GET /v1/model`` until the model shows up (the server
        keeps loading after a disconnect) or the time runs out, and end with a
        ``finished`` event (``stream.reattached`` is then True). The load is
        never sent again. A nested name (``org/model/4.0bpw``) is found by its
        folder's name (``4.0bpw``), the card id the server gives it. A poll
        answered 429, 502, 503 or 504 (a busy proxy, or "no model loaded"
        while the load runs), a connection error or a timeout does not end the
        polling; each poll is bounded by the time left, so the window is kept.
        """
        body = _build(ModelLoadRequest, request, fields)
        if reattach_within is None:
            return LoadStream(self._transport, R.LOAD, body, self._timeout(timeout, stream=True))
        if isinstance(reattach_within, bool) or not isinstance(reattach_within, (int, float)):
            raise InvalidInputError("reattach_within", "must be seconds")
        if reattach_within <= 0:
            raise InvalidInputError("reattach_within", f"must be > 0, got {reattach_within}")
        name = body.model_name

        async def model_is_loaded(left: float) -> bool:
            # One poll, bounded by what is left of the window. A nested name
            # (org/model/4.0bpw) shows as the card id of its folder (4.0bpw).
            card = await self.get(max_retries=0, timeout=left)
            return same_model(name, card.id)

        return LoadStream(
            self._transport,
            R.LOAD,
            body,
            self._timeout(timeout, stream=True),
            reattach=model_is_loaded,
            reattach_within=float(reattach_within),
        )

    async def load(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: TimeoutLike = None,
        reattach_within: float | None = None,
        **fields: Any,
    ) -> ModelLoadResponse:
        """Load a model and wait for it; returns the model's ``finished`` event.

        ``on_progress`` sees every event, draft and vision components too.
        If the server already has this model loaded it does nothing and
        ignores new parameters (use ``unload`` first to change them).
        ``reattach_within`` is as for :meth:`load_stream`.
        """
        stream = self.load_stream(
            request, timeout=timeout, reattach_within=reattach_within, **fields
        )
        async with stream:
            async for event in stream:
                if on_progress is not None:
                    result = on_progress(event)
                    if inspect.isawaitable(result):
                        await result
        if not stream.finished or stream.last_event is None:  # pragma: no cover - stream raises
            raise StreamError("the load stream ended before the model finished loading")
        return stream.last_event

    async def unload(self, *, timeout: TimeoutLike = None) -> None:
        """Unload the model (``POST /v1/model/unload``)."""
        await self._transport.send(R.UNLOAD, None, self._timeout(timeout), read=True)

    async def download(
        self,
        request: DownloadRequest | None = None,
        /,
        *,
        timeout: TimeoutLike = None,
        **fields: Any,
    ) -> DownloadResponse:
        """Have the server download a Hugging Face repo (``POST /v1/download``).

        One long request with no progress; cancelling it cancels the download
        on the server. ``timeout=`` here is the SDK's; the server-side
        ``DownloadRequest.timeout`` field goes in the request Struct.
        """
        body = _build(DownloadRequest, request, fields)
        return await self._transport.request(
            R.DOWNLOAD, _download, body, self._timeout(timeout, stream=True, silent=True)
        )

    async def list_embedding(
        self, *, timeout: TimeoutLike = None, max_retries: int | None = None
    ) -> ModelList:
        """The embedding model folders (``GET /v1/model/embedding/list``)."""
        return await self._transport.request(
            R.LIST_EMBEDDING, _model_list, None, self._timeout(timeout), max_retries
        )

    async def get_embedding(
        self, *, timeout: TimeoutLike = None, max_retries: int | None = None
    ) -> ModelCard:
        """The loaded embedding model (``GET /v1/model/embedding``)."""
        return await self._transport.request(
            R.GET_EMBEDDING, _model_card, None, self._timeout(timeout), max_retries
        )

    async def load_embedding(
        self,
        request: EmbeddingModelLoadRequest | None = None,
        /,
        *,
        timeout: TimeoutLike = None,
        **fields: Any,
    ) -> ModelLoadResponse:
        """Load an embedding model (``POST /v1/model/embedding/load``; plain JSON)."""
        body = _build(EmbeddingModelLoadRequest, request, fields)
        return await self._transport.request(
            R.LOAD_EMBEDDING,
            _load_response,
            body,
            self._timeout(timeout, stream=True, silent=True),
        )

    async def unload_embedding(self, *, timeout: TimeoutLike = None) -> None:
        """Unload the embedding model (``POST /v1/model/embedding/unload``)."""
        await self._transport.send(R.UNLOAD_EMBEDDING, None, self._timeout(timeout), read=True)

    # --- desired state: the logic lives in _ensure.py ---------------------------

    async def plan_load(
        self, request: ModelLoadRequest | None = None, /, **fields: Any
    ) -> _ensure.LoadPlan:
        """What :meth:`ensure_loaded` would do (none, load or reload) and why; loads nothing.

        The plan's ``unchecked`` names the fields the request sets that the
        server does not report back, so that cannot be compared.
        """
        return await _ensure.plan_load(self, _build(ModelLoadRequest, request, fields))

    async def ensure_loaded(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: TimeoutLike = None,
        verify: bool = True,
        **fields: Any,
    ) -> _ensure.EnsureResult:
        """Load only if the loaded model differs from the request (unloading first if needed).

        The server ignores new parameters for an already loaded model; this
        compares them first, on the fields the loaded card reports back
        (:data:`~tabby_async.FIELD_RULES`). Fields it never reports (a draft
        model, rope values, the GPU split, the backend, ...) are never a
        difference: they are listed in the result's ``unchecked``.
        """
        body = _build(ModelLoadRequest, request, fields)
        return await _ensure.ensure_loaded(
            self, body, on_progress=on_progress, timeout=timeout, verify=verify
        )
