"""Desired state for a whole node, the pure part: what to want, what is seen, what to do.

A node's state is more than its model: the prompt template in use, the
sampler preset, the embedding model. :class:`DesiredState` names the parts
wanted (a part left ``None`` is not managed), :class:`Observed` holds what
the server reported, and :func:`plan_state` says, part by part, what has to
happen. No I/O here: ``AsyncTabbyClient.apply`` reads, plans, applies and
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
  embedding model already loaded ("already loaded", for that very folder
  only), so this part is loaded when it differs, and for a nested name whose
  last segment is the card id the load is what decides: that refusal proves
  the folder is ours.

A part matched only by a name the card cannot prove (a nested model or
embedding name) is not ``verified``: :attr:`StatePlan.met` is then None
("cannot tell") rather than True, and ensure leaves the question to the
server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ._checks import check_folder_name
from ._model_plan import (
    DraftSeen,
    ModelPlan,
    ModelResult,
    check_reachable,
    identity,
    plan_for,
    same_template,
)
from .errors import ErrorCode, InvalidInputError, TabbyError
from .types import EmbeddingModelLoadRequest, ModelCard, ModelLoadRequest, SamplerOverrides

__all__ = [
    "DesiredState",
    "Observed",
    "Part",
    "PartAction",
    "PartPlan",
    "StateMismatchError",
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
    override preset name. ``client.apply(state)`` brings a server to it,
    ``TabbyFleet.apply`` a fleet.

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
        if self.model is not None:
            check_reachable(self.model)
        if self.embedding is not None and not isinstance(self.embedding, EmbeddingModelLoadRequest):
            raise InvalidInputError("embedding", "must be an EmbeddingModelLoadRequest or None")
        if self.template is not None:
            check_folder_name("template", self.template)
        if self.sampling_preset is not None:
            check_folder_name("sampling_preset", self.sampling_preset)

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
    it was not read because the state does not manage it). ``produced`` is
    the card the model request's own last load left, when that card still
    differed from it (see :attr:`~tabby_async.desired.ModelPlan.refused`). ``proven``
    names the parts whose folder the server itself has confirmed (a load it
    answered "already loaded", or our own load), so that their card id counts.
    ``draft`` is the loaded draft when the model part names one and the
    client could read it (None: not read, so the draft is unchecked).
    """

    card: ModelCard | None = None
    sampling: SamplerOverrides | None = None
    embedding: ModelCard | None = None
    produced: ModelCard | None = None
    proven: frozenset[Part] = frozenset()
    draft: DraftSeen | None = None


@dataclass(frozen=True, slots=True)
class PartPlan:
    """One part's plan: the action, what is wanted and what is there, and why.

    ``verified`` is False when the verdict rests on a name the card cannot
    prove (the write is then the server's to decide); ``refused`` is True when
    the server did not apply this part the last time it was asked for it, and
    the node still shows what it did then.
    """

    part: Part
    action: PartAction
    wanted: str
    current: str | None
    reason: str
    unchecked: tuple[str, ...] = ()
    verified: bool = True
    refused: bool = False

    @property
    def changes(self) -> bool:
        """True when the part needs a write."""
        return self.action != "none"

    @property
    def met(self) -> bool | None:
        """Whether the node has this part as wanted: True, False, or None when it cannot be told."""
        if self.refused:
            return False
        if not self.verified:
            return None
        return not self.changes

    def summary(self) -> str:
        """One line: ``part: action (reason)``."""
        return f"{self.part}: {self.action} ({self.reason})"


@dataclass(frozen=True, slots=True)
class StatePlan:
    """Every managed part's plan, in the order they are applied.

    ``model`` is the model part's full :class:`~tabby_async.desired.ModelPlan` (None
    when the state does not manage the model).
    """

    state: DesiredState
    parts: tuple[PartPlan, ...]
    model: ModelPlan | None = None

    @property
    def changes(self) -> bool:
        """True when any part needs a write."""
        return any(p.changes for p in self.parts)

    @property
    def unchecked(self) -> tuple[str, ...]:
        """What could not be compared, over all parts."""
        return tuple(u for p in self.parts for u in p.unchecked)

    @property
    def met(self) -> bool | None:
        """Whether the node runs the state: True, False, or None when the server's answers
        cannot tell (a part matched only by an unprovable name, and none proven wrong)."""
        seen = {p.met for p in self.parts}
        return False if False in seen else None if None in seen else True

    @property
    def verified(self) -> bool:
        """False when some part's verdict rests on a name the card cannot prove."""
        return all(p.verified for p in self.parts)

    @property
    def refused(self) -> tuple[PartPlan, ...]:
        """The parts the server did not apply when last asked, and still does not show."""
        return tuple(p for p in self.parts if p.refused)

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
    model_plan: ModelPlan | None = None
    if state.model is not None:
        model_plan = plan_for(
            state.model,
            observed.card,
            proven="model" in observed.proven,
            produced=observed.produced,
            draft=observed.draft,
        )
        parts.append(_model_part(model_plan))
    if state.template is not None:
        parts.append(_template_part(state.template, state.model, model_plan, observed.card))
    if state.sampling_preset is not None:
        parts.append(_sampling_part(state.sampling_preset, observed.sampling))
    if state.embedding is not None:
        parts.append(
            _embedding_part(state.embedding, observed.embedding, "embedding" in observed.proven)
        )
    return StatePlan(state, tuple(parts), model_plan)


def _model_part(plan: ModelPlan) -> PartPlan:
    loaded = plan.loaded.id if plan.loaded is not None else None
    if plan.refused or not plan.verified or plan.left_out:
        reason = plan.summary().split(": ", 1)[1]
    else:
        reason = "; ".join(str(r) for r in plan.reasons) or "loaded as requested"
    return PartPlan(
        "model",
        plan.action,
        plan.request.model_name,
        loaded,
        reason,
        plan.unchecked,
        verified=plan.met is not None,
        refused=bool(plan.refused),
    )


def _template_part(
    wanted: str,
    model: ModelLoadRequest | None,
    model_plan: ModelPlan | None,
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


def _embedding_part(
    wanted: EmbeddingModelLoadRequest, seen: ModelCard | None, proven: bool
) -> PartPlan:
    name = wanted.embedding_model_name
    unchecked = ("embedding.embeddings_device",) if wanted.embeddings_device else ()
    current = seen.id if seen is not None else None
    who = "other" if current is None else identity(name, current)
    if who == "same" or (who == "unproven" and proven):
        return PartPlan("embedding", "none", name, current, "loaded", unchecked)
    if who == "unproven":
        reason = (
            f"{current!r} loaded, which another folder of that name would show too: "
            "the server decides"
        )
        return PartPlan("embedding", "load", name, current, reason, unchecked, verified=False)
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
    model: ModelResult | None = None
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
        if self.after is None:
            return ()
        return tuple(p for p in self.after.parts if p.changes or p.refused)

    def summary(self) -> str:
        """One line: what was done, or that nothing was needed."""
        if not self.done:
            return "nothing to do: " + self.plan.summary()
        return "; ".join(f"{p.part}: {p.action}" for p in self.done)


class StateMismatchError(TabbyError):
    """After ``ensure``, a part of the node's state still differs from the desired one.

    ``result`` holds what was done, the plan from a fresh look, and the parts
    that still differ (``result.mismatches``).
    """

    code: ClassVar[ErrorCode] = "ensure_mismatch"

    def __init__(self, result: StateResult) -> None:
        detail = "; ".join(p.summary() for p in result.mismatches)
        super().__init__(f"after ensure, the node still differs: {detail}")
        self.result = result
