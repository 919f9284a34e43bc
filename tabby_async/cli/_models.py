"""``tabby-async models ...``: the model-management commands.

Each command is one SDK call (two for the listings, which also mark the
loaded model). Human output is aligned text; ``--json`` prints the SDK's
response Struct as JSON, exactly as the server's field names have it.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import errors as E
from .._client import AsyncTabbyClient
from .._desired import same_model
from ..types import (
    DownloadRequest,
    DraftModelLoadRequest,
    EmbeddingModelLoadRequest,
    ModelCard,
    ModelList,
    ModelLoadRequest,
    ModelLoadResponse,
    ModelPropsResponse,
)
from ._progress import download_progress, load_progress
from .common import (
    ENV_ADMIN_KEY,
    EXIT_AUTH,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    client_from_args,
    connection_from_args,
    connection_options,
    format_fields,
    format_table,
    print_json,
)

__all__ = [
    "build_download_request",
    "build_load_request",
    "describe_card",
    "describe_props",
    "load_with_progress",
    "register",
]

ENV_HF_TOKEN = "HF_TOKEN"

Handler = Callable[[argparse.Namespace], Awaitable[int]]


# --- argument types -----------------------------------------------------------------


def float_list(text: str) -> list[float]:
    """``20,24`` -> ``[20.0, 24.0]`` (GB per GPU)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts if p]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, such as 20,24; got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def float_or_auto(text: str) -> float | str:
    """A rope alpha: a number, or ``auto`` to let the server compute it."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


# --- request building ---------------------------------------------------------------

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
    """The ModelLoadRequest the ``models load`` options describe (unset options omitted)."""
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


# --- human output -------------------------------------------------------------------


def describe_card(card: ModelCard) -> str:
    """The loaded model's card as ``name: value`` lines."""
    p = card.parameters
    pairs: list[tuple[str, object]] = [("id", card.id)]
    if p is not None:
        pairs += [
            ("max_seq_len", p.max_seq_len),
            ("cache_size", p.cache_size),
            ("cache_mode", p.cache_mode),
            ("rope_scale", p.rope_scale),
            ("rope_alpha", p.rope_alpha),
            ("max_batch_size", p.max_batch_size),
            ("chunk_size", p.chunk_size),
            ("prompt_template", p.prompt_template),
            ("use_vision", p.use_vision),
            ("draft", p.draft.id if p.draft is not None else None),
        ]
    return format_fields(pairs)


def describe_props(props: ModelPropsResponse) -> str:
    """``/props`` as ``name: value`` lines (the chat template by its size only)."""
    template = props.chat_template
    return format_fields(
        [
            ("total_slots", props.total_slots),
            ("n_ctx", props.default_generation_settings.n_ctx),
            ("chat_template", f"{len(template)} characters" if template else None),
        ]
    )


def _describe_list(listing: ModelList, loaded: str | None, what: str, *, limited: bool) -> str:
    # TabbyAPI lists every folder to the admin key, only the loaded model to an api key.
    note = ""
    if limited:
        note = f"\n(an api key sees only the loaded one; list all {what} with the admin key)"
    if not listing.data:
        return f"no {what} to show{note}"
    rows = [(card.id, "*" if card.id == loaded else "") for card in listing.data]
    rows.sort(key=lambda row: row[0].lower())
    return format_table(("ID", "LOADED"), rows) + note


async def _loaded(call: Callable[[], Awaitable[ModelCard]]) -> ModelCard | None:
    try:
        return await call()
    except E.ModelNotLoadedError:
        return None


async def _listing(
    args: argparse.Namespace,
    fetch: Callable[[AsyncTabbyClient], Awaitable[ModelList]],
    loaded: Callable[[AsyncTabbyClient, ModelList], Awaitable[str | None]],
    what: str,
) -> int:
    """A listing, read with the admin key when there is one (it alone sees every folder)."""
    conn = connection_from_args(args)
    admin = conn.admin_key is not None
    limited = not admin and conn.api_key is not None  # no key at all: auth is off, or 401
    try:
        async with client_from_args(args, reads_as_admin=True) as client:
            listing = await fetch(client)
            current = None if args.json else await loaded(client, listing)
    except E.AuthenticationError as exc:
        if not admin:
            raise
        raise CliError(
            f"the server refused the admin key ({exc.message}); "
            f"check --admin-key or {ENV_ADMIN_KEY}",
            exit_code=EXIT_AUTH,
        ) from None
    if args.json:
        print_json(listing)
    else:
        print(_describe_list(listing, current, what, limited=limited))
    return EXIT_OK


# --- handlers -----------------------------------------------------------------------


