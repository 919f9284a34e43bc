"""``tabby-async sampling ...``: the server's sampler overrides.

``switch`` takes a preset name, or ``--overrides FILE`` with a dict of
overrides in JSON (``.json``) or YAML (``.yml``/``.yaml``, the format of the
server's own preset files; YAML needs PyYAML, which the ``cli`` extra
installs). Overrides need no loaded model and stay across model loads.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..types import SamplerOverrides
from ._admin_format import sampling_text
from ._commands import group, leaf, read_document, show, show_listing
from .common import EXIT_USAGE, CliError

__all__ = ["read_overrides", "register"]


def read_overrides(path: str) -> dict[str, Any]:
    """The dict of sampler overrides in the JSON or YAML file at ``path``.

    Raises :class:`CliError` (usage, exit 2) for a file that cannot be read
    (see :func:`read_document`) or that does not hold a mapping.
    """
    document = read_document("--overrides", path)
    if not isinstance(document, dict):
        raise CliError(
            f"--overrides {path}: expected a mapping of sampler names to overrides, "
            f"not {type(document).__name__}",
            EXIT_USAGE,
        )
    return document


async def _list(args: argparse.Namespace) -> int:
    def text(state: SamplerOverrides, _marks: None, limited: bool) -> str:
        return sampling_text(state, limited=limited)

    return await show_listing(args, lambda c: c.sampling.list(), None, text)


async def _switch(args: argparse.Namespace) -> int:
    overrides = read_overrides(args.overrides) if args.overrides is not None else None
    done = (
        f"applied the sampler preset {args.name!r}"
        if args.name is not None
        else f"applied {len(overrides or {})} sampler override(s) from {args.overrides}"
    )
    return await show(
        args,
        lambda c: c.sampling.switch(preset=args.name, overrides=overrides),
        lambda _: done,
    )


async def _unload(args: argparse.Namespace) -> int:
    return await show(
        args, lambda c: c.sampling.unload(), lambda _: "cleared the sampler overrides"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sampling`` and its subcommands to the top-level parser."""
    sub = group(
        subparsers,
        "sampling",
        "Sampler overrides: applied to every generation, kept across model loads. The "
        "server's 'selected preset' is the last preset loaded, not necessarily what is "
        "in force: a switch to a dict of overrides or an unload leaves it as it was.",
    )
    leaf(sub, "list", _list, "show the overrides in force, the last preset loaded, the presets")
    switch = leaf(
        sub,
        "switch",
        _switch,
        "apply a preset, or a dict of overrides from a file (admin key)",
        "Apply a sampler override preset by name, or (--overrides) a dict of overrides "
        "from a JSON or YAML file: exactly one of the two.",
    )
    one = switch.add_mutually_exclusive_group(required=True)
    one.add_argument("name", nargs="?", metavar="PRESET", help="the preset's name")
    one.add_argument(
        "--overrides",
        metavar="FILE",
        help="a .json or .yml file mapping sampler names to overrides, "
        "e.g. {\"temperature\": {\"override\": 0.7, \"force\": true}}",
    )
    leaf(sub, "unload", _unload, "clear the sampler overrides (admin key)")
