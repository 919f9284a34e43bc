"""The CLI's output boundary: no control character from a server reaches the terminal.

Model ids, template names and a server's error details are the server's
text, and a hostile or broken server can put terminal controls in them: an
ESC sequence that clears the screen or writes the clipboard (OSC 52), a BEL,
a NUL. :func:`visible` shows every C0 and C1 control and DEL as an escape
(``\\x1b``), keeping only the newline the CLI prints between lines.

:func:`visible_output` applies it to everything written to stdout and stderr
while a command runs (plain lines, tables, error lines, progress lines,
warnings that reach stderr). A live rich display writes its own escape
sequences, so it gets the unfiltered stream (:func:`terminal_stream`) and
passes each text it shows through :func:`visible` itself. JSON output is
already safe: :func:`print_json` writes control characters as JSON escapes
(``\\u001b``), so the document decodes to exactly the server's text.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO, cast

import msgspec

from .. import errors as E
from ._format import cli_words

__all__ = [
    "json_text",
    "print_json",
    "sdk_warnings",
    "terminal_stream",
    "visible",
    "visible_output",
]

#: C0 controls but the newline, DEL, and C1 controls: what a terminal may act on.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
#: What JSON leaves raw among those (it escapes only C0): DEL and C1.
_JSON_RAW_CONTROL = re.compile("[\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def visible(text: str) -> str:
    """``text`` with every control character (C0 but newline, DEL, C1) shown as ``\\xNN``.

    ``"\\x1b[2J"`` becomes ``"\\\\x1b[2J"``: the ESC is shown, never acted on.
    """
    return _CONTROL.sub(_escape, text)


class _VisibleStream:
    """A text stream that writes through :func:`visible` to the stream it wraps."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        self.raw.write(visible(text))
        return len(text)

    def writelines(self, lines: Iterator[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding...
        return getattr(self.raw, name)


@contextlib.contextmanager
def visible_output() -> Iterator[None]:
    """While the block runs, stdout and stderr show control characters as escapes."""
    out, err = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, _VisibleStream(out)) if out is not None else out
    sys.stderr = cast(TextIO, _VisibleStream(err)) if err is not None else err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


class _WarningLines(logging.Handler):
    """The SDK's warnings as ``warning: NODE: message`` lines on stderr, in the CLI's words."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = " ".join(cli_words(record.getMessage()).split())
            # A record logged inside a fleet operation carries its node.
            node = getattr(record, "tabby_node", None)
            if node and not message.startswith(f"{node}: "):
                message = f"{node}: {message}"
            sys.stderr.write(f"warning: {message}\n")
            sys.stderr.flush()
        except Exception:  # a broken stream must not fail the command
            self.handleError(record)


@contextlib.contextmanager
def sdk_warnings() -> Iterator[None]:
    """While the block runs, the SDK's warnings are ``warning: ...`` lines on stderr.

    Each names its fleet node, if any, and the CLI's flags and commands
    instead of the SDK's parameters (the CLI's own wording).
    """
    handler = _WarningLines(logging.WARNING)
    logger = logging.getLogger("tabby_async")  # the SDK's one logger
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def terminal_stream(*, stderr: bool = False) -> TextIO:
    """The real stdout (or stderr), for a rich display, which writes escape sequences itself.

    Whatever a display shows from a server must go through :func:`visible` first.
    """
    stream = sys.stderr if stderr else sys.stdout
    raw = stream.raw if isinstance(stream, _VisibleStream) else stream
    return cast(TextIO, raw)


def _json_default(value: Any) -> Any:
    if isinstance(value, E.TabbyError):  # a fleet node's error
        return {"code": value.code, "message": value.message}
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def json_text(value: Any) -> str:
    """``value`` as one line of JSON, with no raw control character in it.

    JSON escapes the C0 controls; DEL and the C1 controls, which it may leave
    raw, are written as ``\\u007f``...: the same string, once decoded.
    """
    text = msgspec.json.encode(value, enc_hook=_json_default).decode()
    return _JSON_RAW_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def print_json(value: Any, file: TextIO | None = None) -> None:
    """Print ``value`` (a Struct, list, dict, None...) as one line of JSON.

    A :class:`~tabby_async.TabbyError` inside it (a fleet node's failure)
    becomes ``{"code": ..., "message": ...}``.
    """
    out = file if file is not None else sys.stdout
    out.write(json_text(value) + "\n")
    out.flush()
