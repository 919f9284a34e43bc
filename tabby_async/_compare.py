"""The load fields' rules: what the server reports back of each, and how it is compared.

One table, :data:`FIELD_RULES`, says for every field of a load request
whether the server reports it back (mostly on the loaded card, ``GET
/v1/model``) and how the two values are compared, as the server reads them:
``Q4`` and ``4,4`` are one cache mode, ``chatml.jinja`` and ``chatml`` one
template, ``max_seq_len=-1`` means the model's own context. The same table
drives :attr:`~tabby_async.desired.ModelPlan.unchecked`, :data:`NOT_COMPARED`, the
CLI's note and the docs' table (:func:`rules_markdown`). No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from ._load_field import How, load_fields
from .types import DraftModelLoadRequest, ModelCard, ModelLoadRequest

__all__ = [
    "FIELD_RULES",
    "NOT_COMPARED",
    "DraftSeen",
    "FieldDiff",
    "FieldRule",
    "Identity",
    "cache_mode_bits",
    "card_id",
    "compare",
    "identity",
    "in_table_order",
    "reasons_text",
    "reported_template",
    "rules_markdown",
    "same_template",
    "template_stem",
    "unchecked_note",
    "unreported_fields",
]


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one load request field is checked against what the server reports.

    ``field`` is the request field (a draft's settings as
    ``draft_model.<name>``); ``reported`` is where the server shows it (None:
    nowhere useful); ``note`` says what the server does with it, for docs.
    Each rule comes from the field's :class:`~tabby_async.LoadField`.
    """

    field: str
    how: How
    reported: str | None = None
    note: str = ""

    @property
    def compared(self) -> bool:
        """True when the server reports the field, so that it can be compared."""
        return self.how != "unreported"


def _rules() -> tuple[FieldRule, ...]:
    # The draft's fields stand in for the nested request field itself.
    draft = [
        FieldRule(f"draft_model.{name}", d.how, d.reported, d.note)
        for name, d in load_fields(DraftModelLoadRequest)
    ]
    rules: list[FieldRule] = []
    for name, d in load_fields(ModelLoadRequest):
        rules += draft if name == "draft_model" else [FieldRule(name, d.how, d.reported, d.note)]
    return tuple(rules)


#: Every field of a load request, in the request's order, and how it is checked
#: (read from each field's declaration).
FIELD_RULES: tuple[FieldRule, ...] = _rules()

#: Request fields the server does not report back, so never compared.
NOT_COMPARED: tuple[str, ...] = tuple(r.field for r in FIELD_RULES if not r.compared)


#: What a card's id says of a requested folder: it is that folder (``same``:
#: a flat name equal to the id), it cannot be (``other``), or it may be
#: another folder with the same last segment (``unproven``).
Identity = Literal["same", "unproven", "other"]


def _segments(name: str, separators: str) -> list[str]:
    """``name``'s path segments, split at any of ``separators``; empty and ``.`` ones dropped."""
    for sep in separators[1:]:
        name = name.replace(sep, separators[0])
    return [s for s in name.split(separators[0]) if s not in ("", ".")]


def card_id(model_name: str) -> str:
    """The card id the server gives a loaded model: the folder's last path segment.

    The server resolves the path, so ``./m``, ``m/`` and ``m/.`` are ``m``.
    """
    parts = _segments(model_name, "/\\")
    return parts[-1] if parts else ""


def identity(wanted: str, loaded_id: str) -> Identity:
    """What a loaded card's id proves about the requested folder ``wanted``.

    The server names the card after the folder's last segment but compares
    full paths, so only a flat name equal to the id is taken as proven. A
    nested name whose last segment is the id is ``unproven``: another folder
    of that name looks the same. (A flat name cannot tell its folder from a
    nested one of the same name either; the card gives no path.) ``.``
    segments and doubled slashes count for nothing, as in the server's path.
    """
    # A backslash splits the path on a Windows server only; on any other it
    # is part of a folder's name, and the card id keeps it.
    for separators in ("/", "/\\"):
        parts = _segments(wanted, separators)
        if parts and parts[-1] == loaded_id:
            return "same" if len(parts) == 1 else "unproven"
    return "other"


# --- what the server does with a value --------------------------------------------------

_PAIR = re.compile(r"^([2-8])\s*,\s*([2-8])$")
_NAMED_MODES = {"Q4": "4,4", "Q6": "6,6", "Q8": "8,8"}


def cache_mode_bits(mode: str) -> tuple[int, int] | None:
    """The (key, value) bits a cache mode gives as the server reads it; None is FP16.

    Exactly ``Q4``, ``Q6`` and ``Q8`` (case matters) are ``4,4``, ``6,6``
    and ``8,8``; ``k,v`` with both from 2 to 8 is that pair; anything else,
    ``q4`` included, is an FP16 cache.
    """
    found = _PAIR.match(_NAMED_MODES.get(mode, mode))
    return None if found is None else (int(found.group(1)), int(found.group(2)))


# --- the server's template names (its one rule, written here only) ----------------


def template_stem(name: str) -> str:
    """The template file a name opens, without ``.jinja``: its name in the server's listing.

    The server opens ``templates/<name>`` with ``.jinja`` in place of any
    other extension: ``chatml.jinja`` and ``chatml`` open ``chatml.jinja``,
    and so does ``chatml.txt``.
    """
    return str(PurePosixPath(name.replace("\\", "/")).with_suffix(""))


