"""Desired state, the pure part: what the loaded card reports back, and the comparison.

Why this exists: a desired-state check compares a load request with the
card of the loaded model (``GET /v1/model``). The server does not report
every load parameter back. A draft model is loaded but the card's ``draft``
stays null; ``rope_scale`` and ``rope_alpha`` always read 1.0 whatever was
asked; the GPU split, backend and tensor-parallel settings appear nowhere; a
prompt template asked for as ``chatml.jinja`` reads ``chatml``. Treating
any of that as a difference would unload and reload a working model on every
call. :data:`FIELD_RULES` says, for every field of a load request, whether
the card reports it and how the two are compared. That one table drives the
comparison, :attr:`LoadPlan.unchecked`, :data:`NOT_COMPARED`, the CLI's note
and the README's table (:func:`rules_markdown`).

A request field that is not set means "the server's default", which the
loaded model is assumed to have: only the fields the request sets count.
No I/O here: ``client.models.plan_load()`` and ``ensure_loaded()`` read the card and act.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .types import ModelCard, ModelCardParameters, ModelLoadRequest, ModelLoadResponse

__all__ = [
    "FIELD_RULES",
    "NOT_COMPARED",
    "EnsureAction",
    "EnsureResult",
    "FieldDiff",
    "FieldRule",
    "LoadPlan",
    "card_id",
    "compare",
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
#: loaded; the server swaps models itself), or unload then load.
EnsureAction = Literal["none", "load", "reload"]

#: How a request field meets the card: ``name`` (the card id is the last
#: path segment of the requested name), ``exact``, ``nocase`` (text in any
#: case), ``template`` (a trailing ``.jinja`` ignored on both sides),
#: ``chunk`` (equal, or the server's rounding of the request), or
#: ``unreported`` (the card never shows the value: not compared).
How = Literal["name", "exact", "nocase", "template", "chunk", "unreported"]


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one load request field is checked against the loaded model's card.

    ``field`` is the request field (a draft's settings as
    ``draft_model.<name>``); ``reported`` is where the card shows it (None:
    nowhere useful); ``note`` says what the server does with it, for docs.
    """

    field: str
    how: How
    reported: str | None = None
    note: str = ""

    @property
    def compared(self) -> bool:
        """True when the card reports the field, so that it is compared."""
        return self.how != "unreported"


#: Every field of a load request, in the request's order, and how it is checked.
FIELD_RULES: tuple[FieldRule, ...] = (
    FieldRule("model_name", "name", "id", "as the card id: a nested name's last segment"),
    FieldRule("backend", "unreported"),
    FieldRule("max_seq_len", "exact", "parameters.max_seq_len"),
    FieldRule("cache_size", "exact", "parameters.cache_size", "not rounded"),
    FieldRule("cache_mode", "nocase", "parameters.cache_mode", "in any case"),
    FieldRule("tensor_parallel", "unreported"),
    FieldRule("tensor_parallel_backend", "unreported"),
    FieldRule("gpu_split_auto", "unreported"),
    FieldRule("autosplit_reserve", "unreported"),
    FieldRule("gpu_split", "unreported"),
    FieldRule("rope_scale", "unreported", None, "always reported as 1.0"),
    FieldRule("rope_alpha", "unreported", None, "always reported as 1.0"),
    FieldRule(
        "chunk_size",
        "chunk",
        "parameters.chunk_size",
        "the server may round it up to a multiple of 256, at least 256",
    ),
    FieldRule("output_chunking", "unreported"),
    FieldRule(
        "prompt_template",
        "template",
        "parameters.prompt_template",
        "with or without .jinja: the card drops it",
    ),
    FieldRule("vision", "exact", "parameters.use_vision", "as use_vision"),
    FieldRule(
        "draft_model.draft_model_name",
        "unreported",
        None,
        "the card's draft is always null, even with a draft loaded",
    ),
    FieldRule("draft_model.draft_rope_scale", "unreported"),
    FieldRule("draft_model.draft_rope_alpha", "unreported"),
    FieldRule("draft_model.draft_gpu_split", "unreported"),
    FieldRule(
        "draft_model.draft_cache_mode",
        "unreported",
        None,
        "not a field of the server's load request",
    ),
    FieldRule("skip_queue", "unreported"),
)

