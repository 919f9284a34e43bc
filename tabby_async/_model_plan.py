"""Desired state for one model, the pure part: the plan from what the server says, the result.

A desired-state check compares a load request with the card of the loaded
model (``GET /v1/model``), field by field as the load fields' table says
(:data:`~tabby_async.desired.FIELD_RULES`, in ``_compare``): only the fields the
request sets count, and a field the server never reports back is never a
difference.

What the card cannot prove is never claimed. The card's ``id`` is only the
folder's last path segment, while the server tells folders apart by their
full path: a nested name (``org/model/4.0bpw``) whose last segment is the
card id may be another folder of that name, so the plan leaves the question
to the server (a load, which it answers with its "already loaded" no-op for
the same folder and with a real load otherwise) and never unloads on that
evidence alone (see :func:`identity`).

A request the server cannot satisfy reaches a fixed point: once a load of a
request has left a card on which some field still differs (a context capped
at the cache size, vision on a model without a vision component, a template
replaced by the model's own), a plan against that same card says the server
refuses those fields (:attr:`ModelPlan.refused`) instead of loading again.
No I/O here: ``client.models.plan_load()`` and ``ensure_loaded()`` read the card and act.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

# The table's names are also reachable from here, where the plans that use
# them live (the CLI and the fleet import both from one place).
from ._compare import (
    FIELD_RULES,
    NOT_COMPARED,
    DraftSeen,
    FieldDiff,
    FieldRule,
    Identity,
    card_id,
    compare,
    identity,
    in_table_order,
    reasons_text,
    rules_markdown,
    same_template,
    unchecked_note,
    unreported_fields,
)
from .errors import ErrorCode, InvalidInputError, TabbyError
from .types import ModelCard, ModelLoadRequest, ModelLoadResponse

__all__ = [
    "FIELD_RULES",
    "NOT_COMPARED",
    "DraftSeen",
    "EnsureAction",
    "FieldDiff",
    "FieldRule",
    "Identity",
    "ModelMismatchError",
    "ModelPlan",
    "ModelResult",
    "card_id",
    "check_reachable",
    "compare",
    "identity",
    "in_table_order",
    "plan_for",
    "reasons_text",
    "rules_markdown",
    "same_model",
    "same_template",
    "unchanged",
    "unchecked_note",
    "unreported_fields",
]

#: What ensure does: nothing, a plain load (nothing or another model was
#: loaded, or the card cannot say which folder is loaded; the server swaps
#: models itself), or unload then load.
EnsureAction = Literal["none", "load", "reload"]

# --- names -------------------------------------------------------------------------


def same_model(wanted: str, loaded_id: str) -> bool:
    """True when a card id may be that of the requested model name (nested names too)."""
    return identity(wanted, loaded_id) != "other"


def _case_only(wanted: str, loaded_id: str) -> bool:
    """True when ``loaded_id`` is the requested folder's name in another case."""
    return card_id(wanted).casefold() == loaded_id.casefold()


def check_reachable(request: ModelLoadRequest) -> None:
    """Refuse a request whose own fields say the server cannot run it as asked.

    The server caps ``max_seq_len`` at ``cache_size``, so a request asking
    for more context than cache could never be "as requested".

    Raises:
        InvalidInputError: naming ``max_seq_len``.
    """
    context, cache = request.max_seq_len, request.cache_size
    if context is not None and cache is not None and context > cache:
        raise InvalidInputError(
            "max_seq_len",
            f"is {context}, above cache_size {cache}: the server caps the context at the "
            "cache size, so ask for cache_size >= max_seq_len",
        )


# --- plans ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelPlan:
    """What ensure would do, and why, from one look at the server.

    ``loaded`` is the card read when planning (None: nothing loaded, or a
    load was running). ``unchecked`` names the fields the request sets that
    cannot be compared (see :data:`FIELD_RULES`); they never cause a load.
    ``verified`` is False when the card cannot prove which folder is loaded
    (a nested name whose last segment is the card id): the plan is then a
    ``load`` that the server answers with its "already loaded" no-op if it
    is the same folder. ``refused`` holds what the server did not apply the
    last time this very request was loaded, when the card is still the one
    that load produced: the plan is then ``none`` (loading again would give
    the same card) and ensure raises the same mismatch at once.
    ``left_out`` names the fields the server normally reports that this
    card leaves out (null or missing): nothing proves a difference, so
    nothing is loaded, but nothing proves a match either (``met`` is None).
    """

    action: EnsureAction
    reasons: tuple[FieldDiff, ...]
    request: ModelLoadRequest
    loaded: ModelCard | None
    unchecked: tuple[str, ...] = ()
    verified: bool = True
    refused: tuple[FieldDiff, ...] = ()
    left_out: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        """True when the plan loads something."""
        return self.action != "none"

    @property
    def met(self) -> bool | None:
        """Whether the server runs the request: True, False, or None when the card cannot tell."""
        if self.refused or self.reasons:
            return False
        if not self.verified or self.left_out:
            return None
        return self.action == "none"

    def summary(self) -> str:
        """One line: the action and its reasons."""
        if self.refused:
            return "none: the server did not apply " + reasons_text(self.refused)
        if not self.verified:
            shown = self.loaded.id if self.loaded is not None else "?"
            why = (
                f"the card shows {shown!r}, which another folder of that name would show too: "
                "the server decides"
            )
            extra = reasons_text(self.reasons)
            return f"{self.action}: {why}" + (f"; {extra}" if extra else "")
        if not self.reasons and self.left_out:
            return (
                f"{self.action}: {self.request.model_name} loaded; the card does not report "
                f"{', '.join(self.left_out)}: cannot tell"
            )
        if not self.reasons:
            return f"{self.action}: {self.request.model_name} already loaded as requested"
        return f"{self.action}: " + reasons_text(self.reasons)


