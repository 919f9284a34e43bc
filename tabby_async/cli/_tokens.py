"""``tabby-async tokens ...``: tokenize and detokenize with the loaded model.

``encode`` takes a text, or ``--messages FILE`` with chat messages (a JSON or
YAML list of ``{"role": ..., "content": ...}``), which the server renders
with the loaded model's prompt template first; without a template that is an
error (exit 1). The three ``--[no-]...-token(s)`` switches, unset, leave the
server's defaults (on).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import msgspec

from ..types import ChatMessage, TokenDecodeResponse
from ._admin_format import tokens_text
from ._args import non_negative_int
from ._commands import group, leaf, read_document, show
from .common import EXIT_USAGE, CliError

__all__ = ["read_messages", "register", "template_var"]


def read_messages(path: str) -> list[ChatMessage]:
    """The chat messages in the JSON or YAML file at ``path`` (a list of message objects).

    Raises :class:`CliError` (usage, exit 2) naming the file and the bad
    entry when it cannot be read or a message is not valid.
    """
    document = read_document("--messages", path)
    if not isinstance(document, list):
        raise CliError(
            f"--messages {path}: expected a list of messages, not {type(document).__name__}",
            EXIT_USAGE,
        )
    try:
        return msgspec.convert(document, list[ChatMessage])
    except msgspec.ValidationError as exc:
        raise CliError(f"--messages {path}: {exc}", EXIT_USAGE) from None


def template_var(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` (an argparse type): one extra template variable.

    VALUE is read as JSON when it is JSON (``true``, ``3``, ``["a"]``), else
    kept as text.
    """
    name, equals, raw = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


def _options(args: argparse.Namespace) -> dict[str, bool]:
    """The switches given on the command line (the others keep the server's defaults)."""
    names = ("add_bos_token", "encode_special_tokens", "decode_special_tokens")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


async def _encode(args: argparse.Namespace) -> int:
    subject: str | list[ChatMessage] = (
        args.text if args.text is not None else read_messages(args.messages)
    )
    variables = dict(args.template_vars) if args.template_vars else None
    return await show(
        args,
        lambda c: c.tokens.encode(subject, template_vars=variables, **_options(args)),
        tokens_text,
    )


async def _decode(args: argparse.Namespace) -> int:
    def text(answer: TokenDecodeResponse) -> str:
        return answer.text

    return await show(args, lambda c: c.tokens.decode(args.ids, **_options(args)), text)


def _add_switches(parser: argparse.ArgumentParser) -> None:
    for name, what in (
        ("add-bos-token", "add the model's BOS token"),
        ("encode-special-tokens", "read special tokens in the text as such"),
        ("decode-special-tokens", "write special tokens out as text"),
    ):
        parser.add_argument(
            f"--{name}",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{what} (default: the server's, on)",
        )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tokens`` and its subcommands to the top-level parser."""
    sub = group(subparsers, "tokens", "Tokenize and detokenize with the loaded model.")
    encode = leaf(
        sub,
        "encode",
        _encode,
        "the token ids of a text, or of chat messages (needs a model)",
        "The token ids of a text, or of chat messages rendered with the loaded "
        "model's prompt template (without a generation prompt).",
    )
    one = encode.add_mutually_exclusive_group(required=True)
    one.add_argument("text", nargs="?", metavar="TEXT", help="the text to tokenize")
    one.add_argument(
        "--messages",
        metavar="FILE",
        help='a .json or .yml list of chat messages, e.g. [{"role": "user", "content": "hi"}]',
    )
    encode.add_argument(
        "--template-var",
        dest="template_vars",
        action="append",
        type=template_var,
        metavar="NAME=VALUE",
        help="an extra variable for the prompt template (VALUE as JSON when it parses); "
        "may be repeated",
    )
    _add_switches(encode)
    decode = leaf(sub, "decode", _decode, "the text of token ids (needs a model)")
    decode.add_argument("ids", nargs="+", type=non_negative_int, metavar="ID", help="a token id")
    _add_switches(decode)
