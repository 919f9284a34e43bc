"""What every ``tabby-async`` subcommand shares: options, client, exit codes, output.

This module is the CLI's toolkit for the modules that build command groups
(each listed in :data:`tabby_async.cli.GROUPS`). It imports no optional
dependency: rich is imported only when a live display is shown
(:func:`live_display` says when).

A subcommand handler is any ``handler(args) -> int`` or
``async def handler(args) -> int`` stored with ``parser.set_defaults(handler=...)``.
It may raise :class:`~tabby_async.TabbyError` or :class:`CliError`;
:func:`tabby_async.cli.main` turns those into one ``error: ...`` line on
stderr and the exit code of :func:`exit_code_for`. That line is built from
the error's type and structured attributes (``reason``, ``kind``, the route),
never by reading the server's wording.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from .. import (
    DEFAULT_URL,
    ENV_ADMIN_KEY,
    ENV_API_KEY,
    ENV_URL,
    FROM_ENV,
    AsyncTabbyClient,
    FromEnv,
    Timeout,
)
from .. import errors as E
from ._args import positive_seconds
from ._output import print_json

__all__ = [
    "DEFAULT_URL",
    "ENV_ADMIN_KEY",
    "ENV_API_KEY",
    "ENV_URL",
    "EXIT_AUTH",
    "EXIT_CODES_HELP",
    "EXIT_CONNECTION",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_NOT_LOADED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "client_from_args",
    "connection_options",
    "describe_error",
    "error_document",
    "exit_code_for",
    "live_display",
    "one_line",
    "print_json",
    "rich_available",
    "stderr_is_terminal",
    "stdout_is_terminal",
]

#: Success.
EXIT_OK = 0
#: The server refused or failed the request (server error, failed load, bad request...).
EXIT_ERROR = 1
#: Bad command line or bad input found before anything was sent.
EXIT_USAGE = 2
#: A key is missing, wrong, or not allowed for the route (authentication/permission).
EXIT_AUTH = 3
#: The model, template or preset (or the route) does not exist on the server.
EXIT_NOT_FOUND = 4
#: The command needs a loaded model and none is loaded.
EXIT_NOT_LOADED = 5
#: The server could not be reached, or a timeout fired.
EXIT_CONNECTION = 6
#: Interrupted with Ctrl-C (128 + SIGINT, as shells do).
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    the server refused or failed the request (server error, failed load, other errors)
  2    usage error: bad command line or invalid input (nothing was sent)
  3    authentication or permission: a key is missing or wrong, or the route needs the admin key
  4    not found: no such model, prompt template or sampler preset (or the server lacks the route)
  5    no model (or embedding model) is loaded
  6    cannot reach the server, or a timeout fired
  130  interrupted (Ctrl-C)
"""


#: The ``code`` of a :class:`CliError` that names none, by its exit code.
_CLI_CODES = {
    EXIT_USAGE: "usage_error",
    EXIT_AUTH: "authentication_error",
    EXIT_NOT_FOUND: "not_found",
    EXIT_NOT_LOADED: "model_not_loaded",
    EXIT_CONNECTION: "connection_error",
}


