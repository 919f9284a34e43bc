"""Desired-state loading on one server: compare, then leave alone, load or reload.

Why this exists: asked to load the model that is already loaded, the real
server does nothing and *ignores the new parameters*.
``load(model_name="m", max_seq_len=32768)`` on a server that runs ``m`` at
4096 therefore "succeeds" and leaves 4096. The fix is to read the loaded card
first (``GET /v1/model``), compare it with the request, and unload before
loading when a parameter differs.

What is compared, and what cannot be because the server never reports it
back (a draft model, the rope values, the GPU split, the backend, ...), is
one table: :data:`~tabby_async.FIELD_RULES` (the README shows it).
Only the fields the request sets count. A field that cannot be compared is
never a difference: it is listed in :attr:`LoadPlan.unchecked` and
:attr:`EnsureResult.unchecked` instead, and a change of only such fields
needs an explicit ``unload()`` then ``load()``. Nested model names
(``org/exl3/4.0bpw``) match the card id ``4.0bpw``, the folder's last segment.

Races: while another client's load runs, ``GET /v1/model`` answers 503 "No
models are currently loaded." exactly as when nothing is loaded, and our load
then queues behind the running one. If that one was the same model, our load
is a no-op that ignores our parameters (its stream is exactly ``processing
1/1``, ``finished 1/1``). :func:`ensure_loaded` therefore reads the card
again after acting. When our load was that no-op and either a reported field
differs or the request sets fields the card cannot confirm (a draft, say), it
unloads and loads once more. Whatever still differs after that is a value
the server itself changed (a clamped context, say): it raises
:class:`EnsureMismatchError` rather than loop.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._defaults import USE_CLIENT_DEFAULT, TimeoutArg
from ._desired import EnsureAction, EnsureResult, LoadPlan, plan_for, unchanged
from ._otel import operation_span, set_plan
from ._stream import follow
from .errors import EnsureMismatchError, ModelNotLoadedError
from .types import ModelCard, ModelLoadRequest, ModelLoadResponse

if TYPE_CHECKING:
    from ._stream import ProgressCallback
    from .models import AsyncModelsService

__all__ = ["ensure_loaded", "loaded_card", "plan_load"]


# --- acting ------------------------------------------------------------------


async def loaded_card(service: AsyncModelsService) -> ModelCard | None:
    """``GET /v1/model``, with "no model loaded" (also said during a load) as None."""
    try:
        return await service.get()
    except ModelNotLoadedError:
        return None


async def plan_load(service: AsyncModelsService, request: ModelLoadRequest) -> LoadPlan:
    """Read the loaded card and plan; loads nothing (the dry-run form)."""
    return plan_for(request, await loaded_card(service))


async def _unload(service: AsyncModelsService) -> None:
    # "Not loaded": nothing is loaded any more, or a load is running (ours
    # then queues behind it and the check afterwards sorts it out).
    await service.unload(missing_ok=True)


@dataclass(frozen=True, slots=True)
class _LoadOutcome:
    """What one load call returned, and what its stream showed."""

    event: ModelLoadResponse
    ignored: bool  # the server's "already loaded" no-op: our parameters were not used
    draft: bool  # the stream showed ``draft`` events

    @property
    def draft_evidence(self) -> bool | None:
        return None if self.ignored else self.draft


async def _load(
    service: AsyncModelsService,
    request: ModelLoadRequest,
    on_progress: ProgressCallback | None,
    timeout: TimeoutArg,
) -> _LoadOutcome:
    """Load, watching the stream for the "already loaded" no-op and for a draft."""
    draft = False

    async def watch(event: ModelLoadResponse) -> None:
        nonlocal draft
        draft = draft or event.model_type == "draft"
        if on_progress is not None:
            shown = on_progress(event)
            if inspect.isawaitable(shown):
                await shown

    stream = service.load_stream(request, timeout=timeout)
    event = await follow(stream, watch)
    return _LoadOutcome(event, stream.already_loaded, draft)


async def ensure_loaded(
    service: AsyncModelsService,
    request: ModelLoadRequest,
    *,
    on_progress: ProgressCallback | None = None,
    timeout: TimeoutArg = USE_CLIENT_DEFAULT,
    verify: bool = True,
) -> EnsureResult:
    """Make the server run ``request``: do nothing, load, or unload then load.

    ``timeout`` bounds each load (the client's stream timeout by default);
    the reads and the unload use the client's control timeout. With
    ``verify`` (the default) the card is read again afterwards and compared
    on the fields it reports. If the server answered our load with its
    "already loaded" no-op (another client's load of the same model ran
    meanwhile) and a reported field differs, or the request sets fields the
    card cannot confirm, it unloads and loads once more. Any reported
    difference left is one the server made itself:
    :class:`EnsureMismatchError`.
    """
    name = request.model_name
    with operation_span("tabby.ensure_loaded", lambda: {"tabby.model.name": name}) as span:
        plan = await plan_load(service, request)
        if span is not None:
            set_plan(span, plan.action, plan.reasons, plan.unchecked)
        result = await _act(service, request, plan, on_progress, timeout, verify)
        if span is not None:
            span.set_attribute("tabby.ensure.done", result.action)
        return result


async def _act(
    service: AsyncModelsService,
    request: ModelLoadRequest,
    plan: LoadPlan,
    on_progress: ProgressCallback | None,
    timeout: TimeoutArg,
    verify: bool,
) -> EnsureResult:
    """Carry out ``plan`` (see :func:`ensure_loaded`)."""
    if plan.action == "none":
        return unchanged(plan)
    action: EnsureAction = plan.action
    if action == "reload":
        await _unload(service)
    loaded = await _load(service, request, on_progress, timeout)
    if not verify:
        return EnsureResult(
            action,
            plan.reasons,
            plan,
            loaded.event,
            None,
            unchecked=plan.unchecked,
            draft_loaded=loaded.draft_evidence,
        )
    card = await loaded_card(service)
    after = plan_for(request, card)
    unconfirmed = after.action == "none" and bool(after.unchecked)
    if loaded.ignored and (after.action == "reload" or unconfirmed):
        # The right model, and our load was the server's no-op: a concurrent
        # load of the same model won the lock and its parameters are in use
        # (a reported difference shows it; unreported ones may hide it).
        action = "reload"
        await _unload(service)
        loaded = await _load(service, request, on_progress, timeout)
        card = await loaded_card(service)
        after = plan_for(request, card)
    result = EnsureResult(
        action,
        plan.reasons,
        plan,
        loaded.event,
        card,
        after.reasons if after.action != "none" else (),
        after.unchecked,
        loaded.draft_evidence,
    )
    if after.action != "none":
        raise EnsureMismatchError(result)
    return result
