"""``tabby-async lora ...``: the LoRA adapters of the loaded model.

A load the server answers with adapters it did not apply is a failure (exit
1), though the server says 200: with ``--json`` its answer (``success`` and
``failure``) is printed all the same, for scripts, beside the ``error``.
"""

from __future__ import annotations

import argparse
import math

from .. import AsyncTabbyClient
from .. import errors as E
from ..types import LoraList, LoraLoadItem
from ._admin_format import lora_active_text, lora_list_text, lora_load_text
from ._commands import group, leaf, show, show_listing

__all__ = ["lora_item", "register"]


def lora_item(text: str) -> LoraLoadItem:
    """``NAME`` or ``NAME:SCALING`` (an argparse type): one adapter to load.

    The scaling is what follows the last colon, so a name that holds a colon
    needs its scaling spelt out (``my:lora:1``).
    """
    name, colon, scaling = text.rpartition(":")
    if not colon:
        name, scaling = text, ""
    value: float | None = None
    if colon:
        try:
            value = float(scaling)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected NAME or NAME:SCALING with a number after the colon, got {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"the scaling must be a finite number: {text!r}")
    try:
        return LoraLoadItem(name=name, scaling=value)
    except E.InvalidInputError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


async def _active_names(client: AsyncTabbyClient) -> set[str]:
    try:
        return set((await client.lora.active()).ids)
    except E.ModelNotLoadedError:
        return set()  # no model, so no adapter applied


async def _list(args: argparse.Namespace) -> int:
    def text(listing: LoraList, active: set[str] | None, limited: bool) -> str:
        return lora_list_text(listing, active or set(), limited=limited)

    return await show_listing(args, lambda c: c.lora.list(), _active_names, text)


async def _active(args: argparse.Namespace) -> int:
    return await show(args, lambda c: c.lora.active(), lora_active_text)


async def _load(args: argparse.Namespace) -> int:
    # A LoraLoadFailedError's --json document carries the server's success and
    # failure lists (cli.common.error_document).
    return await show(
        args,
        lambda c: c.lora.load(loras=args.loras, skip_queue=args.skip_queue),
        lora_load_text,
    )


async def _unload(args: argparse.Namespace) -> int:
    return await show(args, lambda c: c.lora.unload(), lambda _: "unloaded every LoRA adapter")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lora`` and its subcommands to the top-level parser."""
    sub = group(
        subparsers,
        "lora",
        "LoRA adapters of the loaded model. A server whose backend cannot apply LoRAs "
        "(exllamav3) answers every load with the adapters under 'failure': that is an "
        "error here (exit 1).",
    )
    leaf(sub, "list", _list, "list the LoRA adapter folders (* = active)")
    leaf(sub, "active", _active, "list the adapters applied to the loaded model")
    load = leaf(
        sub,
        "load",
        _load,
        "apply LoRA adapters to the loaded model (admin key)",
        "Apply LoRA adapters to the loaded model. Exits 1 when the server did not "
        "apply every adapter, though it answers 200.",
    )
    load.add_argument(
        "loras",
        nargs="+",
        type=lora_item,
        metavar="NAME[:SCALING]",
        help="an adapter folder, with its scaling (default: the server's, 1.0)",
    )
    load.add_argument(
        "--skip-queue",
        action="store_true",
        default=None,
        help="apply at once instead of waiting for running generations",
    )
    leaf(sub, "unload", _unload, "remove every LoRA adapter from the loaded model (admin key)")
