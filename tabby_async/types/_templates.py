"""Prompt templates: the listing and the switch request."""

from __future__ import annotations

import msgspec

from .._checks import check_folder_name
from ._base import RequestStruct, ResponseStruct

__all__ = ["TemplateList", "TemplateSwitchRequest"]


class TemplateList(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """Template names (without ``.jinja``), in the server's order.

    With the admin key: every template the server has. With an api key: only
    the one in use, or none.
    """

    object: str | None = "list"
    data: list[str] = msgspec.field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The template names (``data``)."""
        return list(self.data)


class TemplateSwitchRequest(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """What ``POST /v1/template/switch`` takes."""

    prompt_template_name: str

    def __post_init__(self) -> None:
        check_folder_name("name", self.prompt_template_name)
