"""Sampler overrides: the server's state and the switch request."""

from __future__ import annotations

from typing import Any

import msgspec

from .._checks import check_folder_name, check_json
from ..errors import InvalidInputError
from ._base import RequestStruct, ResponseStruct

__all__ = ["SamplerOverrides", "SamplerOverridesSwitchRequest"]


class SamplerOverrides(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """The sampler overrides in force, and the presets the server has.

    ``overrides`` is what applies to every generation. ``selected_preset`` is
    the last preset *loaded*, not necessarily what is active: switching to a
    dictionary of overrides, or unloading them, leaves it unchanged.
    ``presets`` lists the preset names, with the admin key only (empty
    otherwise).
    """

    selected_preset: str | None = None
    overrides: dict[str, Any] = msgspec.field(default_factory=dict)
    presets: list[str] | None = msgspec.field(default_factory=list)


class SamplerOverridesSwitchRequest(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """What ``POST /v1/sampling/override/switch`` takes: a preset OR a dict, exactly one."""

    preset: str | None = None
    overrides: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.overrides is None):
            raise InvalidInputError(
                "preset/overrides", "give exactly one: a preset name or a dict of overrides"
            )
        if self.preset is not None:
            check_folder_name("preset", self.preset)
        if self.overrides is not None:
            if not isinstance(self.overrides, dict) or not self.overrides:
                raise InvalidInputError("overrides", "must be a non-empty dict")
            for key in self.overrides:
                if not isinstance(key, str) or not key:
                    raise InvalidInputError("overrides", f"keys must be sampler names, not {key!r}")
            check_json("overrides", self.overrides)