class CliError(Exception):
    """A failure the CLI reports itself: ``message`` goes to stderr, ``exit_code`` out.

    ``code`` is its word in a ``--json`` error document (by default one that
    matches the exit code: ``usage_error`` for 2...).
    """

    def __init__(self, message: str, exit_code: int = EXIT_ERROR, *, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code or _CLI_CODES.get(exit_code, "error")


# --- options and connection -----------------------------------------------------


def _add_connection_arguments(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # On subcommands the defaults are SUPPRESS, so that an option given before
    # the subcommand (``tabby-async --url X models list``) is not overwritten
    # by the subcommand's own default when it is not repeated after it.
    default: Any = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--url",
        default=default,
        help=f"server URL (env {ENV_URL}; default {DEFAULT_URL})",
    )
    group.add_argument(
        "--api-key",
        default=default,
        metavar="KEY",
        help=f"api key, for the read-only calls (env {ENV_API_KEY})",
    )
    group.add_argument(
        "--admin-key",
        default=default,
        metavar="KEY",
        help=f"admin key, for load/unload/download; also works for reads (env {ENV_ADMIN_KEY})",
    )
    group.add_argument(
        "--timeout",
        type=positive_seconds,
        default=default,
        metavar="SECONDS",
        help="total time allowed for each control call (default 30; loads and downloads "
        "have no total bound)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print the result as JSON (the SDK's response Struct) instead of a table",
    )


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The connection options on the top-level parser (with real defaults)."""
    _add_connection_arguments(parser, suppress=False)


def connection_options() -> argparse.ArgumentParser:
    """A parent parser with ``--url --api-key --admin-key --timeout --json``.

    Pass it as ``parents=[connection_options()]`` to every leaf subparser so
    that those options work after the subcommand too
    (``tabby-async models list --json``). Its defaults are suppressed, so the
    values given before the subcommand survive.
    """
    parent = argparse.ArgumentParser(add_help=False)
    _add_connection_arguments(parent, suppress=True)
    return parent


def _key(flag: str | None) -> str | FromEnv | None:
    if flag is None:
        return FROM_ENV  # not given: the client reads the variable
    return flag or None  # an explicit empty flag means "no key"


def client_from_args(args: argparse.Namespace) -> AsyncTabbyClient:
    """A client for the connection the command line names.

    What the command line leaves out the client reads itself: ``--url``,
    ``--api-key`` and ``--admin-key`` not given are ``TABBY_URL``,
    ``TABBY_API_KEY`` and ``TABBY_ADMIN_KEY`` (:data:`~tabby_async.FROM_ENV`);
    an empty key flag means no key. The admin key, when there is one, is
    the key the client sends on the read routes too (TabbyAPI shows every
    folder in its listings to the admin key only).

    Raises :class:`~tabby_async.InvalidInputError` for a bad URL or key,
    naming the flag's parameter or the variable it came from (exit code 2).
    Use it as ``async with client_from_args(args) as client:``. The server's
    URL (as the client reads it: never a user info or a query) is kept on
    ``args`` for the error line.
    """
    url = getattr(args, "url", None) or None  # an empty --url: not given
    api_key = _key(getattr(args, "api_key", None))
    admin_key = _key(getattr(args, "admin_key", None))
    seconds = getattr(args, "timeout", None)
    if seconds is None:
        client = AsyncTabbyClient(url, api_key=api_key, admin_key=admin_key)
    else:
        timeout = Timeout(total=seconds, connect=10.0)
        client = AsyncTabbyClient(url, api_key=api_key, admin_key=admin_key, timeout=timeout)
    args.server_url = str(client.base_url).rstrip("/")
    return client


# --- errors -----------------------------------------------------------------------


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code (see :data:`EXIT_CODES_HELP`) for a failure."""
    if isinstance(exc, CliError):
        return exc.exit_code
    if isinstance(exc, E.InvalidInputError):
        return EXIT_USAGE
    if isinstance(exc, (E.AuthenticationError, E.PermissionDeniedError)):
        return EXIT_AUTH
    if isinstance(exc, (E.ModelNotFoundError, E.NotFoundError)):
        return EXIT_NOT_FOUND
    if isinstance(exc, E.ModelNotLoadedError):
        return EXIT_NOT_LOADED
    if isinstance(exc, (E.TabbyConnectionError, E.TabbyTimeoutError)):
        return EXIT_CONNECTION
    return EXIT_ERROR


#: The longest error line: a server's text (an ImportError's lines, a proxy's
#: page) is cut there, at a word boundary.
ERROR_LINE_LIMIT = 300


def describe_error(exc: BaseException, args: argparse.Namespace | None = None) -> str:
    """One line naming the cause and, where there is one, the fix.

    Built only from the server's messages, the command and the URL (without
    its user info or query): never from a key or token. Line breaks and runs
    of spaces in a server's text become one space, and a long text is cut to
    :data:`ERROR_LINE_LIMIT` characters.
    """
    return one_line(_describe(exc, args), ERROR_LINE_LIMIT)


def error_document(exc: BaseException, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """The ``--json`` form of a failure: ``{"error": {"code", "message", "type"}}``.

    ``message`` is the line :func:`describe_error` gives (so it holds no
    secret either), ``code`` the error's stable code (``interrupted`` for
    Ctrl-C), ``type`` its class's name. A LoRA load the server did not apply
    in full also has the server's ``success`` and ``failure`` lists.
    """
    if isinstance(exc, KeyboardInterrupt):
        code = "interrupted"
    elif isinstance(exc, (E.TabbyError, CliError)):
        code = exc.code
    else:
        code = "error"
    message = describe_error(exc, args) if not isinstance(exc, KeyboardInterrupt) else ""
    document: dict[str, Any] = {}
    if isinstance(exc, E.LoraLoadFailedError):  # the server's answer, for scripts
        document = {"success": list(exc.success), "failure": list(exc.failure)}
    document["error"] = {"code": code, "message": message, "type": type(exc).__name__}
    return document


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``limit``."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 3]
    if " " in cut[limit // 2 :]:  # a word boundary in the second half: cut there
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "..."


def _describe(exc: BaseException, args: argparse.Namespace | None) -> str:
    # Built from the errors' types and structured attributes (reason, kind,
    # path): a server's wording may change, and a proxy's never matches.
    command = getattr(args, "command_name", None) or "this command"
    url = getattr(args, "server_url", None)  # set once a client was made
    name = getattr(args, "name", None)
    named = f" {name!r}" if isinstance(name, str) else ""
    if isinstance(exc, CliError):
        return exc.message
    if isinstance(exc, E.PermissionDeniedError):
        if exc.reason == "invalid":
            return (
                f"the server refused the admin key ({command} needs a valid admin key; "
                f"check --admin-key or {ENV_ADMIN_KEY})"
            )
        if exc.reason == "missing":
            return f"{command} needs the admin key (set --admin-key or {ENV_ADMIN_KEY})"
        return (
            f"the server refused {command} ({exc.message}); it needs the admin key "
            f"(check --admin-key or {ENV_ADMIN_KEY})"
        )
    if isinstance(exc, E.AuthenticationError):
        if exc.reason == "invalid":
            return f"the server refused the api key (check --api-key or {ENV_API_KEY})"
        if exc.reason == "missing":
            return f"the server needs an api key (set --api-key or {ENV_API_KEY})"
        return f"the server refused the request's key ({exc.message}; check --api-key)"
    if isinstance(exc, E.ModelNotFoundError):
        if exc.kind == "embedding":
            return (
                f"embedding model{named} not found on the server ({exc.message}); "
                "see `tabby-async models embedding list`"
            )
        return (
            f"model{named} not found on the server ({exc.message}); see `tabby-async models list`"
        )
    if isinstance(exc, E.AlreadyLoadedError):
        return (
            f"embedding model{named} is already loaded; nothing changed "
            "(unload it first to load it again)"
        )
    if isinstance(exc, E.TemplateNotFoundError):
        return f"prompt template{named} not found on the server; see `tabby-async templates list`"
    if isinstance(exc, E.PresetNotFoundError):
        return f"sampler preset{named} not found on the server; see `tabby-async sampling list`"
    if isinstance(exc, E.NoTemplateError):
        return (
            "chat messages need a prompt template and the loaded model has none; "
            "switch one in with `tabby-async templates switch NAME`"
        )
    if isinstance(exc, E.NotFoundError):
        server = f"the server at {url}" if url else "the server"
        return f"{server} has no route {exc.path} (is it a TabbyAPI server?)"
    if isinstance(exc, E.ModelNotLoadedError):
        if exc.kind == "embedding":
            return (
                "no embedding model is loaded "
                "(load one with `tabby-async models embedding load NAME`)"
            )
        return (
            "no model is loaded (or a load is still running); "
            "load one with `tabby-async models load NAME`"
        )
    return _plain_description(exc, url)


#: Errors described by a few words and their own text (``{message}``: the
#: message alone; ``{text}``: with the status and route; ``{url}``: the
#: server's URL, or "the server"; ``{at}``: " at" and the URL, or nothing);
#: the first match wins.
_PLAIN: tuple[tuple[type[E.TabbyError], str], ...] = (
    (E.TabbyTimeoutError, "timed out talking to {url}: {message}"),
    (E.TabbyConnectionError, "cannot reach the server{at}: {message}"),
    (E.InvalidInputError, "invalid input: {message}"),
    (E.LoadFailedError, "the load failed on the server: {message}"),
    (E.LoraLoadFailedError, "LoRA load failed: {message}"),
    (E.UnprocessableEntityError, "the server refused the request: {message}"),
    (E.ServerError, "server error: {text}"),
    (E.APIStatusError, "the server refused the request: {text}"),
)


def _plain_description(exc: BaseException, url: str | None) -> str:
    if not isinstance(exc, E.TabbyError):
        return f"{type(exc).__name__}: {exc}"
    for cls, template in _PLAIN:
        if isinstance(exc, cls):
            at = f" at {url}" if url else ""
            shown = url or "the server"
            return template.format(url=shown, at=at, message=exc.message, text=exc)
    return exc.message


# --- output -----------------------------------------------------------------------


def stdout_is_terminal() -> bool:
    """True when stdout is an interactive terminal (live progress makes sense)."""
    return _is_terminal(sys.stdout)


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal."""
    return _is_terminal(sys.stderr)


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def rich_available() -> bool:
    """True when the optional ``rich`` package (the ``cli`` extra) can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def live_display(*, json_output: bool) -> bool:
    """True when a live (rich) display can be shown while a command runs.

    Human output goes to stdout, so the display needs stdout to be a
    terminal; with ``--json`` stdout is kept for the document, so the display
    goes to stderr, and needs that to be one. Either way rich must be there.
    """
    terminal = stderr_is_terminal() if json_output else stdout_is_terminal()
    return terminal and rich_available()
