"""Desired state for a whole node, the pure part: plan_state as tables."""

from __future__ import annotations

from typing import Any

import pytest

from tabby_async import (
    DesiredState,
    EmbeddingModelLoadRequest,
    InvalidInputError,
    ModelLoadRequest,
)
from tabby_async._state_plan import Observed, plan_state
from tabby_async.types import ModelCard, ModelCardParameters, SamplerOverrides


def card(name: str = "m", template: str | None = None, **params: Any) -> ModelCard:
    return ModelCard(
        id=name, parameters=ModelCardParameters(prompt_template=template, **params)
    )


def presets(selected: str | None, overrides: dict[str, Any]) -> SamplerOverrides:
    return SamplerOverrides(selected_preset=selected, overrides=overrides, presets=[])


M = ModelLoadRequest(model_name="m")
M_CHATML = ModelLoadRequest(model_name="m", prompt_template="chatml.jinja")
OTHER = ModelLoadRequest(model_name="other")
E = EmbeddingModelLoadRequest(embedding_model_name="org/embed-a")

# (state, observed, {part: action})
PLANS: list[tuple[DesiredState, Observed, dict[str, str]]] = [
    (DesiredState(), Observed(), {}),
    (DesiredState(model=M), Observed(card=card()), {"model": "none"}),
    (DesiredState(model=M), Observed(), {"model": "load"}),
    (DesiredState(model=OTHER), Observed(card=card()), {"model": "load"}),
    # Template: in use (with or without .jinja), not in use, nothing loaded.
    (
        DesiredState(template="chatml"),
        Observed(card=card(template="chatml")),
        {"template": "none"},
    ),
    (
        DesiredState(template="chatml.jinja"),
        Observed(card=card(template="chatml")),
        {"template": "none"},
    ),
    (
        DesiredState(template="chatml"),
        Observed(card=card(template="alpaca")),
        {"template": "switch"},
    ),
    (DesiredState(template="chatml"), Observed(card=card()), {"template": "switch"}),
    (DesiredState(template="chatml"), Observed(), {"template": "switch"}),
    # A model load replaces the template: switch after it, unless the load sets it.
    (
        DesiredState(model=OTHER, template="chatml"),
        Observed(card=card(template="chatml")),
        {"model": "load", "template": "switch"},
    ),
    (
        DesiredState(model=M_CHATML, template="chatml"),
        Observed(),
        {"model": "load", "template": "none"},
    ),
    (
        DesiredState(model=M, template="chatml"),
        Observed(card=card(template="chatml")),
        {"model": "none", "template": "none"},
    ),
    # Sampling: the preset counts as active only with overrides in force.
    (
        DesiredState(sampling_preset="fast"),
        Observed(sampling=presets("fast", {"top_k": {"override": 5}})),
        {"sampling": "none"},
    ),
    (
        DesiredState(sampling_preset="fast"),
        Observed(sampling=presets("fast", {})),
        {"sampling": "switch"},
    ),
    (
        DesiredState(sampling_preset="fast"),
        Observed(sampling=presets("slow", {"top_k": 1})),
        {"sampling": "switch"},
    ),
    (
        DesiredState(sampling_preset="fast"),
        Observed(sampling=presets(None, {})),
        {"sampling": "switch"},
    ),
    # Embedding: by the card id (the folder's name).
    # A nested name's last segment on the card cannot prove the folder: the server decides.
    (DesiredState(embedding=E), Observed(embedding=card("embed-a")), {"embedding": "load"}),
    (
        DesiredState(embedding=E),
        Observed(embedding=card("embed-a"), proven=frozenset({"embedding"})),
        {"embedding": "none"},
    ),
    (DesiredState(embedding=E), Observed(embedding=card("embed-b")), {"embedding": "load"}),
    (DesiredState(embedding=E), Observed(), {"embedding": "load"}),
]


@pytest.mark.parametrize(("state", "observed", "expected"), PLANS)
def test_plan_state(state: DesiredState, observed: Observed, expected: dict[str, str]) -> None:
    plan = plan_state(state, observed)
    assert {p.part: p.action for p in plan.parts} == expected
    assert [p.part for p in plan.parts] == list(expected)  # the order parts are applied in
    assert plan.changes == any(a != "none" for a in expected.values())


def test_parts_are_applied_model_first() -> None:
    state = DesiredState(embedding=E, sampling_preset="p", template="t", model=M)
    assert state.parts == ("model", "template", "sampling", "embedding")


def test_what_cannot_be_compared_is_unchecked() -> None:
    state = DesiredState(
        model=ModelLoadRequest(model_name="m", gpu_split=[1.0]),
        sampling_preset="fast",
        embedding=EmbeddingModelLoadRequest(embedding_model_name="e", embeddings_device="cuda"),
    )
    plan = plan_state(
        state,
        Observed(card=card(), sampling=presets("fast", {"x": 1}), embedding=card("e")),
    )
    assert not plan.changes
    assert "gpu_split" in plan.unchecked
    assert "embedding.embeddings_device" in plan.unchecked
    assert any(u.startswith("sampling_preset") for u in plan.unchecked)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model": "m"}, "model"),
        ({"embedding": M}, "embedding"),
        ({"template": ""}, "template"),
        ({"template": "../x"}, "template"),
        ({"sampling_preset": "/etc/passwd"}, "sampling_preset"),
    ],
)
def test_bad_states_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        DesiredState(**kwargs)
    assert info.value.field == field