def reported_template(name: str) -> str:
    """The name the server reports (on the card) for a template asked for as ``name``.

    It drops a ``.jinja`` suffix only: ``chatml.jinja`` reads ``chatml``, but
    ``alpaca.txt``, which opens ``alpaca.jinja``, reads ``alpaca.txt``.
    """
    return name[: -len(".jinja")] if name.endswith(".jinja") else name


def same_template(wanted: str, reported: str) -> bool:
    """True when two template names open the same template file (see :func:`template_stem`)."""
    return template_stem(wanted) == template_stem(reported)


def _server_chunk(size: int) -> int:
    # The server takes at least 256 and rounds up to a multiple of 256.
    return max(256, -(-size // 256) * 256)


# --- comparing ----------------------------------------------------------------------

_SAME: dict[How, Callable[[Any, Any], bool]] = {
    "exact": lambda wanted, loaded: bool(wanted == loaded),
    "context": lambda wanted, loaded: bool(wanted == loaded),
    "cache_mode": lambda wanted, loaded: (
        cache_mode_bits(str(wanted)) == cache_mode_bits(str(loaded))
    ),
    "template": lambda wanted, loaded: (
        loaded is not None and same_template(str(wanted), str(loaded))
    ),
    "chunk": lambda wanted, loaded: loaded in (wanted, _server_chunk(wanted)),
    "draft": lambda wanted, loaded: loaded is not None and identity(str(wanted), loaded) == "same",
}


def _requested(request: ModelLoadRequest, field: str) -> object:
    """The value ``request`` sets for a table field (None: not set)."""
    owner: object = request
    if field.startswith("draft_model."):
        owner = request.draft_model
        field = field.removeprefix("draft_model.")
    return None if owner is None else getattr(owner, field)


@dataclass(frozen=True, slots=True)
class DraftSeen:
    """The loaded draft as the draft listing with a plain api key shows it (None: no draft)."""

    id: str | None


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One field whose loaded value is not the wanted one (``loaded`` None: nothing)."""

    field: str
    wanted: object
    loaded: object

    def __str__(self) -> str:
        return f"{self.field}: wanted {self.wanted!r}, loaded {self.loaded!r}"


def unreported_fields(request: ModelLoadRequest) -> tuple[str, ...]:
    """The fields ``request`` sets that the card never reports (table order)."""
    return tuple(
        r.field
        for r in FIELD_RULES
        if r.how in ("unreported", "draft") and _requested(request, r.field) is not None
    )


def _loaded_value(rule: FieldRule, card: ModelCard, draft: DraftSeen | None) -> tuple[bool, object]:
    """``(known, value)``: what the server reports for ``rule``'s field."""
    if rule.how == "draft":
        return (False, None) if draft is None else (True, draft.id)
    params = card.parameters
    if params is None or rule.reported is None:
        return False, None
    value = getattr(params, rule.reported.removeprefix("parameters."))
    # A null template is the server's answer "no template in use"; any other
    # null means the server did not say.
    return value is not None or rule.how == "template", value


def compare(
    request: ModelLoadRequest, card: ModelCard, draft: DraftSeen | None = None
) -> tuple[tuple[FieldDiff, ...], tuple[str, ...]]:
    """The parameter differences between a request and the loaded card of the same model.

    Returns ``(diffs, unchecked)``: ``unchecked`` names every field the
    request sets that could not be compared (the server never reports it,
    this card leaves it out, or ``max_seq_len`` is ``-1``). ``draft`` is
    the loaded draft when it could be read (None: not read, so a requested
    draft is unchecked). The model name is not compared here (see
    :func:`plan_for`).
    """
    diffs: list[FieldDiff] = []
    unchecked: list[str] = []
    for rule in FIELD_RULES:
        wanted = _requested(request, rule.field)
        if wanted is None or rule.how == "name":
            continue
        if rule.how == "unreported" or (rule.how == "context" and wanted == -1):
            unchecked.append(rule.field)
            continue
        known, loaded = _loaded_value(rule, card, draft)
        if rule.how == "draft" and loaded is not None:
            # The listing names the draft by its folder's last segment: a
            # nested draft name with that segment may be another folder.
            known = identity(str(wanted), str(loaded)) != "unproven"
        if not known:
            unchecked.append(rule.field)
        elif not _SAME[rule.how](wanted, loaded):
            diffs.append(FieldDiff(rule.field, wanted, loaded))
    return tuple(diffs), tuple(unchecked)


# --- notes ----------------------------------------------------------------------------


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


# --- docs -------------------------------------------------------------------------------


def rules_markdown() -> str:
    """:data:`FIELD_RULES` as the two Markdown bullets the docs show."""

    def shown(rule: FieldRule) -> str:
        return f"`{rule.field}`" + (f" ({rule.note})" if rule.note else "")

    compared = ", ".join(shown(r) for r in FIELD_RULES if r.compared)
    unreported = ", ".join(shown(r) for r in FIELD_RULES if not r.compared)
    return (
        f"- Compared with what the server reports: {compared}.\n"
        f"- Not reported back, so never a difference (listed in `unchecked`): {unreported}."
    )
