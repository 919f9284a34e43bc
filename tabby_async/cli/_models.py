"""``tabby-async models ...``: the model-management commands.

Each command is one SDK call (two for the listings, which also mark the
loaded model). Human output is aligned text; ``--json`` prints the SDK's
response Struct as JSON, exactly as the server's field names have it. The
load options are the same as the fleet commands'.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable

from .. import AsyncTabbyClient
from .. import errors as E
from ..types import (
    EmbeddingModelLoadRequest,
    ModelCard,
    ModelList,
    ModelLoadRequest,
    ModelLoadResponse,
)
from ._commands import group, leaf, show, show_listing
from ._format import (
    NO_VISION_WARNING,
    card_fields,
    format_fields,
    model_list_text,
    props_fields,
    vision_refused,
)
from ._load_options import (
    add_download_options,
    add_load_options,
    build_download_request,
    build_load_request,
)
from ._progress import download_progress, load_progress
from .common import EXIT_OK, client_from_args, print_json

__all__ = ["load_with_progress", "register"]


# --- handlers -----------------------------------------------------------------------


async def _loaded(call: Callable[[], Awaitable[ModelCard]]) -> ModelCard | None:
    try:
        return await call()
    except E.ModelNotLoadedError:
        return None


async def _listing(
    args: argparse.Namespace,
    fetch: Callable[[AsyncTabbyClient], Awaitable[ModelList]],
    loaded: Callable[[AsyncTabbyClient], Awaitable[str | None]],
    what: str,
    *,
    limited_shows_loaded: bool = False,
) -> int:
    """A listing (the admin key, when set, is the one sent: it alone sees every folder).

    ``limited_shows_loaded``: what an api key is shown is the loaded one
    itself, so its rows are marked loaded even when ``loaded`` cannot tell.
    """

    def text(listing: ModelList, current: str | None, limited: bool) -> str:
        if current is None and limited and limited_shows_loaded and listing.data:
            current = listing.data[0].id
        return model_list_text(listing, current, what, limited=limited)

    return await show_listing(args, fetch, loaded, text)


async def _loaded_model(client: AsyncTabbyClient) -> str | None:
    card = await _loaded(client.models.get)
    return card.id if card else None


async def _loaded_draft(client: AsyncTabbyClient) -> str | None:
    card = await _loaded(client.models.get)
    draft = card.parameters.draft if card and card.parameters else None
    return draft.id if draft else None


async def _loaded_embedding(client: AsyncTabbyClient) -> str | None:
    card = await _loaded(client.models.get_embedding)
    return card.id if card else None


async def _list(args: argparse.Namespace) -> int:
    return await _listing(args, lambda c: c.models.list(), _loaded_model, "models")


async def _draft_list(args: argparse.Namespace) -> int:
    # The card's ``draft`` is null even while a draft runs; but the draft
    # listing shows a plain api key the loaded draft alone. So the listing's
    # mark is read with the api key, when there is one (the admin listing
    # shows every folder); an api-key-only listing's one row is the loaded one.
    async def loaded(client: AsyncTabbyClient) -> str | None:
        if not client.has_api_key:
            return await _loaded_draft(client)
        try:
            return await client.models.loaded_draft()  # sent with the plain api key
        except E.TabbyError:
            return None  # the server gives the key admin permission, or auth is off

    return await _listing(
        args, lambda c: c.models.list_draft(), loaded, "draft models", limited_shows_loaded=True
    )


async def _embedding_list(args: argparse.Namespace) -> int:
    return await _listing(
        args, lambda c: c.models.list_embedding(), _loaded_embedding, "embedding models"
    )


async def _get(args: argparse.Namespace) -> int:
    return await show(args, lambda c: c.models.get(), card_fields)


async def _props(args: argparse.Namespace) -> int:
    return await show(args, lambda c: c.models.get_props(), props_fields)


async def _unload(args: argparse.Namespace) -> int:
    return await show(args, lambda c: c.models.unload(), lambda _: "unloaded the model")


async def _embedding_get(args: argparse.Namespace) -> int:
    return await show(
        args, lambda c: c.models.get_embedding(), lambda card: format_fields([("id", card.id)])
    )


async def _embedding_unload(args: argparse.Namespace) -> int:
    return await show(
        args, lambda c: c.models.unload_embedding(), lambda _: "unloaded the embedding model"
    )


async def load_with_progress(
    client: AsyncTabbyClient,
    request: ModelLoadRequest,
    *,
    json_output: bool = False,
    indent: str = "",
) -> tuple[ModelLoadResponse, float, bool]:
    """Load with a live display of every component.

    Returns the model's ``finished`` event, the seconds the load took, and
    whether the server answered with its "already loaded" no-op. On
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
    return final, time.monotonic() - started, stream.already_loaded