_RULES = {rule.field: rule for rule in FIELD_RULES}

#: Request fields the server does not report back, so never compared.
NOT_COMPARED: tuple[str, ...] = tuple(r.field for r in FIELD_RULES if not r.compared)


# --- names -------------------------------------------------------------------------


def card_id(model_name: str) -> str:
    """The card id the server gives a loaded model: the folder's last path segment."""
    return model_name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def same_model(wanted: str, loaded_id: str) -> bool:
    """True when a card id is that of the requested model name (nested names too)."""
    return wanted == loaded_id or card_id(wanted) == loaded_id


# --- comparing ----------------------------------------------------------------------


def _strip_jinja(name: str) -> str:
    return name[: -len(".jinja")] if name.endswith(".jinja") else name


def same_template(wanted: str, reported: str) -> bool:
    """True when two template names mean the same template (a ``.jinja`` suffix ignored)."""
    return _strip_jinja(wanted) == _strip_jinja(reported)


def _server_chunk(size: int) -> int:
    # The server takes at least 256 and rounds up to a multiple of 256.
    return max(256, -(-size // 256) * 256)


_SAME: dict[How, Callable[[Any, Any], bool]] = {
    "exact": lambda wanted, loaded: bool(wanted == loaded),
    "nocase": lambda wanted, loaded: str(wanted).strip().lower() == str(loaded).strip().lower(),
    "template": lambda wanted, loaded: same_template(str(wanted), str(loaded)),
    "chunk": lambda wanted, loaded: loaded in (wanted, _server_chunk(wanted)),
}


def _requested(request: ModelLoadRequest, field: str) -> object:
    """The value ``request`` sets for a table field (None: not set)."""
    owner: object = request
    if field.startswith("draft_model."):
        owner = request.draft_model
        field = field.removeprefix("draft_model.")
    return None if owner is None else getattr(owner, field)


def _reported(card: ModelCard, where: str) -> object:
    """The card's value at ``id`` or ``parameters.<name>`` (None: not in the card)."""
    if where == "id":
        return card.id
    params = card.parameters or ModelCardParameters()
    return getattr(params, where.removeprefix("parameters."))


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One field whose loaded value is not the wanted one (``loaded`` None: nothing)."""

    field: str
    wanted: object
    loaded: object

    def __str__(self) -> str:
        return f"{self.field}: wanted {self.wanted!r}, loaded {self.loaded!r}"


def unreported_fields(request: ModelLoadRequest) -> tuple[str, ...]:
    """The fields ``request`` sets that the server never reports back (table order)."""
    return tuple(
        r.field for r in FIELD_RULES if not r.compared and _requested(request, r.field) is not None
    )


def compare(
    request: ModelLoadRequest, card: ModelCard
) -> tuple[tuple[FieldDiff, ...], tuple[str, ...]]:
    """The parameter differences between a request and the loaded card of the same model.

    Returns ``(diffs, unchecked)``: ``unchecked`` names every field the
    request sets that could not be compared (the server never reports it, or
    this card leaves it out). The model name is not compared here (see
    :func:`plan_for`).
    """
    diffs: list[FieldDiff] = []
    unchecked: list[str] = []
    for rule in FIELD_RULES:
        wanted = _requested(request, rule.field)
        if wanted is None or rule.how == "name":
            continue
        loaded = None if rule.reported is None else _reported(card, rule.reported)
        if rule.how == "unreported" or loaded is None:
            unchecked.append(rule.field)
        elif not _SAME[rule.how](wanted, loaded):
            diffs.append(FieldDiff(rule.field, wanted, loaded))
    return tuple(diffs), tuple(unchecked)


# --- plans ----------------------------------------------------------------------------


def reasons_text(reasons: Iterable[FieldDiff]) -> str:
    """The reasons of a plan on one line."""
    return "; ".join(str(r) for r in reasons)


def in_table_order(fields: Iterable[str]) -> tuple[str, ...]:
    """``fields`` once each, in the table's order (for merging several plans' lists)."""
    wanted = set(fields)
    order = [r.field for r in FIELD_RULES if r.field in wanted]
    return (*order, *sorted(wanted.difference(order)))


def unchecked_note(fields: Iterable[str]) -> str:
    """The one line that names fields not compared ("" when there are none)."""
    shown = in_table_order(fields)
    if not shown:
        return ""
    return "note: not reported by the server, not compared: " + ", ".join(shown)


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What ensure would do, and why, from one look at the server.

    ``loaded`` is the card read when planning (None: nothing loaded, or a
    load was running). ``unchecked`` names the fields the request sets that
    cannot be compared (see :data:`FIELD_RULES`); they never cause a load.
    """

    action: EnsureAction
    reasons: tuple[FieldDiff, ...]
    request: ModelLoadRequest
    loaded: ModelCard | None
    unchecked: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        """True when the plan loads something."""
        return self.action != "none"

    def summary(self) -> str:
        """One line: the action and its reasons."""
        if not self.reasons:
            return f"{self.action}: {self.request.model_name} already loaded as requested"
        return f"{self.action}: " + reasons_text(self.reasons)


def plan_for(request: ModelLoadRequest, card: ModelCard | None) -> LoadPlan:
    """The plan for ``request`` given the loaded ``card`` (None: nothing loaded); no I/O."""
    if card is None or not same_model(request.model_name, card.id):
        # The server unloads another model itself before loading the new one.
        loaded_id = None if card is None else card.id
        reason = FieldDiff("model_name", request.model_name, loaded_id)
        return LoadPlan("load", (reason,), request, card, unreported_fields(request))
    diffs, unchecked = compare(request, card)
    return LoadPlan("reload" if diffs else "none", diffs, request, card, unchecked)


# --- docs -------------------------------------------------------------------------------


def rules_markdown() -> str:
    """:data:`FIELD_RULES` as the two Markdown bullets the README shows."""

    def shown(rule: FieldRule) -> str:
        return f"`{rule.field}`" + (f" ({rule.note})" if rule.note else "")

    compared = ", ".join(shown(r) for r in FIELD_RULES if r.compared)
    unreported = ", ".join(shown(r) for r in FIELD_RULES if not r.compared)
    return (
        f"- Compared with the loaded card: {compared}.\n"
        f"- Not reported back, so never a difference (listed in `unchecked`): {unreported}."
    )


# --- results ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnsureResult:
    """What :func:`ensure_loaded` did.

    ``action`` is what was done in the end ("reload" when a silently ignored
    load had to be redone). ``reasons`` come from the plan. ``event`` is the
    model's ``finished`` event of the last load (None when nothing was done).
    ``card`` is the loaded card after acting (the planning card for "none";
    None when verification was off). ``mismatches`` is empty unless this
    result rides on an :class:`~tabby_async.EnsureMismatchError`. ``unchecked`` names the
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

    @property
    def changed(self) -> bool:
        """True when something was loaded."""
        return self.action != "none"

    def summary(self) -> str:
        """One line: what was done and why."""
        why = reasons_text(self.reasons)
        return f"{self.action}: {why}" if why else f"{self.action}: already as requested"


def unchanged(plan: LoadPlan) -> EnsureResult:
    """The result of a plan that needs nothing done."""
    return EnsureResult("none", plan.reasons, plan, None, plan.loaded, unchecked=plan.unchecked)
