"""Desired-state loading on one server: compare, then leave alone, load or reload.

Why this exists: asked to load the model that is already loaded, the real
server does nothing and *ignores the new parameters* (PROTOCOL.md, "Server
behaviour around loads"). ``load(model_name="m", max_seq_len=32768)`` on a
server that runs ``m`` at 4096 therefore "succeeds" and leaves 4096. The fix
is to read the loaded card first (``GET /v1/model``), compare it with the
request, and unload before loading when a parameter differs.

What is compared (only the fields the request *sets*; an unset field means
"the server's default", which the loaded model is assumed to have):

=========================================  =====================================
request field                              loaded card field
=========================================  =====================================
``model_name``                             ``id`` (see the note on nested names)
``max_seq_len``                            ``parameters.max_seq_len``
``cache_size``                             ``parameters.cache_size``
``cache_mode``                             ``parameters.cache_mode`` (any case)
``rope_scale``                             ``parameters.rope_scale``
``rope_alpha`` (not ``"auto"``)            ``parameters.rope_alpha``
``chunk_size``                             ``parameters.chunk_size``
``prompt_template``                        ``parameters.prompt_template``
``vision``                                 ``parameters.use_vision``
``draft_model.draft_model_name``           ``parameters.draft.id``
``draft_model.draft_rope_scale``           ``parameters.draft.parameters.rope_scale``
``draft_model.draft_rope_alpha``           ``parameters.draft.parameters.rope_alpha``
``draft_model.draft_cache_mode``           ``parameters.draft.parameters.cache_mode``
=========================================  =====================================

Not compared, because the server never reports them back: ``backend``,
``tensor_parallel``, ``tensor_parallel_backend``, ``gpu_split_auto``,
``autosplit_reserve``, ``gpu_split``, ``output_chunking``, ``skip_queue``
and ``draft_model.draft_gpu_split`` (see :data:`NOT_COMPARED`). A change of
only those fields needs an explicit ``unload()`` then ``load()``.
``rope_alpha="auto"`` is not compared either (the server reports the number
it computed), nor is a field the server leaves out of its card; such fields
are listed in :attr:`LoadPlan.unchecked`.

Nested model names (``org/exl3/4.0bpw``): the server's card ``id`` is the
folder's last path segment, so that is what is compared.

Races: while another client's load runs, ``GET /v1/model`` answers 503 "No
models are currently loaded." exactly as when nothing is loaded, and our load
then queues behind the running one. If that one was the same model, our load
is a no-op that ignores our parameters. :func:`ensure_loaded` therefore reads
the card again after acting and, when a load was silently ignored this way,
unloads and loads once more. Whatever still differs after that is a value the
server itself changed (a clamped context, say): it raises
:class:`EnsureMismatchError` rather than loop.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ._timeouts import TimeoutLike
from .errors import ModelNotLoadedError, TabbyError
from .types import ModelCard, ModelCardParameters, ModelLoadRequest, ModelLoadResponse

if TYPE_CHECKING:
    from .models import AsyncModelsService, ProgressCallback

__all__ = [
    "NOT_COMPARED",
    "EnsureAction",
    "EnsureMismatchError",
    "EnsureResult",
    "FieldDiff",
    "LoadPlan",
    "compare",
    "ensure_loaded",
    "loaded_card",
    "plan_for",
    "plan_load",
]

#: What ensure does: nothing, a plain load (nothing or another model was
#: loaded; the server swaps models itself), or unload then load.
EnsureAction = Literal["none", "load", "reload"]

#: Request fields the server does not report back, so never compared.
NOT_COMPARED: tuple[str, ...] = (
    "backend",
    "tensor_parallel",
    "tensor_parallel_backend",
    "gpu_split_auto",
    "autosplit_reserve",
    "gpu_split",
    "output_chunking",
    "skip_queue",
    "draft_model.draft_gpu_split",
)


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One field whose loaded value is not the wanted one (``loaded`` None: nothing)."""

    field: str
    wanted: object
    loaded: object

    def __str__(self) -> str:
        return f"{self.field}: wanted {self.wanted!r}, loaded {self.loaded!r}"


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What :func:`ensure_loaded` would do, and why, from one look at the server.

    ``loaded`` is the card read when planning (None: nothing loaded, or a
    load was running). ``unchecked`` names fields the request sets that could
    not be compared (see the module docs).
    """

    action: EnsureAction
    reasons: tuple[FieldDiff, ...]
    request: ModelLoadRequest
    loaded: ModelCard | None
    unchecked: tuple[str, ...] = ()

    TABLE_COLUMNS: ClassVar[tuple[str, ...]] = ("action", "loaded", "why")

    @property
    def changes(self) -> bool:
        """True when the plan loads something."""
        return self.action != "none"

    def summary(self) -> str:
        """One line: the action and its reasons."""
        if not self.reasons:
            return f"{self.action}: {self.request.model_name} already loaded as requested"
        return f"{self.action}: " + "; ".join(str(r) for r in self.reasons)

    def table_row(self) -> tuple[str, ...]:
        return (self.action, _card_text(self.loaded), _reasons_text(self.reasons))


@dataclass(frozen=True, slots=True)
class EnsureResult:
    """What :func:`ensure_loaded` did.

    ``action`` is what was done in the end ("reload" when a silently ignored
    load had to be redone). ``reasons`` come from the plan. ``event`` is the
    model's ``finished`` event of the last load (None when nothing was done).
    ``card`` is the loaded card after acting (the planning card for "none";
    None when verification was off). ``mismatches`` is empty unless this
    result rides on an :class:`EnsureMismatchError`.
    """

    action: EnsureAction
    reasons: tuple[FieldDiff, ...]
    plan: LoadPlan
    event: ModelLoadResponse | None = None
    card: ModelCard | None = None
    mismatches: tuple[FieldDiff, ...] = ()

    TABLE_COLUMNS: ClassVar[tuple[str, ...]] = ("action", "model", "why")

    @property
    def changed(self) -> bool:
        """True when something was loaded."""
        return self.action != "none"

    def summary(self) -> str:
        """One line: what was done and why."""
        why = _reasons_text(self.reasons)
        return f"{self.action}: {why}" if why else f"{self.action}: already as requested"

    def table_row(self) -> tuple[str, ...]:
        card = self.card if self.card is not None else self.plan.loaded
        return (self.action, _card_text(card), _reasons_text(self.reasons) or "as requested")


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


# --- comparing ---------------------------------------------------------------


def _card_text(card: ModelCard | None) -> str:
    if card is None:
        return "-"
    ctx = card.parameters.max_seq_len if card.parameters is not None else None
    return f"{card.id} @{ctx}" if ctx is not None else card.id


def _reasons_text(reasons: tuple[FieldDiff, ...]) -> str:
    return "; ".join(str(r) for r in reasons)


def _same_name(wanted: str, loaded: str) -> bool:
    """The card's id against a requested name (nested names: last segment)."""
    if wanted == loaded:
        return True
    last = wanted.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return last == loaded


