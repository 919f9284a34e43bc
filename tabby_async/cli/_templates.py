"""``tabby-async templates ...``: the loaded model's prompt template.

The template belongs to the loaded model: loading another model replaces it,
and unloading the model clears it. An unknown name exits 4 (not found),
though the server answers it with a bare 500.
"""

from __future__ import annotations

import argparse

from .. import AsyncTabbyClient
from .. import errors as E
from ..desired import reported_template
from ..types import TemplateList
from ._admin_format import template_list_text
from ._commands import admin_key_named, group, leaf, show, show_listing
from .common import EXIT_OK, client_from_args, print_json

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
    async def switch(client: AsyncTabbyClient) -> str | None:
        await client.templates.switch(args.name)
        try:  # what the card says now, rather than what we expect it to say
            return await _in_use(client)
        except E.TabbyError:
            return reported_template(args.name)

    async with client_from_args(args) as client:
        with admin_key_named(client):
            now = await switch(client)
    if args.json:
        print_json(None)  # the switch's own answer: the server's null
    elif now is None:
        print("the server took the switch, but the loaded model reports no prompt template")
    else:
        print(f"the loaded model now uses the prompt template {now!r}")
    return EXIT_OK


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
