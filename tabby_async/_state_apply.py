"""Desired state for a whole node, the I/O part: look, plan, apply in order, look again.

The planning is pure (``DesiredState``, ``plan_state``); this module reads
what it needs from the server, applies the parts that differ (the model
first: any load replaces the template), and checks the result with a fresh
look. A second call with the same state sends no write.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from ._defaults import USE_CLIENT_DEFAULT, TimeoutArg
from ._model_ensure import ModelsPort, ensure_loaded, loaded_card, loaded_draft
from ._model_plan import ModelMismatchError, ModelResult
from ._otel import Attributes, operation_span, server_attributes, set_plan
from ._state_plan import (
    DesiredState,
    Observed,
    Part,
    PartPlan,
    StateMismatchError,
    StatePlan,
    StateResult,
    plan_state,
)
from .errors import AlreadyLoadedError, ModelNotLoadedError
from .types import ModelCard

if TYPE_CHECKING:
    from yarl import URL

    from ._sampling import AsyncSamplingService
    from ._stream import ProgressCallback
    from ._templates import AsyncTemplatesService
    from .types import EmbeddingModelLoadRequest, ModelLoadResponse

__all__ = ["NodePort", "ensure_state", "observe"]


class NodeModelsPort(ModelsPort, Protocol):
    """What a node's desired state uses of its Models API: the model's, and the embedding's."""

    async def get_embedding(self) -> ModelCard: ...

    async def load_embedding(
        self, request: EmbeddingModelLoadRequest | None = None, /, *, timeout: TimeoutArg = ...
    ) -> ModelLoadResponse: ...


class NodePort(Protocol):
    """What a node's desired state uses of a client (the client satisfies it).

    Read-only members, so that the client's own attributes match; naming
    only these keeps this module below the client that calls it.
    """

    @property
    def base_url(self) -> URL: ...

    @property
    def models(self) -> NodeModelsPort: ...

    @property
    def templates(self) -> AsyncTemplatesService: ...

    @property
    def sampling(self) -> AsyncSamplingService: ...


async def observe(
    client: NodePort, state: DesiredState, proven: frozenset[Part] = frozenset()
) -> Observed:
    """Read what ``state`` needs to be planned: only the parts it manages.

    ``proven`` names the parts whose folder the server confirmed during this
    ensure (see :class:`~tabby_async.Observed`).
    """
    card: ModelCard | None = None
    if state.model is not None or state.template is not None:
        card = await loaded_card(client.models)
    sampling = await client.sampling.list() if state.sampling_preset is not None else None
    embedding: ModelCard | None = None
    if state.embedding is not None:
        with contextlib.suppress(ModelNotLoadedError):
            embedding = await client.models.get_embedding()
    produced = draft = None
    if state.model is not None:
        memory = client.models._memory
        produced = memory.produced.get(memory.key(state.model))
        if card is not None:
            draft = await loaded_draft(client.models, state.model)
    return Observed(card, sampling, embedding, produced, proven, draft)


async def ensure_state(
    client: NodePort,
    state: DesiredState,
    *,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
    timeout: TimeoutArg = USE_CLIENT_DEFAULT,
) -> StateResult:
    """Bring the node to ``state``; see :meth:`~tabby_async.AsyncTabbyClient.apply`."""

    def attributes() -> Attributes:
        found = server_attributes(client.base_url)
        found["tabby.ensure.parts"] = list(state.parts)
        found["tabby.ensure.dry_run"] = dry_run
        return found

    with operation_span("tabby.ensure", attributes) as span:
        plan = plan_state(state, await observe(client, state))
        if span is not None:
            changes = [p.summary() for p in plan.parts if p.changes]
            set_plan(span, "change" if changes else "none", changes, plan.unchecked)
        result = await _apply(client, state, plan, dry_run, on_progress, timeout)
        if span is not None:
            span.set_attribute("tabby.ensure.done", [p.part for p in result.done])
        return result


async def _apply(
    client: NodePort,
    state: DesiredState,
    plan: StatePlan,
    dry_run: bool,
    on_progress: ProgressCallback | None,
    timeout: TimeoutArg,
) -> StateResult:
    """Carry out ``plan`` (see :func:`ensure_state`)."""
    if dry_run:
        return StateResult(plan)
    if plan.refused and not plan.changes:
        # The server left these parts as it did the last time they were asked
        # for: writing them again would give the same answer.
        raise StateMismatchError(StateResult(plan, after=plan))
    if not plan.changes:
        return StateResult(plan, after=plan)
    proven: set[Part] = set()
    done: list[PartPlan] = []
    model_result: ModelResult | None = None
    part = plan.part("model")
    if state.model is not None and part is not None and part.changes:
        try:
            model_result = await ensure_loaded(
                client.models, state.model, on_progress=on_progress, timeout=timeout
            )
        except ModelMismatchError as err:
            # The server did not apply the whole request; the other parts
            # still go on, and the look at the end reports the model part.
            model_result = err.result
        # ensure_loaded has checked the card it left (its load or the
        # server's "already loaded" answer proved the folder).
        proven.add("model")
        if model_result.changed:
            done.append(part)
    part = plan.part("template")
    # After a load, look again first: the load may have set the template itself.
    if (
        state.template is not None
        and part is not None
        and part.changes
        and (
            model_result is None
            or not _template_in_use(state.template, await loaded_card(client.models))
        )
    ):
        await client.templates.switch(state.template)
        done.append(part)
    part = plan.part("sampling")
    preset_switched = False
    if state.sampling_preset is not None and part is not None and part.changes:
        await client.sampling.switch(preset=state.sampling_preset)
        done.append(part)
        preset_switched = True
    part = plan.part("embedding")
    if state.embedding is not None and part is not None and part.changes:
        try:
            await client.models.load_embedding(state.embedding, timeout=timeout)
            done.append(part)
        except AlreadyLoadedError:
            # The server compares full paths: this very folder is loaded.
            if part.verified:
                raise
        proven.add("embedding")
    after = plan_state(state, await observe(client, state, frozenset(proven)))
    if preset_switched:
        after = _preset_taken(after)
    result = StateResult(plan, tuple(done), model_result, after)
    if after.changes or after.refused:
        raise StateMismatchError(result)
    return result


def _preset_taken(after: StatePlan) -> StatePlan:
    """The look after switching the preset, with an empty preset counted as taken.

    A preset that sets no overrides leaves none in force, which the plan
    cannot tell from an unload; right after the switch, the server naming it
    as the preset loaded is the evidence that it was.
    """
    part = after.part("sampling")
    if part is None or not part.changes or part.current != part.wanted:
        return after
    taken = replace(part, action="none", reason="switched; the preset sets no overrides")
    return replace(after, parts=tuple(taken if p is part else p for p in after.parts))


def _template_in_use(wanted: str, card: ModelCard | None) -> bool:
    plan = plan_state(DesiredState(template=wanted), Observed(card=card))
    return not plan.parts[0].changes
