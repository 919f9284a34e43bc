"""Desired state for a whole node, the pure part: what to want, what is seen, what to do.

A node's state is more than its model: the prompt template in use, the
sampler preset, the embedding model. :class:`DesiredState` names the parts
wanted (a part left ``None`` is not managed), :class:`Observed` holds what
the server reported, and :func:`plan_state` says, part by part, what has to
happen. No I/O here: ``AsyncTabbyClient.ensure`` reads, plans, applies and
checks.

What counts as evidence, part by part:

* **model**: the loaded card, compared as ``ensure_loaded`` compares it
  (only the fields the server reports back; the rest is ``unchecked``).
* **template**: the card's ``prompt_template`` (a ``.jinja`` suffix on
  either side ignored). Any load replaces the template, so when the model
  part loads, the template is planned against what the load will set: the
  request's own ``prompt_template`` if it names the same template, else a
  switch after the load.
* **sampling preset**: the server reports the last preset *loaded*
  (``selected_preset``), which a dict of overrides or an unload leaves in
  place, and the overrides in force, whose contents cannot be matched to a
  preset's file. The preset counts as active when ``selected_preset`` names
  it **and** overrides are in force; after an unload (no overrides) it is
  switched again. A dict switched in after the preset is not detected: the
  part is listed as unchecked to say so.
* **embedding**: the loaded embedding model's card id (the folder's name);
  ``embeddings_device`` is never reported. The server refuses to load the
  embedding model already loaded, so this part is only loaded when it differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._checks import check_model_name
from ._desired import EnsureResult, LoadPlan, card_id, plan_for, same_template
from .errors import InvalidInputError
from .types import EmbeddingModelLoadRequest, ModelCard, ModelLoadRequest, SamplerOverrides

__all__ = [
    "DesiredState",
    "Observed",
    "Part",
    "PartAction",
    "PartPlan",
    "StatePlan",
    "StateResult",
    "plan_state",
]

#: The parts of a node's state, in the order they are applied: the model
#: first, since any load replaces the template.
Part = Literal["model", "template", "sampling", "embedding"]
PART_ORDER: tuple[Part, ...] = ("model", "template", "sampling", "embedding")

#: What a part needs: nothing, a (re)load, or a switch.
PartAction = Literal["none", "load", "reload", "switch"]

_UNCHECKED_PRESET = "sampling_preset (its overrides cannot be matched to the preset's file)"


@dataclass(frozen=True, slots=True)
class DesiredState:
    """What a node should run; a part left ``None`` is not managed.

    ``model`` and ``embedding`` are load requests; ``template`` is a prompt
    template name (with or without ``.jinja``); ``sampling_preset`` a sampler
    override preset name. ``client.ensure(state)`` brings a server to it,
    ``TabbyFleet.ensure`` a fleet.

    Raises:
        InvalidInputError: a part of the wrong type, or an empty or unsafe
            template or preset name (naming the part), when it is built.
    """

    model: ModelLoadRequest | None = None
    template: str | None = None
    sampling_preset: str | None = None
    embedding: EmbeddingModelLoadRequest | None = None

    def __post_init__(self) -> None:
        if self.model is not None and not isinstance(self.model, ModelLoadRequest):
            raise InvalidInputError("model", "must be a ModelLoadRequest or None")
        if self.embedding is not None and not isinstance(
            self.embedding, EmbeddingModelLoadRequest
        ):
            raise InvalidInputError("embedding", "must be an EmbeddingModelLoadRequest or None")
        if self.template is not None:
            check_model_name("template", self.template)
        if self.sampling_preset is not None:
            check_model_name("sampling_preset", self.sampling_preset)

    @property
    def parts(self) -> tuple[Part, ...]:
        """The managed parts, in the order they are applied."""
        wanted = {
            "model": self.model,
            "template": self.template,
            "sampling": self.sampling_preset,
            "embedding": self.embedding,
        }
        return tuple(p for p in PART_ORDER if wanted[p] is not None)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the server reported: the loaded card, the sampler state, the embedding card.

    ``None`` means nothing of that kind is loaded (or, for ``sampling``, that
    it was not read because the state does not manage it).
    """

    card: ModelCard | None = None
    sampling: SamplerOverrides | None = None
    embedding: ModelCard | None = None


@dataclass(frozen=True, slots=True)
class PartPlan:
    """One part's plan: the action, what is wanted and what is there, and why."""

    part: Part
    action: PartAction
    wanted: str
    current: str | None
    reason: str
    unchecked: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        """True when the part needs a write."""
        return self.action != "none"

    def summary(self) -> str:
        """One line: ``part: action (reason)``."""
        return f"{self.part}: {self.action} ({self.reason})"


