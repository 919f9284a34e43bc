"""FleetModels: the Models API on every node of a fleet (``fleet.models``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._defaults import USE_CLIENT_DEFAULT
from .._model_plan import ModelPlan, check_reachable
from .._resource import build_request
from ..errors import InvalidInputError
from ..types import (
    DownloadFields,
    DownloadRequest,
    DownloadResponse,
    EmbeddingModelLoadFields,
    EmbeddingModelLoadRequest,
    ModelCard,
    ModelList,
    ModelLoadFields,
    ModelLoadRequest,
    ModelLoadResponse,
    ModelPropsResponse,
)
from ._model_ensure import FleetModelReport, ensure_on_fleet
from ._results import FleetResult
from ._runner import (
    FleetProgressCallback,
    Runner,
    RunOptions,
    StreamOptions,
    node_bound,
    node_progress,
    split_options,
)
from ._stream import FleetLoadStream

if TYPE_CHECKING:
    from typing import Unpack

__all__ = [
    "FleetDownloadKeywords",
    "FleetEmbeddingLoadKeywords",
    "FleetLoadKeywords",
    "FleetLoadStreamKeywords",
    "FleetModels",
]


class FleetLoadKeywords(ModelLoadFields, RunOptions, total=False):
    """A fleet model load's keywords: the request's fields and the run options."""


class FleetLoadStreamKeywords(ModelLoadFields, StreamOptions, total=False):
    """A fleet load stream's keywords: the request's fields and the stream's options."""


class FleetEmbeddingLoadKeywords(EmbeddingModelLoadFields, RunOptions, total=False):
    """A fleet embedding load's keywords: the request's fields and the run options."""


class FleetDownloadKeywords(DownloadFields, RunOptions, total=False):
    """A fleet download's keywords: the request's fields and the run options."""


_DEFAULT = USE_CLIENT_DEFAULT