async def _list(args: argparse.Namespace) -> int:
    async def loaded(client: AsyncTabbyClient, listing: ModelList) -> str | None:
        card = await _loaded(client.models.get)
        return card.id if card else None

    return await _listing(args, lambda c: c.models.list(), loaded, "models")


async def _get(args: argparse.Namespace) -> int:
    async with client_from_args(args) as client:
        card = await client.models.get()
    if args.json:
        print_json(card)
    else:
        print(describe_card(card))
    return EXIT_OK


async def _props(args: argparse.Namespace) -> int:
    async with client_from_args(args) as client:
        props = await client.models.get_props()
    if args.json:
        print_json(props)
    else:
        print(describe_props(props))
    return EXIT_OK


async def load_with_progress(
    client: AsyncTabbyClient,
    request: ModelLoadRequest,
    *,
    json_output: bool = False,
    indent: str = "",
) -> tuple[ModelLoadResponse, float]:
    """Load with a live display of every component.

    Returns the model's ``finished`` event and the seconds the load took. On
    cancellation (Ctrl-C) the stream is closed by its ``async with`` and the
    display is stopped before the cancellation goes on up; ``main`` then
    prints the command's ``interrupt_note``.
    """
    started = time.monotonic()
    stream = client.models.load_stream(request)
    with load_progress(json_output=json_output, indent=indent) as progress:
        async with stream:
            async for event in stream:
                progress.update(event)
    final = stream.last_event
    if final is None or not stream.finished:  # the stream raises first; be explicit
        raise E.StreamError("the load stream ended before the model finished loading")
    return final, time.monotonic() - started


async def _already_loaded(client: AsyncTabbyClient, name: str) -> bool:
    """True when ``name`` is the loaded model (then the server ignores a new load).

    A nested name (``org/model/4.0bpw``) shows as its folder's name in the card.
    """
    try:
        return same_model(name, (await client.models.get()).id)
    except E.TabbyError:
        return False  # nothing loaded, a load running, or no read access: no note


async def _load(args: argparse.Namespace) -> int:
    request = build_load_request(args)
    async with client_from_args(args) as client:
        if not args.json and await _already_loaded(client, request.model_name):
            print(
                f"note: {request.model_name!r} is already loaded; the server keeps its "
                "current parameters (unload first to change them)",
                flush=True,
            )
        final, seconds = await load_with_progress(client, request, json_output=args.json)
    if args.json:
        print_json(final)
        return EXIT_OK
    draft = f" with draft {request.draft_model.draft_model_name!r}" if request.draft_model else ""
    print(f"loaded {request.model_name!r}{draft} in {seconds:.1f} s")
    return EXIT_OK


async def _unload(args: argparse.Namespace) -> int:
    async with client_from_args(args) as client:
        await client.models.unload()
    if args.json:
        print_json(None)
    else:
        print("unloaded the model")
    return EXIT_OK


async def _download(args: argparse.Namespace) -> int:
    request = build_download_request(args)
    started = time.monotonic()
    async with client_from_args(args) as client:
        with download_progress(request.repo_id, json_output=args.json):
            result = await client.models.download(request)
    if args.json:
        print_json(result)
    else:
        seconds = time.monotonic() - started
        print(f"downloaded {request.repo_id} to {result.download_path} in {seconds:.1f} s")
    return EXIT_OK


async def _draft_list(args: argparse.Namespace) -> int:
    async def loaded(client: AsyncTabbyClient, listing: ModelList) -> str | None:
        card = await _loaded(client.models.get)
        draft = card.parameters.draft if card and card.parameters else None
        return draft.id if draft else None

    return await _listing(args, lambda c: c.models.list_draft(), loaded, "draft models")


async def _embedding_list(args: argparse.Namespace) -> int:
    async def loaded(client: AsyncTabbyClient, listing: ModelList) -> str | None:
        card = await _loaded(client.models.get_embedding)
        return card.id if card else None

    return await _listing(args, lambda c: c.models.list_embedding(), loaded, "embedding models")


async def _embedding_get(args: argparse.Namespace) -> int:
    async with client_from_args(args) as client:
        card = await client.models.get_embedding()
    if args.json:
        print_json(card)
    else:
        print(format_fields([("id", card.id)]))
    return EXIT_OK


async def _embedding_load(args: argparse.Namespace) -> int:
    request = EmbeddingModelLoadRequest(
        embedding_model_name=args.name, embeddings_device=args.device
    )
    started = time.monotonic()
    async with client_from_args(args) as client:
        result = await client.models.load_embedding(request)
    if args.json:
        print_json(result)
    else:
        seconds = time.monotonic() - started
        print(
            f"loaded embedding model {args.name!r} "
            f"({result.module}/{result.modules} modules) in {seconds:.1f} s"
        )
    return EXIT_OK