async def _already_loaded(client: AsyncTabbyClient, request: ModelLoadRequest) -> bool:
    """True when the card proves the requested folder is loaded (the server then ignores a load).

    The plan says so: ``none`` or ``reload`` only for the very folder. A
    nested name (``org/model/4.0bpw``) shows on the card only as its
    folder's last segment, which another folder of that name shows too: its
    plan is an unverified ``load``, and no note comes, since the load may
    well swap in the folder asked for.
    """
    try:
        return (await client.models.plan_load(request)).action != "load"
    except E.TabbyError:
        return False  # nothing loaded, a load running, or no read access: no note


async def _load(args: argparse.Namespace) -> int:
    request = build_load_request(args)
    async with client_from_args(args) as client:
        note = (
            f"note: {request.model_name!r} is already loaded; the server keeps its "
            "current parameters (unload first to change them)"
        )
        noted = not args.json and await _already_loaded(client, request)
        if noted:
            print(note, flush=True)
        final, seconds, no_op = await load_with_progress(client, request, json_output=args.json)
        if no_op and not noted and not args.json:
            print(note, flush=True)  # the server's answer proved what the card could not
        if request.vision and vision_refused(await _loaded(client.models.get)):
            warning = NO_VISION_WARNING.format(where="", name=request.model_name)
            print(warning, file=sys.stderr, flush=True)
    if args.json:
        print_json(final)
        return EXIT_OK
    draft = f" with draft {request.draft_model.draft_model_name!r}" if request.draft_model else ""
    print(f"loaded {request.model_name!r}{draft} in {seconds:.1f} s")
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


# --- parser -------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models`` and its subcommands to the top-level parser."""
    # The line in the top-level --help is the group's entry in tabby_async.cli.GROUPS.
    sub = group(subparsers, "models", "Model management on one TabbyAPI server.")
    leaf(sub, "list", _list, "list the model folders (* = loaded)")
    leaf(sub, "get", _get, "show the loaded model and its parameters")
    leaf(sub, "props", _props, "show the loaded model's slots and context")
    load = leaf(
        sub,
        "load",
        _load,
        "load a model, showing progress (admin key)",
        "Load a model, showing the progress of each component (vision, draft, "
        "model). Ctrl-C stops following the load; the server may still finish it.",
    )
    load.set_defaults(
        interrupt_note="stopped following the load of {name!r}; the server may finish "
        "the load on its own (check with `tabby-async models get`)"
    )
    add_load_options(load)
    leaf(sub, "unload", _unload, "unload the model (admin key)")
    download = leaf(
        sub, "download", _download, "have the server download a Hugging Face repo (admin key)"
    )
    add_download_options(download)

    draft = group(sub, "draft", "Draft models.", "draft models")
    leaf(draft, "list", _draft_list, "list the draft model folders")

    emb = group(sub, "embedding", "Embedding models.", "embedding models")
    leaf(emb, "list", _embedding_list, "list embedding model folders")
    leaf(emb, "get", _embedding_get, "show the loaded embedding model")
    emb_load = leaf(emb, "load", _embedding_load, "load an embedding model (admin key)")
    emb_load.add_argument("name", help="the embedding model folder's name")
    emb_load.add_argument("--device", help="device for the embedding model, e.g. cpu, cuda")
    leaf(emb, "unload", _embedding_unload, "unload the embedding model (admin key)")
