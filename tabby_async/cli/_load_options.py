"""The options of a load and of a download, and the SDK requests they describe.

``models load``, and the fleet's ``load``/``ensure``/``rollout``, take the
same load options (:func:`add_load_options`) and build the same
:class:`~tabby_async.ModelLoadRequest` from them (:func:`build_load_request`).
An option left out is left out of the request too, so the server's default
applies. ``models download`` has its own (:func:`add_download_options`,
:func:`build_download_request`).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Literal, get_args, get_origin, get_type_hints

from ..types import (
    DownloadRequest,
    DraftModelLoadRequest,
    LoadField,
    ModelLoadRequest,
    load_fields,
)
from ._args import number_list, number_or_auto
from .common import EXIT_USAGE, CliError

__all__ = [
    "ENV_HF_TOKEN",
    "add_download_options",
    "add_load_options",
    "build_download_request",
    "build_load_request",
]

#: Where ``models download`` finds a Hugging Face token when ``--hf-token`` is not given.
ENV_HF_TOKEN = "HF_TOKEN"

_FLAG_OF = {"draft_model_name": "--draft-model"}


def _options(cls: type) -> list[tuple[str, LoadField, Any]]:
    """``(field, declaration, type)`` of every option a request type's fields give."""
    hints = get_type_hints(cls)
    return [(name, rule, hints[name]) for name, rule in load_fields(cls)]


#: The options of the load request's own fields (its name is the positional
#: NAME; the nested draft request has its own group), then the draft's.
_MODEL = [o for o in _options(ModelLoadRequest) if o[0] not in ("model_name", "draft_model")]
_DRAFT = _options(DraftModelLoadRequest)


def _flag(name: str, rule: LoadField) -> str:
    return rule.flag or "--" + name.replace("_", "-")


def build_load_request(args: argparse.Namespace) -> ModelLoadRequest:
    """The ModelLoadRequest the load options describe (unset options omitted)."""
    fields: dict[str, Any] = {"model_name": args.name}
    for name, _rule, _hint in _MODEL:
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    draft = {
        name: getattr(args, name)
        for name, _rule, _hint in _DRAFT[1:]
        if getattr(args, name, None) is not None
    }
    if getattr(args, "draft_model_name", None) is not None:
        fields["draft_model"] = DraftModelLoadRequest(
            draft_model_name=args.draft_model_name, **draft
        )
    elif draft:
        given = ", ".join(_flag(name, rule) for name, rule, _ in _DRAFT if name in draft)
        raise CliError(f"{given} need --draft-model NAME", exit_code=EXIT_USAGE)
    return ModelLoadRequest(**fields)


def build_download_request(args: argparse.Namespace) -> DownloadRequest:
    """The DownloadRequest of ``models download``; the token comes from the flag or HF_TOKEN."""
    token = args.hf_token if args.hf_token is not None else os.environ.get(ENV_HF_TOKEN) or None
    fields: dict[str, Any] = {"repo_id": args.repo}
    optional = {
        "repo_type": args.repo_type,
        "folder_name": args.folder_name,
        "revision": args.revision,
        "token": token or None,
        "include": args.include,
        "exclude": args.exclude,
        "chunk_limit": args.chunk_limit,
        "timeout": args.server_timeout,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return DownloadRequest(**fields)


def _switch(group: argparse._ArgumentGroup, flag: str, help_text: str) -> None:
    """A ``--flag/--no-flag`` pair; neither given leaves the server's default."""
    group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """The model name and every load option, in groups (model, GPU placement, draft).

    Each option comes from its request field's declaration: the flag is the
    field's name with dashes, its value is read as the field's type says (a
    switch for a bool, a comma-separated list for numbers per GPU), and its
    help text and group are the declaration's.
    """
    parser.add_argument("name", help="the model folder's name on the server")
    groups = {
        "model": parser.add_argument_group(
            "model options (unset options keep the server's defaults)"
        ),
        "gpus": parser.add_argument_group("GPU placement"),
        "draft": parser.add_argument_group("draft model (speculative decoding)"),
    }
    for name, rule, hint in (*_MODEL, *_DRAFT):
        group = groups[rule.group]
        flag = _flag(name, rule)
        kind = _kind(hint)
        if kind is bool:
            group.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=rule.help or None,
            )
        else:
            group.add_argument(
                flag, dest=name, type=kind, metavar=rule.metavar, help=rule.help or None
            )


def _kind(hint: Any) -> Any:
    """How an option's text becomes the field's value, from the field's type."""
    kinds = {a for a in get_args(hint) if a is not type(None)} or {hint}
    if bool in kinds:
        return bool
    if int in kinds:
        return int
    if any(get_origin(k) is list for k in kinds):
        return number_list
    if float in kinds:
        # A float or the literal "auto" (rope alpha) reads either; a plain float too.
        return number_or_auto if any(get_origin(k) is Literal for k in kinds) else float
    return str


def add_download_options(parser: argparse.ArgumentParser) -> None:
    """The repository and the options of ``models download``."""
    parser.add_argument("repo", help="the Hugging Face repository, e.g. org/name")
    parser.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="only files matching this glob (repeatable; default: all)",
    )
    parser.add_argument(
        "--exclude", action="append", metavar="PATTERN", help="skip files matching (repeatable)"
    )
    parser.add_argument("--revision", help="branch, tag or commit")
    parser.add_argument(
        "--folder-name", metavar="NAME", help="folder to create (default: the repo name)"
    )
    parser.add_argument("--repo-type", metavar="TYPE", help="model (default) or lora")
    parser.add_argument(
        "--hf-token",
        metavar="TOKEN",
        help=f"Hugging Face token for private repos (env {ENV_HF_TOKEN}; never printed)",
    )
    parser.add_argument(
        "--chunk-limit", type=int, metavar="BYTES", help="download chunk size on the server"
    )
    parser.add_argument(
        "--server-timeout",
        type=int,
        metavar="SECONDS",
        help="the server's own timeout for the download",
    )
