"""The ``tabby-async`` command line (also ``python -m tabby_async``).

::

    tabby-async [--url URL] [--api-key KEY] [--admin-key KEY] [--json] COMMAND ...

    models list | get | props | unload
    models load NAME [--max-seq-len N --gpu-split 20,24 --draft-model NAME ...]
    models download ORG/REPO [--include PATTERN ... --hf-token TOKEN]
    models draft list
    models embedding list | get | load NAME [--device DEV] | unload
    emulator [--port 5000 --models a,b ...]
    demo

The connection comes from the flags or from ``TABBY_URL``, ``TABBY_API_KEY``
and ``TABBY_ADMIN_KEY`` (flags win). Failures print one ``error: ...`` line
on stderr and exit with a code that says what kind of failure it was (see
:data:`~tabby_async.cli.common.EXIT_CODES_HELP`). Keys and tokens are never
printed.

Plug-in hook
------------
Other command groups live in their own modules and plug in through
:data:`PLUGINS`: for each name, :func:`build_parser` imports
``tabby_async.cli.<name>`` if it exists and calls its
``register(subparsers) -> None`` with the top-level subparsers action
(``tabby_async.cli.fleet`` adds ``fleet status|load|ensure|rollout``). A
plug-in's leaf parsers should

* take ``parents=[common.connection_options()]`` so ``--url``/``--json``/...
  work after the subcommand too;
* ``set_defaults(handler=fn, command_name="fleet status")``, where ``fn`` is
  ``fn(args) -> int`` or ``async fn(args) -> int``. An async handler runs in
  a fresh event loop; Ctrl-C cancels it and the command exits 130;
* raise :class:`~tabby_async.TabbyError` or :class:`common.CliError` on failure
  (:func:`main` prints them and picks the exit code), and build clients with
  :func:`common.client_from_args`;
* optionally ``set_defaults(interrupt_note="...{name}...")``: what Ctrl-C
  should tell the user (formatted with the parsed options).

A group parser that needs a subcommand should ``set_defaults(group_parser=p)``
so that a bare ``tabby-async fleet`` prints that group's help.

A plug-in module that is missing is skipped; one that fails to import for
another reason is reported as a warning and skipped, so the core commands
always work.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .. import errors as E
from .._version import __version__
from . import _emulator, _models
from .common import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    add_global_options,
    describe_error,
    exit_code_for,
)

__all__ = ["PLUGINS", "build_parser", "main"]

#: Sub-modules of ``tabby_async.cli`` that add command groups, if present.
PLUGINS: tuple[str, ...] = ("fleet",)

T = TypeVar("T")

_DESCRIPTION = """\
Manage the models of a TabbyAPI server from the shell: list, load (with live
progress), inspect, unload and download models, manage embedding models, or
try it all against the built-in emulator (`tabby-async demo`).

The connection comes from --url/--api-key/--admin-key or TABBY_URL,
TABBY_API_KEY, TABBY_ADMIN_KEY (flags win). Reads need the api key (or the
admin key); load, unload and download need the admin key.
"""


def build_parser() -> argparse.ArgumentParser:
    """The whole ``tabby-async`` parser, plug-ins included."""
    parser = argparse.ArgumentParser(
        prog="tabby-async",
        description=_DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_options(parser)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    _models.register(subparsers)
    _emulator.register(subparsers)
    for name in PLUGINS:
        _register_plugin(name, subparsers)
    return parser


def _register_plugin(
    name: str, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]
) -> None:
    module_name = f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return  # not installed / not written yet
        print(f"warning: the {name} commands are unavailable: {exc}", file=sys.stderr)
        return
    except Exception as exc:  # a broken plug-in must not break the core commands
        print(f"warning: the {name} commands are unavailable: {exc}", file=sys.stderr)
        return
    register: Callable[[Any], None] | None = getattr(module, "register", None)
    if register is None:
        print(f"warning: {module_name} has no register(subparsers)", file=sys.stderr)
        return
    register(subparsers)


async def _interruptible(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``, turning the first Ctrl-C into its cancellation.

    Cancelling (rather than raising KeyboardInterrupt wherever the loop happens
    to be) lets ``async with`` blocks close streams and sessions cleanly. A
    second Ctrl-C raises KeyboardInterrupt as usual.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        loop.remove_signal_handler(signal.SIGINT)
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):
        installed = False  # not the main thread, or Windows: Python's default applies
    try:
        return await awaitable
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if installed and not interrupted:
            loop.remove_signal_handler(signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    """Run ``tabby-async`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse said why)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler = getattr(args, "handler", None)
    if handler is None:
        group: argparse.ArgumentParser = getattr(args, "group_parser", parser)
        group.print_usage(sys.stderr)
        print(f"{group.prog}: error: a command is required (see --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = handler(args)
        if inspect.isawaitable(result):
            result = asyncio.run(_interruptible(result))
        return int(result)
    except KeyboardInterrupt:
        print(f"\n{interrupt_message(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (E.TabbyError, CliError) as exc:
        print(f"error: {describe_error(exc, args)}", file=sys.stderr)
        return exit_code_for(exc)
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (`| head`): not worth a traceback
        return EXIT_ERROR


def interrupt_message(args: argparse.Namespace) -> str:
    """The line for Ctrl-C: the command's ``interrupt_note`` if it set one.

    ``interrupt_note`` (a parser default) may use ``{name}`` and the other
    parsed options, e.g. to say that the server may finish a load on its own.
    """
    note = getattr(args, "interrupt_note", None)
    if isinstance(note, str):
        try:
            return f"interrupted: {note.format(**vars(args))}"
        except (KeyError, IndexError, ValueError):
            return f"interrupted: {note}"
    return "interrupted"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush stays quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