def _same_number(wanted: Any, loaded: Any) -> bool:
    if wanted == "auto":  # rope_alpha="auto": the server reports what it computed
        return True
    return math.isclose(float(wanted), float(loaded), rel_tol=1e-6, abs_tol=1e-9)


def _same_text_nocase(wanted: Any, loaded: Any) -> bool:
    return str(wanted).strip().lower() == str(loaded).strip().lower()


def _same(wanted: Any, loaded: Any) -> bool:
    return bool(wanted == loaded)


def _check(
    out: list[FieldDiff],
    unchecked: list[str],
    name: str,
    wanted: object,
    loaded: object,
    same: Callable[[Any, Any], bool] = _same,
) -> None:
    """Append a diff if ``wanted`` is set and differs; note it if not comparable."""
    if wanted is None:
        return
    if loaded is None or (same is _same_number and wanted == "auto"):
        unchecked.append(name)
        return
    if not same(wanted, loaded):
        out.append(FieldDiff(name, wanted, loaded))


def compare(
    request: ModelLoadRequest, card: ModelCard
) -> tuple[tuple[FieldDiff, ...], tuple[str, ...]]:
    """The parameter differences between a request and the loaded card of the same model.

    Returns ``(diffs, unchecked)``. The model name itself is not compared here
    (see :func:`plan_for`).
    """
    diffs: list[FieldDiff] = []
    unchecked: list[str] = []
    params = card.parameters or ModelCardParameters()
    number, nocase = _same_number, _same_text_nocase
    _check(diffs, unchecked, "max_seq_len", request.max_seq_len, params.max_seq_len)
    _check(diffs, unchecked, "cache_size", request.cache_size, params.cache_size)
    _check(diffs, unchecked, "cache_mode", request.cache_mode, params.cache_mode, nocase)
    _check(diffs, unchecked, "rope_scale", request.rope_scale, params.rope_scale, number)
    _check(diffs, unchecked, "rope_alpha", request.rope_alpha, params.rope_alpha, number)
    _check(diffs, unchecked, "chunk_size", request.chunk_size, params.chunk_size)
    _check(diffs, unchecked, "prompt_template", request.prompt_template, params.prompt_template)
    _check(diffs, unchecked, "vision", request.vision, params.use_vision)
    draft = request.draft_model
    if draft is not None:
        loaded_draft = params.draft
        if loaded_draft is None or not _same_name(draft.draft_model_name, loaded_draft.id):
            loaded_name = loaded_draft.id if loaded_draft is not None else None
            diffs.append(
                FieldDiff("draft_model.draft_model_name", draft.draft_model_name, loaded_name)
            )
        else:
            dp = loaded_draft.parameters or ModelCardParameters()
            _check(
                diffs,
                unchecked,
                "draft_model.draft_rope_scale",
                draft.draft_rope_scale,
                dp.rope_scale,
                number,
            )
            _check(
                diffs,
                unchecked,
                "draft_model.draft_rope_alpha",
                draft.draft_rope_alpha,
                dp.rope_alpha,
                number,
            )
            _check(
                diffs,
                unchecked,
                "draft_model.draft_cache_mode",
                draft.draft_cache_mode,
                dp.cache_mode,
                nocase,
            )
    return tuple(diffs), tuple(unchecked)


