"""AsyncModelsService: the Models API of one TabbyAPI server (``client.models``).

Methods that take a request accept either the request Struct or its fields as
keyword arguments (or both: keywords override the Struct's)::

    await client.models.load(ModelLoadRequest(model_name="m"), max_seq_len=4096)
    await client.models.load(model_name="m", max_seq_len=4096)

Every method takes ``timeout=``: the client's default when not given, seconds for the
whole call, a :class:`~tabby_async.Timeout`, or ``None`` for no bound. Read-only methods
also take ``max_retries=`` (the client's by default); writes are never retried.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from . import _model_ensure
from . import _routes as R
from ._checks import check_seconds
from ._defaults import USE_CLIENT_DEFAULT, ClientDefaults, RetriesArg, TimeoutArg
from ._log import log_extra, logger
from ._model_plan import ModelPlan, ModelResult, identity
from ._resource import Resource, build_request
from ._stream import LoadStream, ProgressCallback, follow
from ._transport import Transport
from .errors import ClientStateError, ModelNotLoadedError, NotFoundError, StreamError
from .types import (
    DownloadRequest,
    DownloadResponse,
    EmbeddingModelLoadRequest,
    ModelCard,
    ModelList,
    ModelLoadRequest,
    ModelLoadResponse,
    ModelPropsResponse,
)

if TYPE_CHECKING:
    from typing import Unpack

    from .types import DownloadFields, EmbeddingModelLoadFields, ModelLoadFields

__all__ = ["AsyncModelsService", "ProgressCallback"]


_DEFAULT = USE_CLIENT_DEFAULT


def _sets_parameters(request: ModelLoadRequest) -> bool:
    """True when a load request sets anything besides the model's name."""
    return any(
        getattr(request, name) is not None
        for name in request.__struct_fields__
        if name != "model_name"
    )


def _not_loaded(missing_ok: bool) -> tuple[type[ModelNotLoadedError], ...]:
    """What an unload may suppress: "no model loaded", when that is fine."""
    return (ModelNotLoadedError,) if missing_ok else ()


