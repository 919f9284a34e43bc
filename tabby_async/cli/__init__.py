"""The ``tabby-async`` command line (also ``python -m tabby_async``).

::

    tabby-async [--url URL] [--api-key KEY] [--admin-key KEY] [--json] COMMAND ...

    models list | get | props | unload
    models load NAME [--max-seq-len N --gpu-split 20,24 --draft-model NAME ...]
    models download ORG/REPO [--include PATTERN ... --hf-token TOKEN]
    models draft list
    models embedding list | get | load NAME [--device DEV] | unload
    lora list | active | load NAME[:SCALING]... | unload
    templates list | switch NAME | unload
    sampling list | switch PRESET | switch --overrides FILE.json|.yml | unload
    tokens encode TEXT | encode --messages FILE.json | decode ID...
    fleet status | load NAME | ensure NAME | rollout NAME | apply | exporter  --nodes FILE
    gateway --nodes FILE --catalog FILE [--host --port --api-key-env VAR]
    emulator [--port 5000 --models a,b ...]
    demo

The connection comes from the flags or from ``TABBY_URL``, ``TABBY_API_KEY``
and ``TABBY_ADMIN_KEY`` (flags win). Failures print one ``error: ...`` line
on stderr and exit with a code that says what kind of failure it was (see
:data:`~tabby_async.cli.common.EXIT_CODES_HELP`). Keys and tokens are never
printed.

Command groups
--------------
Every top-level command is listed in :data:`GROUPS`: its name, the one line
``--help`` shows for it, and the module that builds it. The list is static
and explicit, and a group's module is imported only when that group is the
command being run:

* ``tabby-async --help`` lists every group from :data:`GROUPS` alone, and
  imports none of their modules;
* ``tabby-async models load ...`` imports the model commands' module and
  nothing of the fleet; ``tabby-async fleet ...`` imports the fleet.

:func:`main` parses twice to do that. First with a parser in which every
group is a stand-in that accepts any arguments: that finds which group was
chosen (and prints the top-level help or a top-level usage error itself).
Then with the parser :func:`build_parser` makes for that group, whose module
is imported and whose ``register(subparsers) -> None`` adds the group's real
commands; the other groups stay stand-ins. A module that fails to import
fails the command loudly, with its own error: it is never skipped quietly.
A module may add several top-level commands (the emulator's adds
``emulator`` and ``demo``): each gets its own line in :data:`GROUPS`, with
the same module. A test checks that every module registers exactly the
commands :data:`GROUPS` names for it.

A group's leaf parsers should

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
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import signal
import sys
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .. import __version__
from .. import errors as E
from ._output import sdk_warnings, visible_output
from .common import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    add_global_options,
    describe_error,
    error_document,
    exit_code_for,
    print_json,
)

__all__ = ["GROUPS", "CommandGroup", "build_parser", "main", "parse_args"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CommandGroup:
    """One top-level command: its name, its line in ``--help``, and the module that builds it.

    ``module`` is an importable module path; its ``register(subparsers)``
    adds the command (and any other command listed with the same module).
    """

    name: str
    help: str
    module: str


#: Every top-level command, in the order ``--help`` lists them.
GROUPS: tuple[CommandGroup, ...] = (
    CommandGroup("models", "list, inspect, load and unload models", f"{__name__}._models"),
    CommandGroup("lora", "list, load and unload LoRA adapters", f"{__name__}._lora"),
    CommandGroup(
        "templates", "list and switch the loaded model's prompt template", f"{__name__}._templates"
    ),
    CommandGroup(
        "sampling", "show, switch and clear the sampler overrides", f"{__name__}._sampling"
    ),
    CommandGroup("tokens", "encode and decode tokens with the loaded model", f"{__name__}._tokens"),
    CommandGroup(
        "fleet",
        "status, load, ensure, rollout and apply on many servers (a nodes file)",
        f"{__name__}.fleet",
    ),
    CommandGroup(
        "gateway",
        "one OpenAI-compatible endpoint for a fleet: routes by model, loads on demand",
        f"{__name__}._gateway",
    ),
    CommandGroup(
        "emulator", "serve a fake TabbyAPI server for trying things out", f"{__name__}._emulator"
    ),
    CommandGroup(
        "demo", "walk the whole model workflow against a built-in emulator", f"{__name__}._emulator"
    ),
)

_DESCRIPTION = """\
Manage the models of a TabbyAPI server from the shell: list, load (with live
progress), inspect, unload and download models, manage embedding models, LoRA
adapters, prompt templates and sampler overrides, tokenize, or try it all
against the built-in emulator (`tabby-async demo`).

The connection comes from --url/--api-key/--admin-key or TABBY_URL,
TABBY_API_KEY, TABBY_ADMIN_KEY (flags win). Reads need the api key (or the
admin key); load, unload and download need the admin key.
"""

#: Where a stand-in group leaves its name in the parsed options.
_CHOSEN = "chosen_group"


def build_parser(group: str | None = None) -> argparse.ArgumentParser:
    """The ``tabby-async`` parser, with the commands of ``group`` built by its module.

    Every other group (all of them when ``group`` is None) is a stand-in:
    listed in ``--help`` with its line from :data:`GROUPS`, accepting any
    arguments, its module not imported. Raises whatever importing the
    group's module raises, and KeyError for a name not in :data:`GROUPS`.
    """
    parser = argparse.ArgumentParser(
        prog="tabby-async",
        description=_DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_options(parser)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    chosen = _group(group).module if group is not None else None
    registered = False
    for entry in GROUPS:
        if entry.module != chosen:
            _stand_in(subparsers, entry)
        elif not registered:  # a module adds all of its commands at once
            importlib.import_module(entry.module).register(subparsers)
            registered = True
    return parser


def _group(name: str) -> CommandGroup:
    for entry in GROUPS:
        if entry.name == name:
            return entry
    raise KeyError(name)


def _stand_in(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], entry: CommandGroup
) -> None:
    # No help option of its own: `tabby-async models --help` is the real group's.
    stand_in = subparsers.add_parser(entry.name, help=entry.help, add_help=False)
    stand_in.add_argument("rest", nargs=argparse.REMAINDER)
    stand_in.set_defaults(**{_CHOSEN: entry.name})


def parse_args(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser for the command ``argv`` names, and ``argv`` parsed with it.

    Raises SystemExit for ``--help``, ``--version`` and usage errors, as
    argparse does.
    """
    scout = build_parser()
    found, _ = scout.parse_known_args(argv)
    chosen = getattr(found, _CHOSEN, None)
    parser = scout if chosen is None else build_parser(chosen)
    return parser, parser.parse_args(argv)


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
    """Run ``tabby-async`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Everything it prints shows control characters as escapes (a server's
    text may hold terminal controls), and the SDK's warnings are
    ``warning: ...`` lines on stderr. With ``--json`` a failure is also a
    JSON document on stdout (see :func:`~tabby_async.cli.common.error_document`).
    """
    with visible_output(), sdk_warnings():
        return _run(sys.argv[1:] if argv is None else argv)


def _run(argv: list[str]) -> int:
    try:
        parser, args = parse_args(argv)
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
    except KeyboardInterrupt as exc:
        message = interrupt_message(args)
        if getattr(args, "json", False):
            document = error_document(exc, args)
            document["error"]["message"] = message
            document["error"].update(getattr(args, "interrupt_details", None) or {})
            print_json(document)
        print(f"\n{message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (E.TabbyError, CliError) as exc:
        if getattr(args, "json", False):
            print_json(error_document(exc, args))
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