class FleetModels:
    """The Models API on every node: ``fleet.models``.

    Each method is the one-server method of the same name (on
    ``client.models``), fanned out: it returns a
    :class:`~tabby_async.fleet.FleetResult` with every node's value or typed
    error. Every method takes the run options as its keywords' tail
    (``**options``: see :class:`~tabby_async.fleet.RunOptions`), beside the
    request's keyword fields where it has them; ``timeout=`` is also passed
    on to each node's call. Requests are built and checked once, before any
    node is contacted. Loads and downloads are bounded by the fleet's
    ``load_timeout`` by default, everything else by its ``node_timeout``.

    A node's failure is its result, never raised. Every method raises only
    :class:`~tabby_async.InvalidInputError` (a bad request field or option,
    an unknown node name) and :class:`~tabby_async.ClientStateError` (a
    closed fleet), before any node is contacted.
    """

    __slots__ = ("_runner",)

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def list(self, **options: Unpack[RunOptions]) -> FleetResult[ModelList]:
        """Every node's model folders.

        ``**options``: see :class:`~tabby_async.fleet.RunOptions`.

        Raises:
            InvalidInputError: a bad run option or an unknown node name, before any
                node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        return await self._runner.each(lambda c, t: c.models.list(timeout=t), "list", options)

    async def get(self, **options: Unpack[RunOptions]) -> FleetResult[ModelCard]:
        """The loaded model of each node (ModelNotLoadedError where none is).

        ``**options``: see :class:`~tabby_async.fleet.RunOptions`.

        Raises:
            InvalidInputError: a bad run option or an unknown node name, before any
                node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        return await self._runner.each(lambda c, t: c.models.get(timeout=t), "get", options)

    async def get_props(self, **options: Unpack[RunOptions]) -> FleetResult[ModelPropsResponse]:
        """Each node's slots, template and context of the loaded model.

        ``**options``: see :class:`~tabby_async.fleet.RunOptions`.

        Raises:
            InvalidInputError: a bad run option or an unknown node name, before any
                node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        return await self._runner.each(
            lambda c, t: c.models.get_props(timeout=t), "get_props", options
        )

    async def list_draft(self, **options: Unpack[RunOptions]) -> FleetResult[ModelList]:
        """Every node's draft model folders.

        ``**options``: see :class:`~tabby_async.fleet.RunOptions`.

        Raises:
            InvalidInputError: a bad run option or an unknown node name, before any
                node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        return await self._runner.each(
            lambda c, t: c.models.list_draft(timeout=t), "list_draft", options
        )

    async def list_embedding(self, **options: Unpack[RunOptions]) -> FleetResult[ModelList]:
        """Every node's embedding model folders.

        ``**options``: see :class:`~tabby_async.fleet.RunOptions`.

        Raises:
            InvalidInputError: a bad run option or an unknown node name, before any
                node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        return await self._runner.each(
            lambda c, t: c.models.list_embedding(timeout=t), "list_embedding", options
        )

    async def get_embedding(self, **options: Unpack[RunOptions]) -> FleetResult[ModelCard]:
        """The loaded embedding model of each node.

        ``**options``: see :class:`~tabby_async.fleet.RunOptions`.

        Raises:
            InvalidInputError: a bad run option or an unknown node name, before any
                node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        return await self._runner.each(
            lambda c, t: c.models.get_embedding(timeout=t), "get_embedding", options
        )

    async def unload(self, **options: Unpack[RunOptions]) -> FleetResult[None]:
        """Unload the model on every node.

        ``**options``: see :class:`~tabby_async.fleet.RunOptions`.

        Raises:
            InvalidInputError: a bad run option or an unknown node name, before any
                node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        return await self._runner.each(lambda c, t: c.models.unload(timeout=t), "unload", options)

    async def unload_embedding(self, **options: Unpack[RunOptions]) -> FleetResult[None]:
        """Unload the embedding model on every node.

        ``**options``: see :class:`~tabby_async.fleet.RunOptions`.

        Raises:
            InvalidInputError: a bad run option or an unknown node name, before any
                node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        return await self._runner.each(
            lambda c, t: c.models.unload_embedding(timeout=t), "unload_embedding", options
        )

    async def load(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        on_progress: FleetProgressCallback | None = None,
        **keywords: Unpack[FleetLoadKeywords],
    ) -> FleetResult[ModelLoadResponse]:
        """Load on every node; each node's value is its ``finished`` event.

        ``on_progress(node, event)`` sees every node's events. Remember the
        server ignores new parameters for a model it already runs:
        :meth:`ensure_loaded` compares first.

        ``**keywords``: the request's fields and the run options (see
        :class:`~tabby_async.fleet.RunOptions`).

        Raises:
            InvalidInputError: a bad request field, run option or node name, before
                any node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        options, fields = split_options(keywords)
        body = build_request(ModelLoadRequest, request, fields)
        timeout = options.get("timeout", _DEFAULT)
        return await self._runner.run(
            lambda name, c: c.models.load(
                body, on_progress=node_progress(on_progress, name), timeout=timeout
            ),
            **options,
            operation="load",
            kind="stream",
        )

    def load_stream(
        self,
        request: ModelLoadRequest | None = None,
        /,
        **keywords: Unpack[FleetLoadStreamKeywords],
    ) -> FleetLoadStream:
        """One async iterator over every node's load events (see FleetLoadStream).

        ``timeout`` bounds each node's whole load and is each node's stream
        timeout too (the default: the fleet's ``load_timeout``, and the
        client's stream timeout).

        ``**keywords``: the request's fields and the stream's options (see
        :class:`~tabby_async.fleet.StreamOptions`).

        Raises:
            InvalidInputError: a bad request field, stream option or node name
                (``on_result`` among them: the stream yields each event), at once.
            ClientStateError: the fleet is closed.
        """
        options, fields = split_options(keywords)
        if "on_result" in options:
            # The stream yields each event; a result callback has nothing to see.
            raise InvalidInputError("on_result", "load_stream takes no on_result")
        body = build_request(ModelLoadRequest, request, fields)
        runner = self._runner
        timeout = options.get("timeout", _DEFAULT)
        return FleetLoadStream(
            runner.pool.targets(options.get("nodes")),
            body,
            max_concurrency=runner.concurrency(options.get("max_concurrency")),
            node_timeout=node_bound(timeout, runner.settings.load_timeout),
            stream_timeout=timeout,
            fail_fast=options.get("fail_fast", False),
        )

    async def load_embedding(
        self,
        request: EmbeddingModelLoadRequest | None = None,
        /,
        **keywords: Unpack[FleetEmbeddingLoadKeywords],
    ) -> FleetResult[ModelLoadResponse]:
        """Load an embedding model on every node.

        ``**keywords``: the request's fields and the run options (see
        :class:`~tabby_async.fleet.RunOptions`).

        Raises:
            InvalidInputError: a bad request field, run option or node name, before
                any node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        options, fields = split_options(keywords)
        body = build_request(EmbeddingModelLoadRequest, request, fields)
        return await self._runner.each(
            lambda c, t: c.models.load_embedding(body, timeout=t),
            "load_embedding",
            options,
            "silent",
        )

    async def download(
        self,
        request: DownloadRequest | None = None,
        /,
        **keywords: Unpack[FleetDownloadKeywords],
    ) -> FleetResult[DownloadResponse]:
        """Have every node download a Hugging Face repo.

        ``**keywords``: the request's fields and the run options (see
        :class:`~tabby_async.fleet.RunOptions`).

        Raises:
            InvalidInputError: a bad request field, run option or node name, before
                any node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        options, fields = split_options(keywords)
        body = build_request(DownloadRequest, request, fields)
        return await self._runner.each(
            lambda c, t: c.models.download(body, timeout=t), "download", options, "silent"
        )

    async def plan_load(
        self,
        request: ModelLoadRequest | None = None,
        /,
        **keywords: Unpack[FleetLoadKeywords],
    ) -> FleetResult[ModelPlan]:
        """What :meth:`ensure_loaded` would do on each node (none, load or reload) and why.

        Loads nothing: one ``GET /v1/model`` per node and a comparison.

        ``**keywords``: the request's fields and the run options (see
        :class:`~tabby_async.fleet.RunOptions`).

        Raises:
            InvalidInputError: a bad request field, run option or node name, before
                any node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        options, fields = split_options(keywords)
        body = build_request(ModelLoadRequest, request, fields)
        check_reachable(body)  # once, before any node is asked
        return await self._runner.each(lambda c, _t: c.models.plan_load(body), "plan", options)

    async def ensure_loaded(
        self,
        request: ModelLoadRequest | None = None,
        /,
        *,
        dry_run: bool = False,
        verify: bool = True,
        on_plan: Callable[[FleetResult[ModelPlan]], object] | None = None,
        on_progress: FleetProgressCallback | None = None,
        **keywords: Unpack[FleetLoadKeywords],
    ) -> FleetModelReport:
        """Bring every node to the requested model and parameters.

        First every node is planned (as :meth:`plan_load`), and ``on_plan``
        sees the plans. Then the nodes that need it are loaded or reloaded
        with the one-server ``ensure_loaded``; nodes already right are not
        touched again. ``dry_run`` stops after the plan. ``verify`` is the
        one-server meaning: read each node's card again after its load and
        fail it with :class:`~tabby_async.ModelMismatchError` if a reported
        field still differs. ``timeout`` bounds each node's plan and then
        its ensure (default: ``node_timeout`` for the plan, ``load_timeout``
        for the ensure).

        ``**keywords``: the request's fields and the run options (see
        :class:`~tabby_async.fleet.RunOptions`).

        Raises:
            InvalidInputError: a bad request field, run option or node name, before
                any node is contacted (a node's failure is its result, never raised).
            ClientStateError: the fleet is closed.
        """
        options, fields = split_options(keywords)
        body = build_request(ModelLoadRequest, request, fields)
        check_reachable(body)  # once, before any node is asked
        return await ensure_on_fleet(
            self._runner,
            body,
            dry_run=dry_run,
            verify=verify,
            on_plan=on_plan,
            on_progress=on_progress,
            options=options,
        )
