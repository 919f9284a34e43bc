"""Building blocks of the command groups: a group, a leaf command, and "call, then print".

Every group module (``models``, ``lora``, ``templates``, ...) builds its
parser from :func:`group` and :func:`leaf`, and most handlers are one
:func:`show`: one SDK call on a client made from the command line, its answer
printed as JSON with ``--json`` or as the text a formatter makes of it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from .. import AsyncTabbyClient
from .. import errors as E
from .common import (
    ENV_ADMIN_KEY,
    EXIT_AUTH,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    client_from_args,
    connection_options,
    print_json,
)

__all__ = [
    "Handler",
    "admin_key_named",
    "api_key_only",
    "group",
    "leaf",
    "read_document",
    "show",
    "show_listing",
]

T = TypeVar("T")
M = TypeVar("M")
#: A command's handler: the parsed options in, the exit code out.
Handler = Callable[[argparse.Namespace], Awaitable[int]]


def group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    description: str,
    help_text: str | None = None,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command group (``models``, ``models draft``, ``lora``...): its subcommands' subparsers.

    A bare ``tabby-async <group>`` prints the group's usage.
    """
    parser = subparsers.add_parser(name, help=help_text, description=description)
    parser.set_defaults(group_parser=parser)
    return parser.add_subparsers(title="commands", metavar="COMMAND")


def leaf(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help_text: str,
    description: str | None = None,
    *,
    options: argparse.ArgumentParser | None = None,
    interrupt_note: str | None = None,
) -> argparse.ArgumentParser:
    """A command that runs ``handler``, with its group's options after it too.

    ``options`` is the parent parser of those options: the connection
    options by default, the fleet's for a fleet command. Its
    ``command_name`` (for error lines) is its prog without ``tabby-async``:
    ``models list``, ``fleet apply``. ``interrupt_note`` is what Ctrl-C
    prints before the exit (a fleet command's "what was changed").
    """
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        parents=[connection_options() if options is None else options],
    )
    parser.set_defaults(handler=handler, command_name=parser.prog.split(" ", 1)[-1])
    if interrupt_note is not None:
        parser.set_defaults(interrupt_note=interrupt_note)
    return parser


@contextlib.contextmanager
def admin_key_named(client: AsyncTabbyClient) -> Iterator[None]:
    """Name the admin key when the server refused the key of a read route.

    With an admin key, the client sends it on the read routes too (the
    listings show every folder only to it), so a refused "api key" there is
    the admin key: the error line must say so, not blame ``--api-key``.
    """
    try:
        yield
    except E.AuthenticationError:
        if not client.has_admin_key:
            raise
        raise CliError(
            f"the server refused the admin key; check --admin-key or {ENV_ADMIN_KEY}",
            exit_code=EXIT_AUTH,
        ) from None


async def show(
    args: argparse.Namespace,
    call: Callable[[AsyncTabbyClient], Awaitable[T]],
    text: Callable[[T], str],
) -> int:
    """One call; its answer as JSON with ``--json``, else as ``text`` makes it."""
    async with client_from_args(args) as client:
        with admin_key_named(client):
            value = await call(client)
    if args.json:
        print_json(value)
    else:
        print(text(value))
    return EXIT_OK


def api_key_only(client: AsyncTabbyClient) -> bool:
    """True when the client has an api key and no admin key.

    The server's listings then show only what is in use (the loaded model,
    the active adapters, the template in use); a note should say so.
    """
    return client.has_api_key and not client.has_admin_key


async def show_listing(
    args: argparse.Namespace,
    fetch: Callable[[AsyncTabbyClient], Awaitable[T]],
    marks: Callable[[AsyncTabbyClient], Awaitable[M]] | None,
    text: Callable[[T, M | None, bool], str],
) -> int:
    """A listing, with what marks its rows (the loaded model, the active adapters...).

    With ``--json`` only the listing is read and printed. Otherwise ``text``
    gets the listing, the marks (None without ``marks``) and whether the
    listing was read with an api key only (see :func:`api_key_only`).
    """
    async with client_from_args(args) as client:
        with admin_key_named(client):
            listing = await fetch(client)
            marked = None if args.json or marks is None else await marks(client)
        limited = api_key_only(client)
    if args.json:
        print_json(listing)
    else:
        print(text(listing, marked, limited))
    return EXIT_OK


_JSON = (".json",)
_YAML = (".yml", ".yaml")


def read_document(option: str, path: str) -> object:
    """The JSON (``.json``) or YAML (``.yml``/``.yaml``) document in the file an option names.

    Raises :class:`CliError` (usage, exit 2) naming ``option`` and ``path``
    for another extension, a file that cannot be read, or a parse error.
    YAML needs PyYAML (the ``cli`` extra); without it the error says so.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _JSON + _YAML:
        raise CliError(f"{option} {path}: expected a .json, .yml or .yaml file", EXIT_USAGE)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{option} {path}: cannot read it ({exc})", EXIT_USAGE) from None
    if suffix in _YAML:
        return _load_yaml(option, path, text)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"{option} {path}: not valid JSON ({exc})", EXIT_USAGE) from None


def _load_yaml(option: str, path: str, text: str) -> object:
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        raise CliError(
            f"{option} {path}: reading YAML needs PyYAML "
            "(pip install 'tabby-async[cli]'), or give a .json file",
            EXIT_USAGE,
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise CliError(f"{option} {path}: not valid YAML ({problem})", EXIT_USAGE) from None
