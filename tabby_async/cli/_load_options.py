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
from typing import Any

from ..types import DownloadRequest, DraftModelLoadRequest, ModelLoadRequest
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

_DRAFT_OPTIONS = ("draft_rope_scale", "draft_rope_alpha", "draft_gpu_split", "draft_cache_mode")
_LOAD_OPTIONS = (
    "backend",
    "max_seq_len",
    "cache_size",
    "cache_mode",
    "tensor_parallel",
    "tensor_parallel_backend",
    "gpu_split_auto",
    "autosplit_reserve",
    "gpu_split",
    "rope_scale",
    "rope_alpha",
    "chunk_size",
    "output_chunking",
    "prompt_template",
    "vision",
    "skip_queue",
)


def build_load_request(args: argparse.Namespace) -> ModelLoadRequest:
    """The ModelLoadRequest the load options describe (unset options omitted)."""
    fields: dict[str, Any] = {"model_name": args.name}
    for option in _LOAD_OPTIONS:
        value = getattr(args, option, None)
        if value is not None:
            fields[option] = value
    draft = {o: getattr(args, o) for o in _DRAFT_OPTIONS if getattr(args, o, None) is not None}
    if args.draft_model is not None:
        fields["draft_model"] = DraftModelLoadRequest(
            draft_model_name=args.draft_model,
            **draft,
        )
    elif draft:
        given = ", ".join("--" + o.replace("_", "-") for o in draft)
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
    """The model name and every load option, in groups (model, GPU placement, draft)."""
    parser.add_argument("name", help="the model folder's name on the server")
    model = parser.add_argument_group("model options (unset options keep the server's defaults)")
    model.add_argument("--backend", help="the backend to load with, e.g. exllamav2, exllamav3")
    model.add_argument("--max-seq-len", type=int, metavar="TOKENS", help="context length")
    model.add_argument(
        "--cache-size", type=int, metavar="TOKENS", help="cache size (a multiple of 256)"
    )
    model.add_argument("--cache-mode", metavar="MODE", help="cache quantisation, e.g. FP16, Q8")
    model.add_argument(
        "--rope-scale", type=float, metavar="FACTOR", help="rope scale (linear scaling)"
    )
    model.add_argument(
        "--rope-alpha", type=number_or_auto, metavar="ALPHA", help="rope alpha: a number or auto"
    )
    model.add_argument("--chunk-size", type=int, metavar="TOKENS", help="prompt chunk size")
    model.add_argument("--prompt-template", metavar="NAME", help="prompt template to use")
    _switch(model, "--vision", "load the vision component")
    _switch(model, "--output-chunking", "chunk the model's output")
    _switch(model, "--skip-queue", "ask the server to skip its load queue")
    gpus = parser.add_argument_group("GPU placement")
    gpus.add_argument(
        "--gpu-split", type=number_list, metavar="GB,GB", help="GB per GPU, e.g. 20,24"
    )
    _switch(gpus, "--gpu-split-auto", "let the server split the model across GPUs")
    gpus.add_argument(
        "--autosplit-reserve",
        type=number_list,
        metavar="MB,MB",
        help="memory to keep free per GPU with --gpu-split-auto",
    )
    _switch(gpus, "--tensor-parallel", "load with tensor parallelism")
    gpus.add_argument("--tensor-parallel-backend", metavar="NAME", help="e.g. native, nccl")
    draft = parser.add_argument_group("draft model (speculative decoding)")
    draft.add_argument("--draft-model", metavar="NAME", help="draft model folder to load too")
    draft.add_argument("--draft-rope-scale", type=float, metavar="FACTOR")
    draft.add_argument("--draft-rope-alpha", type=number_or_auto, metavar="ALPHA")
    draft.add_argument("--draft-gpu-split", type=number_list, metavar="GB,GB")
    draft.add_argument("--draft-cache-mode", metavar="MODE")


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
