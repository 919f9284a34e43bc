"""Desired-state loading on one server: compare, then leave alone, load or reload.

Why this exists: asked to load the model that is already loaded, the real
server does nothing and *ignores the new parameters*.
``load(model_name="m", max_seq_len=32768)`` on a server that runs ``m`` at
4096 therefore "succeeds" and leaves 4096. The fix is to read the loaded card
first (``GET /v1/model``), compare it with the request, and unload before
loading when a parameter differs.

What is compared, and what cannot be because the server never reports it
back (a draft model, the rope values, the GPU split, the backend, ...), is
one table: :data:`tabby_async._desired.FIELD_RULES` (the README shows it).
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

import contextlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ._desired import (
    FIELD_RULES,
    NOT_COMPARED,
    EnsureAction,
    FieldDiff,
    FieldRule,
    LoadPlan,
    card_text,
    compare,
    plan_for,
    reasons_text,
    unchecked_note,
    unreported_fields,
)
from ._timeouts import TimeoutLike
from .errors import ModelNotLoadedError, TabbyError
from .types import ModelCard, ModelLoadRequest, ModelLoadResponse

if TYPE_CHECKING:
    from .models import AsyncModelsService, ProgressCallback

__all__ = [
    "FIELD_RULES",
    "NOT_COMPARED",
    "EnsureAction",
    "EnsureMismatchError",
    "EnsureResult",
    "FieldDiff",
    "FieldRule",
    "LoadPlan",
    "compare",
    "ensure_loaded",
    "loaded_card",
    "plan_for",
    "plan_load",
    "unchanged",
    "unchecked_note",
    "unreported_fields",
]


@dataclass(frozen=True, slots=True)
class EnsureResult:
    """What :func:`ensure_loaded` did.

    ``action`` is what was done in the end ("reload" when a silently ignored
    load had to be redone). ``reasons`` come from the plan. ``event`` is the
    model's ``finished`` event of the last load (None when nothing was done).
    ``card`` is the loaded card after acting (the planning card for "none";
    None when verification was off). ``mismatches`` is empty unless this
    result rides on an :class:`EnsureMismatchError`. ``unchecked`` names the
    fields the request sets that the card could not confirm.
    ``draft_loaded`` is the load stream's evidence about a draft model: True
    when it showed ``draft`` events, False when a load ran without any, None
    when no load ran or the server answered with its "already loaded" no-op
    (the card never says whether a draft is loaded).
    """

    action: EnsureAction
    reasons: tuple[FieldDiff, ...]
    plan: LoadPlan
    event: ModelLoadResponse | None = None
    card: ModelCard | None = None
    mismatches: tuple[FieldDiff, ...] = ()
    unchecked: tuple[str, ...] = ()
    draft_loaded: bool | None = None

    TABLE_COLUMNS: ClassVar[tuple[str, ...]] = ("action", "model", "why")

    @property
    def changed(self) -> bool:
        """True when something was loaded."""
        return self.action != "none"

    def summary(self) -> str:
        """One line: what was done and why."""
        why = reasons_text(self.reasons)
        return f"{self.action}: {why}" if why else f"{self.action}: already as requested"

    def table_row(self) -> tuple[str, ...]:
        card = self.card if self.card is not None else self.plan.loaded
        return (self.action, card_text(card), reasons_text(self.reasons) or "as requested")


def unchanged(plan: LoadPlan) -> EnsureResult:
    """The result of a plan that needs nothing done."""
    return EnsureResult("none", plan.reasons, plan, None, plan.loaded, unchecked=plan.unchecked)


class EnsureMismatchError(TabbyError):
    """After acting, the loaded model still differs from the request.

    The server changed a value itself (a context clamped to what the model
    allows, say) or another client loaded something else meanwhile.
    ``result`` holds what was done and the remaining ``mismatches``.
    """

    code: ClassVar[str] = "ensure_mismatch"

    def __init__(self, result: EnsureResult) -> None:
        detail = "; ".join(str(m) for m in result.mismatches)
        super().__init__(f"after {result.action}, the loaded model still differs: {detail}")
        self.result = result


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
    with contextlib.suppress(ModelNotLoadedError):
        await service.unload()


@dataclass(frozen=True, slots=True)
class _LoadOutcome:
    """What one load call returned, and what its stream showed."""

    event: ModelLoadResponse
    ignored: bool  # the server's "already loaded" no-op: our parameters were not used
    draft: bool  # the stream showed ``draft`` events

    @property
    def draft_evidence(self) -> bool | None:
        return None if self.ignored else self.draft


def _is_no_op(shapes: list[tuple[str, int, int]]) -> bool:
    # The server's answer to "load the model that is already loaded" is
    # exactly processing 1/1 then finished 1/1 for the model; a real load
    # reports one event per module, and draft/vision components before it.
    return shapes == [("model", 1, 1), ("model", 1, 1)]


async def _load(
    service: AsyncModelsService,
    request: ModelLoadRequest,
    on_progress: ProgressCallback | None,
    timeout: TimeoutLike,
) -> _LoadOutcome:
    """Load, watching the stream for the "already loaded" no-op and for a draft."""
    shapes: list[tuple[str, int, int]] = []

    async def watch(event: ModelLoadResponse) -> None:
        shapes.append((event.model_type, event.module, event.modules))
        if on_progress is not None:
            outcome = on_progress(event)
            if inspect.isawaitable(outcome):
                await outcome

    event = await service.load(request, on_progress=watch, timeout=timeout)
    draft = any(model_type == "draft" for model_type, _, _ in shapes)
    return _LoadOutcome(event, _is_no_op(shapes), draft)


async def ensure_loaded(
    service: AsyncModelsService,
    request: ModelLoadRequest,
    *,
    on_progress: ProgressCallback | None = None,
    timeout: TimeoutLike = None,
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
    plan = await plan_load(service, request)
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
