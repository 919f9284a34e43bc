"""Building blocks of the command groups: a group, a leaf command, and "call, then print".

Every group module (``models``, ``lora``, ``templates``, ...) builds its
parser from :func:`group` and :func:`leaf`, and most handlers are one
:func:`show`: one SDK call on a client made from the command line, its answer
printed as JSON with ``--json`` or as the text a formatter makes of it.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from .. import errors as E
from .._client import AsyncTabbyClient
from .common import (
    ENV_ADMIN_KEY,
    EXIT_AUTH,
    EXIT_OK,
    CliError,
    client_from_args,
    connection_from_args,
    connection_options,
    print_json,
)

__all__ = ["Handler", "admin_key_named", "group", "leaf", "show"]

T = TypeVar("T")
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
) -> argparse.ArgumentParser:
    """A command that runs ``handler``, with the connection options after it too.

    Its ``command_name`` (for error lines) is its prog without ``tabby-async``:
    ``models list``, ``lora load``.
    """
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        parents=[connection_options()],
    )
    parser.set_defaults(handler=handler, command_name=parser.prog.split(" ", 1)[-1])
    return parser


@contextlib.contextmanager
def admin_key_named(args: argparse.Namespace) -> Iterator[None]:
    """Name the admin key when the server refused the key of a read route.

    With an admin key set, the client sends it on the read routes too (the
    listings show every folder only to it), so a refused "api key" there is
    the admin key: the error line must say so, not blame ``--api-key``.
    """
    try:
        yield
    except E.AuthenticationError:
        if connection_from_args(args).admin_key is None:
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
    with admin_key_named(args):
        async with client_from_args(args) as client:
            value = await call(client)
    if args.json:
        print_json(value)
    else:
        print(text(value))
    return EXIT_OK
