"""``tabby-async templates ...``: the loaded model's prompt template.

The template belongs to the loaded model: loading another model replaces it,
and unloading the model clears it. An unknown name exits 4 (not found),
though the server answers it with a bare 500.
"""

from __future__ import annotations

import argparse

from .. import errors as E
from .._client import AsyncTabbyClient
from .._templates import template_stem
from ..types import TemplateList
from ._admin_format import template_list_text
from ._commands import group, leaf, show, show_listing

__all__ = ["register"]


async def _in_use(client: AsyncTabbyClient) -> str | None:
    try:
        card = await client.models.get()
    except E.ModelNotLoadedError:
        return None  # no model, so no template
    return card.parameters.prompt_template if card.parameters is not None else None


async def _list(args: argparse.Namespace) -> int:
    def text(listing: TemplateList, current: str | None, limited: bool) -> str:
        return template_list_text(listing, current, limited=limited)

    return await show_listing(args, lambda c: c.templates.list(), _in_use, text)


async def _switch(args: argparse.Namespace) -> int:
    return await show(
        args,
        lambda c: c.templates.switch(args.name),
        lambda _: f"the loaded model now uses the prompt template {template_stem(args.name)!r}",
    )


async def _unload(args: argparse.Namespace) -> int:
    return await show(
        args,
        lambda c: c.templates.unload(),
        lambda _: "the loaded model no longer uses a prompt template",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``templates`` and its subcommands to the top-level parser."""
    sub = group(
        subparsers,
        "templates",
        "The loaded model's prompt template. Loading another model replaces it; "
        "unloading the model clears it.",
    )
    leaf(sub, "list", _list, "list the prompt templates (* = in use)")
    switch = leaf(sub, "switch", _switch, "use another prompt template (admin key; needs a model)")
    switch.add_argument("name", metavar="NAME", help="the template, with or without .jinja")
    leaf(sub, "unload", _unload, "stop using a prompt template (admin key; needs a model)")
