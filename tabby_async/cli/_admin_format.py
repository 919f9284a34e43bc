"""Plain-text presentation of the admin areas: LoRA adapters, templates, sampler overrides, tokens.

One formatter per SDK type, laid out with the CLI's :func:`format_table` and
:func:`format_fields`. Everything here is pure (values in, text out), tested
as tables of data and the text they give.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from ..desired import template_stem
from ..types import LoraList, LoraLoadResponse, SamplerOverrides, TemplateList, TokenEncodeResponse
from ._format import format_fields, format_table

__all__ = [
    "lora_active_text",
    "lora_list_text",
    "lora_load_text",
    "sampling_text",
    "template_list_text",
    "tokens_text",
]


def _sorted(names: Collection[str]) -> list[str]:
    return sorted(names, key=str.lower)


def _limited_note(what: str, shown: str) -> str:
    return f"\n(an api key sees {shown}; list every {what} with the admin key)"


def lora_list_text(listing: LoraList, active: Collection[str], *, limited: bool) -> str:
    """The LoRA adapter folders as an ``ID ACTIVE`` table sorted by name, ``*`` marking ``active``.

    ``limited``: read with an api key, to which the server shows only the
    active adapters; a note says so.
    """
    note = _limited_note("adapter", "only the active ones") if limited else ""
    if not listing.data:
        return f"no LoRA adapters to show{note}"
    rows = [(name, "*" if name in active else "") for name in _sorted(listing.ids)]
    return format_table(("ID", "ACTIVE"), rows) + note


def lora_active_text(listing: LoraList) -> str:
    """The adapters applied to the loaded model, as an ``ID SCALING`` table."""
    if not listing.data:
        return "no LoRA adapter is active"
    cards = sorted(listing.data, key=lambda card: card.id.lower())
    return format_table(("ID", "SCALING"), [(card.id, card.scaling) for card in cards])


def lora_load_text(answer: LoraLoadResponse) -> str:
    """The line for a LoRA load that the server applied in full."""
    return "applied LoRA adapter(s): " + (", ".join(answer.success) or "none")


def template_list_text(listing: TemplateList, current: str | None, *, limited: bool) -> str:
    """The prompt templates as a ``NAME IN USE`` table sorted by name, ``*`` marking ``current``.

    ``current`` is the loaded model's template (with or without ``.jinja``).
    ``limited``: read with an api key, to which the server shows only the
    template in use.
    """
    note = _limited_note("template", "only the one in use") if limited else ""
    if not listing.data:
        return f"no prompt templates to show{note}"
    in_use = template_stem(current) if current is not None else None
    rows = [(name, "*" if template_stem(name) == in_use else "") for name in _sorted(listing.data)]
    return format_table(("NAME", "IN USE"), rows) + note


def _override(name: str, value: object) -> str:
    return f"{name}={json.dumps(value, sort_keys=True, separators=(',', ':'))}"


def sampling_text(state: SamplerOverrides, *, limited: bool) -> str:
    """The sampler overrides in force, the last preset loaded, and the presets.

    The last preset loaded is labelled as such: the server keeps reporting it
    after a switch to a dict of overrides and after an unload, so it does not
    say what is in force; the overrides do. ``limited``: read with an api
    key, to which the server lists no presets.
    """
    overrides = [_override(name, state.overrides[name]) for name in sorted(state.overrides)]
    last = state.selected_preset
    presets = _sorted(state.presets or [])
    text = format_fields(
        [
            ("overrides", "; ".join(overrides) or "none in force"),
            ("last preset loaded", f"{last} (not necessarily in force)" if last else None),
            ("presets", presets or None),
        ]
    )
    return text + (_limited_note("preset", "no presets") if limited else "")


def tokens_text(answer: TokenEncodeResponse) -> str:
    """The token count, and the ids separated by spaces."""
    return format_fields(
        [("length", answer.length), ("tokens", " ".join(str(t) for t in answer.tokens) or None)]
    )