def plan_for(request: ModelLoadRequest, card: ModelCard | None) -> LoadPlan:
    """The plan for ``request`` given the loaded ``card`` (None: nothing loaded); no I/O."""
    if card is None:
        reason = FieldDiff("model_name", request.model_name, None)
        return LoadPlan("load", (reason,), request, None)
    if not _same_name(request.model_name, card.id):
        # The server unloads the old model itself before loading the new one.
        reason = FieldDiff("model_name", request.model_name, card.id)
        return LoadPlan("load", (reason,), request, card)
    diffs, unchecked = compare(request, card)
    return LoadPlan("reload" if diffs else "none", diffs, request, card, unchecked)


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


async def _load(
    service: AsyncModelsService,
    request: ModelLoadRequest,
    on_progress: ProgressCallback | None,
    timeout: TimeoutLike,
) -> tuple[ModelLoadResponse, bool]:
    """Load; also say whether the server treated it as "already loaded".

    That answer is exactly ``processing 1/1`` then ``finished 1/1`` for the
    model (PROTOCOL.md); a real load reports one event per module.
    """
    shapes: list[tuple[str, int, int]] = []

    async def watch(event: ModelLoadResponse) -> None:
        shapes.append((event.model_type, event.module, event.modules))
        if on_progress is not None:
            outcome = on_progress(event)
            if inspect.isawaitable(outcome):
                await outcome

    event = await service.load(request, on_progress=watch, timeout=timeout)
    return event, shapes == [("model", 1, 1), ("model", 1, 1)]


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
    ``verify`` (the default) the card is read again afterwards. If the
    server answered our load with its "already loaded" no-op (another
    client's load of the same model ran meanwhile) and the parameters are
    not ours, it unloads and loads once more. Any difference left is one the
    server made itself: :class:`EnsureMismatchError`.
    """
    plan = await plan_load(service, request)
    if plan.action == "none":
        return EnsureResult("none", plan.reasons, plan, None, plan.loaded)
    action: EnsureAction = plan.action
    if action == "reload":
        await _unload(service)
    event, ignored = await _load(service, request, on_progress, timeout)
    if not verify:
        return EnsureResult(action, plan.reasons, plan, event, None)
    card = await loaded_card(service)
    after = plan_for(request, card)
    if ignored and after.action == "reload":
        # The right model with the wrong parameters, and our load was the
        # server's no-op: a concurrent load of the same model won the lock.
        action = "reload"
        await _unload(service)
        event, _ = await _load(service, request, on_progress, timeout)
        card = await loaded_card(service)
        after = plan_for(request, card)
    if after.action != "none":
        raise EnsureMismatchError(
            EnsureResult(action, plan.reasons, plan, event, card, after.reasons)
        )
    return EnsureResult(action, plan.reasons, plan, event, card)