class AsyncModelsService(Resource):
    """The model-management calls of one server: ``client.models``.

    Each method's ``Raises`` names the errors particular to it; the errors any
    call may raise are listed on :class:`~tabby_async.AsyncTabbyClient`.
    """

    __slots__ = ("_memory",)
    _memory: _model_ensure.EnsureMemory

    def __init__(
        self,
        transport: Transport,
        defaults: ClientDefaults,
        shared: AsyncModelsService | None = None,
    ) -> None:
        super().__init__(transport, defaults)
        # What this client's ensures learnt: the cards the server left for
        # requests it would not fully apply, and the ensures under way (one
        # memory for a client and those derived from it with other defaults).
        self._memory = _model_ensure.EnsureMemory() if shared is None else shared._memory

    async def list(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> ModelList:
        """Every model folder on the server (``GET /v1/model/list``).

        Listings hold every top-level folder, loadable or not, in no set
        order. With only an api key the server lists just the loaded model.

        Raises:
            AuthenticationError: the server wants an api key, and the client's is missing or wrong.
        """
        return await self._call(R.LIST, timeout=timeout, max_retries=max_retries)

    async def get(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> ModelCard:
        """The loaded model with its ``parameters`` (``GET /v1/model``).

        Raises:
            ModelNotLoadedError: no model is loaded, or a load is running (the server says "no model
                loaded" then too).
        """
        return await self._call(R.GET, timeout=timeout, max_retries=max_retries)

    async def get_props(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> ModelPropsResponse:
        """Slots, chat template and context length of the loaded model (``GET /props``).

        Raises:
            ModelNotLoadedError: no model is loaded, or a load is running.
        """
        return await self._call(R.PROPS, timeout=timeout, max_retries=max_retries)

    async def list_draft(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> ModelList:
        """The draft model folders (``GET /v1/model/draft/list``).

        Raises:
            AuthenticationError: the server wants an api key, and the client's is missing or wrong.
        """
        return await self._call(R.LIST_DRAFT, timeout=timeout, max_retries=max_retries)

    async def loaded_draft(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> str | None:
        """The loaded draft model's folder name (its last segment), or None for no draft.

        The card never names the draft; the draft listing does, to a key with
        api permission only (to the admin key it lists every draft folder): so
        this asks with the plain api key, once checked to have api permission.

        Raises:
            ClientStateError: the client holds no plain api key, the server gives it admin
                permission (an admin key, or auth off), the server has no permission route (an older
                TabbyAPI: asked once per client), or the listing names more than one folder, so it
                cannot say.
        """
        if not self._transport.has_api_key:
            raise ClientStateError("the loaded draft can be read only with a plain api key")
        memory = self._memory
        if memory.api_view is None:
            try:
                seen = await self._call(
                    R.API_KEY_PERMISSION, timeout=timeout, max_retries=max_retries
                )
            except NotFoundError:
                # A server without the route will not grow one: do not ask again.
                memory.api_view = False
                raise ClientStateError(
                    "the server has no permission route, so it cannot say whether its "
                    "draft listing names the loaded draft"
                ) from None
            memory.api_view = seen.permission == "api"
        if not memory.api_view:
            raise ClientStateError(
                "the server gives this client's api key admin permission: "
                "its draft listing names every draft folder, not the loaded one"
            )
        found = await self._call(R.LOADED_DRAFT, timeout=timeout, max_retries=max_retries)
        if len(found.data) > 1:
            # An api key sees at most the loaded draft: this listing is not that view.
            raise ClientStateError(
                f"the draft listing names {len(found.data)} folders: it cannot say which is loaded"
            )
        return found.data[0].id if found.data else None

    def load_stream(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        timeout: TimeoutArg = _DEFAULT,
        reattach_within: float | None = None,
        **fields: Unpack[ModelLoadFields],
    ) -> LoadStream:
        """Start a load and follow its progress (``POST /v1/model/load``).

        Use it as ``async with client.models.load_stream(req) as stream:
        async for event in stream: ...``. The request is sent once, on
        entering the block; it is never re-sent. The default timeout has no
        total bound, only a read (idle) bound well above the server's 15 s
        pings.

        ``reattach_within`` (seconds, opt-in): if the connection drops
        mid-load, poll ``GET /v1/model`` until the model shows up (the server
        keeps loading after a disconnect) or the time runs out, and end with a
        ``finished`` event (``stream.reattached`` is then True). The load is
        never sent again, with one exception: a nested name
        (``org/model/4.0bpw``) shows on the card only as its folder's last
        segment (``4.0bpw``), which another folder of that name shows too, so
        once that id shows up the load is sent once more and the server
        decides (its "already loaded" no-op for our folder; otherwise it loads
        ours, as asked, within the time left; a confirmation whose own stream
        is cut counts as not yet, and the polling goes on). A poll
        answered 429, 502, 503 or 504 (a busy proxy, or "no model loaded"
        while the load runs), a connection error or a timeout does not end the
        polling; each poll is bounded by the time left, so the window is kept.

        Raises:
            InvalidInputError: a bad request field or ``reattach_within``, at once (nothing is
                sent).
            ModelNotFoundError: on entering the block: no such model folder.
            PermissionDeniedError: on entering the block: the client has no valid admin key.
            BadRequestError: on entering the block: another refusal (e.g. no model name).
            UnprocessableEntityError: on entering the block: the server refused a field's value.
            LoadFailedError: while iterating: the server reported a failed load (a bad config, an
                unknown backend or draft, a failure mid-load), with its reason.
            StreamError: while iterating: the stream ended or broke before the model's ``finished``
                (the server died), or was not an event stream.
        """
        body = build_request(ModelLoadRequest, request, fields)
        if reattach_within is None:
            return self._stream(R.LOAD, body, timeout=timeout)
        window = check_seconds("reattach_within", reattach_within)
        name = body.model_name

        async def model_is_loaded(left: float) -> bool:
            # One poll, bounded by what is left of the window.
            card = await self.get(max_retries=0, timeout=left)
            who = identity(name, card.id)
            if who == "unproven":
                # Only the server can tell our folder from another of that
                # name: the same load again is its no-op if ours is loaded.
                try:
                    await follow(self.load_stream(body, timeout=left), None)
                except StreamError:
                    return False  # cut as well: not proved yet, so poll on
            return who != "other"

        return self._stream(
            R.LOAD,
            body,
            timeout=timeout,
            reattach=model_is_loaded,
            reattach_within=window or 0.0,
        )

    async def load(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: TimeoutArg = _DEFAULT,
        reattach_within: float | None = None,
        reload: bool = False,
        **fields: Unpack[ModelLoadFields],
    ) -> ModelLoadResponse:
        """Load a model and wait for it; returns the model's ``finished`` event.

        ``on_progress`` sees every event, draft and vision components too.
        ``reattach_within`` is as for :meth:`load_stream`.

        If the server already runs this model it does nothing and ignores the
        request's parameters; the SDK then logs a warning (logger
        ``tabby_async``) when the request set any. ``reload=True`` reads the
        loaded model first and, when it is this model with other reported
        parameters, unloads it before loading (:meth:`ensure_loaded` does the
        same and also checks the result).

        Raises:
            InvalidInputError: a bad request field, before anything is sent.
            ModelNotFoundError: no such model folder.
            PermissionDeniedError: the client has no valid admin key.
            BadRequestError: another refusal of the request.
            UnprocessableEntityError: the server refused a field's value.
            LoadFailedError: the server reported a failed load, with its reason.
            StreamError: the stream ended before the model's ``finished`` (the server died, or the
                stream was closed from another task).
        """
        body = build_request(ModelLoadRequest, request, fields)
        if reload:
            plan = await _model_ensure.plan_load(self, body)
            if plan.action == "reload":
                await self.unload(missing_ok=True)
        stream = self.load_stream(body, timeout=timeout, reattach_within=reattach_within)
        event = await follow(stream, on_progress)
        if stream.already_loaded and _sets_parameters(body):
            logger.warning(
                "%s was already loaded: the server ignored this load's parameters "
                "(unload first, or use reload=True or ensure_loaded)",
                body.model_name,
                extra=log_extra(),
            )
        return event

    async def unload(self, *, timeout: TimeoutArg = _DEFAULT, missing_ok: bool = False) -> None:
        """Unload the model (``POST /v1/model/unload``).

        Raises:
            ModelNotLoadedError: nothing is loaded, or a load is running (unless ``missing_ok``).
            PermissionDeniedError: the client has no valid admin key.
        """
        with contextlib.suppress(*_not_loaded(missing_ok)):
            await self._call(R.UNLOAD, timeout=timeout)

    async def download(
        self,
        request: DownloadRequest | None = None,
        /,
        *,
        timeout: TimeoutArg = _DEFAULT,
        **fields: Unpack[DownloadFields],
    ) -> DownloadResponse:
        """Have the server download a Hugging Face repo (``POST /v1/download``).

        One long request with no progress; cancelling it cancels the download
        on the server, which deletes the partial files. ``timeout=`` here is
        the SDK's (by default no total and no idle bound); the server-side
        ``DownloadRequest.timeout`` field goes in the request.

        Raises:
            InvalidInputError: a bad request field, before anything is sent.
            BadRequestError: the server could not download, with its reason (offline, no such
                repository, the target folder exists).
            PermissionDeniedError: the client has no valid admin key.
        """
        body = build_request(DownloadRequest, request, fields)
        return await self._call(R.DOWNLOAD, body, timeout=timeout)

    async def list_embedding(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> ModelList:
        """The embedding model folders (``GET /v1/model/embedding/list``).

        Raises:
            AuthenticationError: the server wants an api key, and the client's is missing or wrong.
        """
        return await self._call(R.LIST_EMBEDDING, timeout=timeout, max_retries=max_retries)

    async def get_embedding(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> ModelCard:
        """The loaded embedding model (``GET /v1/model/embedding``).

        Raises:
            ModelNotLoadedError: no embedding model is loaded (``kind`` is ``"embedding"``).
        """
        return await self._call(R.GET_EMBEDDING, timeout=timeout, max_retries=max_retries)

    async def loaded_embedding(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> ModelCard | None:
        """The loaded embedding model, or None when none is loaded (``GET /v1/model/embedding``).

        :meth:`get_embedding` with the server's "no embedding model loaded" answer
        as None, no ModelNotLoadedError built: for code that asks often (a fleet's sweep).

        Raises:
            AuthenticationError: the server wants an api key, and the client's is missing or wrong.
        """
        return await self._call(R.LOADED_EMBEDDING, timeout=timeout, max_retries=max_retries)

    async def load_embedding(
        self,
        request: EmbeddingModelLoadRequest | None = None,
        /,
        *,
        timeout: TimeoutArg = _DEFAULT,
        **fields: Unpack[EmbeddingModelLoadFields],
    ) -> ModelLoadResponse:
        """Load an embedding model (``POST /v1/model/embedding/load``; plain JSON, no stream).

        Asking for the embedding model that is already loaded is an error on
        the server (unlike the main model's no-op):
        :class:`~tabby_async.AlreadyLoadedError`. A client that disconnects
        cancels the load.

        Raises:
            InvalidInputError: a bad request field, before anything is sent.
            AlreadyLoadedError: that embedding model is already loaded.
            ModelNotFoundError: no such embedding model folder.
            BadRequestError: another refusal (e.g. a server without its optional embedding
                packages).
            PermissionDeniedError: the client has no valid admin key.
        """
        body = build_request(EmbeddingModelLoadRequest, request, fields)
        return await self._call(R.LOAD_EMBEDDING, body, timeout=timeout)

    async def unload_embedding(
        self, *, timeout: TimeoutArg = _DEFAULT, missing_ok: bool = False
    ) -> None:
        """Unload the embedding model (``POST /v1/model/embedding/unload``).

        Raises:
            ModelNotLoadedError: no embedding model is loaded (unless ``missing_ok``).
            PermissionDeniedError: the client has no valid admin key.
        """
        with contextlib.suppress(*_not_loaded(missing_ok)):
            await self._call(R.UNLOAD_EMBEDDING, timeout=timeout)

    # --- desired state ---------------------------------------------------------

    async def plan_load(
        self, request: ModelLoadRequest | None = None, /, **fields: Unpack[ModelLoadFields]
    ) -> ModelPlan:
        """What :meth:`ensure_loaded` would do (none, load or reload) and why; loads nothing.

        The plan's ``unchecked`` names the fields the request sets that the
        server does not report back, so that cannot be compared.

        Raises:
            InvalidInputError: a bad request field, before anything is sent.
        """
        return await _model_ensure.plan_load(self, build_request(ModelLoadRequest, request, fields))

    async def ensure_loaded(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: TimeoutArg = _DEFAULT,
        verify: bool = True,
        **fields: Unpack[ModelLoadFields],
    ) -> ModelResult:
        """Load only if the loaded model differs from the request (unloading first if needed).

        The server ignores new parameters for an already loaded model; this
        compares them first, on the fields the loaded card reports back
        (:data:`~tabby_async.desired.FIELD_RULES`). Fields it never reports (a draft
        model, rope values, the GPU split, the backend, ...) are never a
        difference: they are listed in the result's ``unchecked``.

        ``timeout`` bounds each load; ``verify`` (default True) reads the
        card again afterwards and raises
        :class:`~tabby_async.ModelMismatchError` if a reported field still
        differs.

        Raises:
            ModelMismatchError: after acting, a reported field still differs (with ``verify``); its
                ``result`` says which.
            InvalidInputError: a bad request field, before anything is sent.
            ModelNotFoundError: no such model folder.
            PermissionDeniedError: a load or unload is needed and the client has no valid admin key.
            LoadFailedError: the server reported a failed load.
            StreamError: the load stream ended before the model's ``finished``.
        """
        body = build_request(ModelLoadRequest, request, fields)
        return await _model_ensure.ensure_loaded(
            self, body, on_progress=on_progress, timeout=timeout, verify=verify
        )