@dataclass(frozen=True, slots=True)
class StatePlan:
    """Every managed part's plan, in the order they are applied.

    ``model`` is the model part's full :class:`~tabby_async.LoadPlan` (None
    when the state does not manage the model).
    """

    state: DesiredState
    parts: tuple[PartPlan, ...]
    model: LoadPlan | None = None

    @property
    def changes(self) -> bool:
        """True when any part needs a write."""
        return any(p.changes for p in self.parts)

    @property
    def unchecked(self) -> tuple[str, ...]:
        """What could not be compared, over all parts."""
        return tuple(u for p in self.parts for u in p.unchecked)

    def part(self, name: Part) -> PartPlan | None:
        """The plan of one part (None when it is not managed)."""
        return next((p for p in self.parts if p.part == name), None)

    def summary(self) -> str:
        """One line: what each part needs."""
        if not self.parts:
            return "nothing managed"
        return "; ".join(f"{p.part}: {p.action}" for p in self.parts)


def plan_state(state: DesiredState, observed: Observed) -> StatePlan:
    """The plan for ``state`` given what the server reported; no I/O."""
    parts: list[PartPlan] = []
    model_plan: LoadPlan | None = None
    if state.model is not None:
        model_plan = plan_for(state.model, observed.card)
        parts.append(_model_part(model_plan))
    if state.template is not None:
        parts.append(_template_part(state.template, state.model, model_plan, observed.card))
    if state.sampling_preset is not None:
        parts.append(_sampling_part(state.sampling_preset, observed.sampling))
    if state.embedding is not None:
        parts.append(_embedding_part(state.embedding, observed.embedding))
    return StatePlan(state, tuple(parts), model_plan)


def _model_part(plan: LoadPlan) -> PartPlan:
    loaded = plan.loaded.id if plan.loaded is not None else None
    reason = "; ".join(str(r) for r in plan.reasons) or "loaded as requested"
    return PartPlan(
        "model", plan.action, plan.request.model_name, loaded, reason, plan.unchecked
    )


def _template_part(
    wanted: str,
    model: ModelLoadRequest | None,
    model_plan: LoadPlan | None,
    card: ModelCard | None,
) -> PartPlan:
    current = card.parameters.prompt_template if card and card.parameters else None
    if model_plan is not None and model_plan.changes:
        # The load replaces the template: it sets the request's own, if any.
        assert model is not None
        if model.prompt_template is not None and same_template(wanted, model.prompt_template):
            return PartPlan("template", "none", wanted, current, "the model load sets it")
        return PartPlan("template", "switch", wanted, current, "after the model load")
    if card is None:
        return PartPlan(
            "template", "switch", wanted, None, "no model is loaded: the switch needs one"
        )
    if current is not None and same_template(wanted, current):
        return PartPlan("template", "none", wanted, current, "in use")
    shown = "none in use" if current is None else f"{current!r} in use"
    return PartPlan("template", "switch", wanted, current, shown)


def _sampling_part(wanted: str, seen: SamplerOverrides | None) -> PartPlan:
    unchecked = (_UNCHECKED_PRESET,)
    if seen is None:
        return PartPlan("sampling", "switch", wanted, None, "not read", unchecked)
    current = seen.selected_preset
    if current == wanted and seen.overrides:
        reason = "loaded, overrides in force"
        return PartPlan("sampling", "none", wanted, current, reason, unchecked)
    if current == wanted:
        reason = "loaded before, but no overrides are in force"
    elif current is None:
        reason = "no preset loaded"
    else:
        reason = f"last preset loaded is {current!r}"
    return PartPlan("sampling", "switch", wanted, current, reason, unchecked)


def _embedding_part(wanted: EmbeddingModelLoadRequest, seen: ModelCard | None) -> PartPlan:
    name = wanted.embedding_model_name
    unchecked = ("embedding.embeddings_device",) if wanted.embeddings_device else ()
    current = seen.id if seen is not None else None
    if current is not None and current in (name, card_id(name)):
        return PartPlan("embedding", "none", name, current, "loaded", unchecked)
    reason = "none loaded" if current is None else f"{current!r} loaded"
    return PartPlan("embedding", "load", name, current, reason, unchecked)


@dataclass(frozen=True, slots=True)
class StateResult:
    """What ``ensure`` did to a node, part by part.

    ``plan`` is the plan from the first look; ``done`` the parts written, in
    order; ``model`` the model part's own result (None when the model is not
    managed or nothing was done); ``after`` the plan from a fresh look once
    done (None for a dry run). A result whose ``after`` still changes rides
    on a :class:`~tabby_async.StateMismatchError`.
    """

    plan: StatePlan
    done: tuple[PartPlan, ...] = ()
    model: EnsureResult | None = None
    after: StatePlan | None = None

    @property
    def changed(self) -> bool:
        """True when anything was written."""
        return bool(self.done)

    @property
    def unchecked(self) -> tuple[str, ...]:
        """What could not be compared."""
        return (self.after or self.plan).unchecked

    @property
    def mismatches(self) -> tuple[PartPlan, ...]:
        """The parts that still differ after acting (empty when converged)."""
        return tuple(p for p in self.after.parts if p.changes) if self.after else ()

    def summary(self) -> str:
        """One line: what was done, or that nothing was needed."""
        if not self.done:
            return "nothing to do: " + self.plan.summary()
        return "; ".join(f"{p.part}: {p.action}" for p in self.done)