async def _embedding_unload(args: argparse.Namespace) -> int:
    async with client_from_args(args) as client:
        await client.models.unload_embedding()
    if args.json:
        print_json(None)
    else:
        print("unloaded the embedding model")
    return EXIT_OK


# --- parser -------------------------------------------------------------------------


def _leaf(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    command_name: str,
    help_text: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        parents=[connection_options()],
    )
    parser.set_defaults(handler=handler, command_name=command_name)
    return parser


def _add_load_options(parser: argparse.ArgumentParser) -> None:
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
        "--rope-alpha", type=float_or_auto, metavar="ALPHA", help="rope alpha: a number or auto"
    )
    model.add_argument("--chunk-size", type=int, metavar="TOKENS", help="prompt chunk size")
    model.add_argument("--prompt-template", metavar="NAME", help="prompt template to use")
    model.add_argument(
        "--vision",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="load the vision component",
    )
    model.add_argument(
        "--output-chunking",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="chunk the model's output",
    )
    model.add_argument(
        "--skip-queue",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask the server to skip its load queue",
    )
    gpus = parser.add_argument_group("GPU placement")
    gpus.add_argument(
        "--gpu-split", type=float_list, metavar="GB,GB", help="GB per GPU, e.g. 20,24"
    )
    gpus.add_argument(
        "--gpu-split-auto",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let the server split the model across GPUs",
    )
    gpus.add_argument(
        "--autosplit-reserve",
        type=float_list,
        metavar="MB,MB",
        help="memory to keep free per GPU with --gpu-split-auto",
    )
    gpus.add_argument(
        "--tensor-parallel",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="load with tensor parallelism",
    )
    gpus.add_argument("--tensor-parallel-backend", metavar="NAME", help="e.g. native, nccl")
    draft = parser.add_argument_group("draft model (speculative decoding)")
    draft.add_argument("--draft-model", metavar="NAME", help="draft model folder to load too")
    draft.add_argument("--draft-rope-scale", type=float, metavar="FACTOR")
    draft.add_argument("--draft-rope-alpha", type=float_or_auto, metavar="ALPHA")
    draft.add_argument("--draft-gpu-split", type=float_list, metavar="GB,GB")
    draft.add_argument("--draft-cache-mode", metavar="MODE")


def _add_download_options(parser: argparse.ArgumentParser) -> None:
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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models`` and its subcommands to the top-level parser."""
    models = subparsers.add_parser(
        "models",
        help="list, inspect, load and unload models",
        description="Model management on one TabbyAPI server.",
    )
    models.set_defaults(group_parser=models)
    sub = models.add_subparsers(title="commands", metavar="COMMAND")
    _leaf(sub, "list", _list, "models list", "list the model folders (* = loaded)")
    _leaf(sub, "get", _get, "models get", "show the loaded model and its parameters")
    _leaf(sub, "props", _props, "models props", "show the loaded model's slots and context")
    load = _leaf(
        sub,
        "load",
        _load,
        "models load",
        "load a model, showing progress (admin key)",
        "Load a model, showing the progress of each component (vision, draft, "
        "model). Ctrl-C stops following the load; the server may still finish it.",
    )
    load.set_defaults(
        interrupt_note="stopped following the load of {name!r}; the server may finish "
        "the load on its own (check with `tabby-async models get`)"
    )
    _add_load_options(load)
    _leaf(sub, "unload", _unload, "models unload", "unload the model (admin key)")
    download = _leaf(
        sub,
        "download",
        _download,
        "models download",
        "have the server download a Hugging Face repo (admin key)",
    )
    _add_download_options(download)

    draft = sub.add_parser("draft", help="draft models", description="Draft models.")
    draft.set_defaults(group_parser=draft)
    draft_sub = draft.add_subparsers(title="commands", metavar="COMMAND")
    _leaf(draft_sub, "list", _draft_list, "models draft list", "list the draft model folders")

    emb = sub.add_parser("embedding", help="embedding models", description="Embedding models.")
    emb.set_defaults(group_parser=emb)
    emb_sub = emb.add_subparsers(title="commands", metavar="COMMAND")
    _leaf(emb_sub, "list", _embedding_list, "models embedding list", "list embedding model folders")
    _leaf(emb_sub, "get", _embedding_get, "models embedding get", "show the loaded embedding model")
    emb_load = _leaf(
        emb_sub,
        "load",
        _embedding_load,
        "models embedding load",
        "load an embedding model (admin key)",
    )
    emb_load.add_argument("name", help="the embedding model folder's name")
    emb_load.add_argument("--device", help="device for the embedding model, e.g. cpu, cuda")
    _leaf(
        emb_sub,
        "unload",
        _embedding_unload,
        "models embedding unload",
        "unload the embedding model (admin key)",
    )