def plan_for(
    request: ModelLoadRequest,
    card: ModelCard | None,
    *,
    proven: bool = False,
    produced: ModelCard | None = None,
    draft: DraftSeen | None = None,
) -> ModelPlan:
    """The plan for ``request`` given the loaded ``card`` (None: nothing loaded); no I/O.

    ``proven``: the server has shown that the loaded folder is the requested
    one (its "already loaded" answer), so a nested name's card counts as
    ours. ``produced``: the card the last load of this same request left
    (None: not known); when the card is still that one, what differs is what
    the server refuses to apply (:attr:`ModelPlan.refused`). ``draft``: the
    loaded draft, when it could be read.

    Raises:
        InvalidInputError: the request cannot be met by any server (see
            :func:`check_reachable`).
    """
    check_reachable(request)
    who: Identity = "other" if card is None else identity(request.model_name, card.id)
    if proven and card is not None and who == "other" and _case_only(request.model_name, card.id):
        # A server on a case-insensitive file system names the card as the
        # folder is spelt on disk; its "already loaded" answer proved it ours.
        who = "same"
    if card is None or who == "other":
        # The server unloads another model itself before loading the new one.
        loaded_id = None if card is None else card.id
        reason = FieldDiff("model_name", request.model_name, loaded_id)
        return ModelPlan("load", (reason,), request, card, unreported_fields(request))
    diffs, unchecked = compare(request, card, draft)
    if who == "unproven" and not proven:
        return ModelPlan("load", diffs, request, card, unchecked, verified=False)
    # The card is still what the request's own last load left, as far as
    # this request can see: loading again would give the same differences.
    if (
        diffs
        and produced is not None
        and produced.id == card.id
        and compare(request, produced, draft)[0] == diffs
    ):
        return ModelPlan("none", (), request, card, unchecked, refused=diffs)
    action: EnsureAction = "reload" if diffs else "none"
    return ModelPlan(action, diffs, request, card, unchecked, left_out=_left_out(request, card))


def _left_out(request: ModelLoadRequest, card: ModelCard) -> tuple[str, ...]:
    """The fields ``request`` sets that the server reports, but ``card`` leaves out."""
    params = card.parameters
    found: list[str] = []
    for rule in FIELD_RULES:
        if rule.how in ("name", "unreported", "draft") or rule.reported is None:
            continue
        wanted = getattr(request, rule.field)
        if wanted is None or (rule.how == "context" and wanted == -1):
            continue
        shown = None if params is None else getattr(params, rule.reported.split(".")[-1])
        # A null template is the server's answer "no template in use".
        if params is None or (shown is None and rule.how != "template"):
            found.append(rule.field)
    return tuple(found)


# --- results ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelResult:
    """What :func:`ensure_loaded` did.

    ``action`` is what was done in the end ("reload" when a silently ignored
    load had to be redone). ``reasons`` come from the plan. ``event`` is the
    model's ``finished`` event of the last load (None when nothing was done).
    ``card`` is the loaded card after acting (the planning card for "none";
    None when verification was off). ``mismatches`` is empty unless this
    result rides on an :class:`~tabby_async.ModelMismatchError`. ``unchecked`` names the
    fields the request sets that the card could not confirm.
    ``draft_loaded`` is the load stream's evidence about a draft model: True
    when it showed ``draft`` events, False when a load ran without any, None
    when no load ran or the server answered with its "already loaded" no-op
    (the card never says whether a draft is loaded).
    """

    action: EnsureAction
    reasons: tuple[FieldDiff, ...]
    plan: ModelPlan
    event: ModelLoadResponse | None = None
    card: ModelCard | None = None
    mismatches: tuple[FieldDiff, ...] = ()
    unchecked: tuple[str, ...] = ()
    draft_loaded: bool | None = None

    @property
    def changed(self) -> bool:
        """True when something was loaded."""
        return self.action != "none"

    def summary(self) -> str:
        """One line: what was done and why."""
        why = reasons_text(self.reasons)
        return f"{self.action}: {why}" if why else f"{self.action}: already as requested"


def unchanged(plan: ModelPlan) -> ModelResult:
    """The result of a plan that needs nothing done."""
    return ModelResult("none", plan.reasons, plan, None, plan.loaded, unchecked=plan.unchecked)


class ModelMismatchError(TabbyError):
    """After acting, the loaded model still differs from the request.

    The server changed a value itself (a context clamped to the cache, vision
    on a model without a vision component, a template replaced by the
    model's own, a folder's config that wins) or another client loaded
    something else meanwhile. ``result`` holds what was done and the
    remaining ``mismatches``.
    """

    code: ClassVar[ErrorCode] = "ensure_mismatch"

    def __init__(self, result: ModelResult) -> None:
        detail = "; ".join(str(m) for m in result.mismatches)
        super().__init__(f"after {result.action}, the loaded model still differs: {detail}")
        self.result = result
