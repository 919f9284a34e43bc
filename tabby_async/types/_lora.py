"""LoRA adapters: listings, the load request and the server's per-adapter answer."""

from __future__ import annotations

import math

import msgspec

from .._checks import check_bool, check_folder_name
from ..errors import InvalidInputError
from ._base import RequestStruct, ResponseStruct

__all__ = ["LoraCard", "LoraList", "LoraLoadItem", "LoraLoadRequest", "LoraLoadResponse"]


class LoraCard(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """One LoRA adapter folder (``scaling`` is set for an active adapter, if at all)."""

    id: str
    object: str | None = "lora"
    created: int | float | None = 0
    owned_by: str | None = "tabbyAPI"
    scaling: float | None = None


class LoraList(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """A listing of LoRA adapters, in the server's order."""

    object: str | None = "list"
    data: list[LoraCard] = msgspec.field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """The adapter names, in the server's order."""
        return [card.id for card in self.data]


class LoraLoadItem(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """One adapter to load: its folder ``name`` and ``scaling`` (None: the server's 1.0)."""

    name: str
    scaling: float | None = None

    def __post_init__(self) -> None:
        check_folder_name("loras[].name", self.name)
        scaling = self.scaling
        if scaling is not None and (
            isinstance(scaling, bool)
            or not isinstance(scaling, (int, float))
            or not math.isfinite(scaling)
        ):
            raise InvalidInputError("loras[].scaling", f"must be a finite number, not {scaling!r}")


class LoraLoadRequest(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """What ``POST /v1/lora/load`` takes: at least one adapter."""

    loras: list[LoraLoadItem]
    skip_queue: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.loras, list) or not self.loras:
            raise InvalidInputError("loras", "must be a non-empty list of LoraLoadItem")
        for i, item in enumerate(self.loras):
            if not isinstance(item, LoraLoadItem):
                raise InvalidInputError(f"loras[{i}]", "must be a LoraLoadItem (name, scaling)")
        check_bool("skip_queue", self.skip_queue)


class LoraLoadResponse(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """The server's answer to a LoRA load: which adapters it applied, which it did not.

    The answer is a 200 either way: only an empty ``failure`` means success.
    """

    success: list[str] = msgspec.field(default_factory=list)
    failure: list[str] = msgspec.field(default_factory=list)
