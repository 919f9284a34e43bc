"""``tabby-async emulator`` and ``tabby-async demo``: the built-in fake server.

Both import :mod:`tabby_async.testing` only when they run, so the other
commands (and the SDK) never load it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .. import AsyncTabbyClient
from .. import errors as E
from ..types import DraftModelLoadRequest, ModelLoadRequest
from ._args import name_list, non_negative_seconds, positive_int
from ._format import card_fields, format_table, props_fields
from ._models import load_with_progress
from .common import EXIT_OK, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from ..testing import EmulatedModel, TabbyEmulator

__all__ = ["register", "stop_on_signals"]


# --- tabby-async emulator -------------------------------------------------------------


def _downloadable(text: str) -> tuple[str, float]:
    """``org/repo`` or ``org/repo=SECONDS``."""
    repo, _, seconds = text.partition("=")
    if not repo.strip():
        raise argparse.ArgumentTypeError(f"expected org/repo[=SECONDS], got {text!r}")
    return repo.strip(), non_negative_seconds(seconds) if seconds else 1.0


def _node_count(text: str) -> int:
    """How many emulators ``--nodes`` serves: 1 to 256."""
    count = positive_int(text)
    if count > _MAX_NODES:
        raise argparse.ArgumentTypeError(f"must be <= {_MAX_NODES}, got {count}")
    return count


_MAX_NODES = 256


def _build_models(names: list[str], modules: int, delay: float) -> list[EmulatedModel]:
    from ..testing import EmulatedModel

    return [EmulatedModel(name, modules=modules, delay=delay) for name in names]


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set ``stop`` instead of raising (where the loop allows)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or Windows: Ctrl-C cancels instead
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _build_emulator(
    args: argparse.Namespace, port: int, keys: tuple[str, str] | None
) -> TabbyEmulator:
    """One emulator as the options say; ``keys`` (api, admin) are shared by a fleet's nodes."""
    from ..testing import TabbyEmulator

    api_key, admin_key = keys if keys is not None else (None, None)
    try:
        return TabbyEmulator(
            _build_models(args.models, args.modules, args.delay),
            drafts=_build_models(args.drafts, args.modules, args.delay),
            embeddings=args.embeddings,
            auth=args.auth,
            api_key=api_key if args.emulator_api_key is None else args.emulator_api_key,
            admin_key=admin_key if args.emulator_admin_key is None else args.emulator_admin_key,
            ping_interval=args.ping_interval,
            token_delay=args.token_delay,
            host=args.host,
            port=port,
            record=False,  # a long-running server must not grow without bound
            downloadable=dict(args.downloadable or ()),
        )
    except ValueError as exc:
        raise CliError(f"bad emulator option: {exc}", exit_code=EXIT_USAGE) from None


async def _emulator(args: argparse.Namespace) -> int:
    import secrets

    count = args.nodes or 1
    # A fleet's nodes share one pair of keys, so one export line serves them all.
    keys = (secrets.token_hex(16), secrets.token_hex(16)) if args.nodes else None
    servers = [_build_emulator(args, args.port + i if args.port else 0, keys) for i in range(count)]
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        # Ctrl-C cancels instead where signal handlers cannot be installed.
        stack.enter_context(stop_on_signals(stop))
        for server in servers:
            try:
                await stack.enter_async_context(server)
            except OSError as exc:
                where = f"{args.host}:{server.port}"
                raise CliError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        if args.nodes:
            from ._emulator_nodes import nodes_toml, remove_nodes_file, write_nodes_file

            text = nodes_toml([server.url for server in servers])
            path = write_nodes_file(Path(args.nodes_file), text)
            stack.callback(remove_nodes_file, path, text)
            _print_fleet_banner(servers, path, args)
        else:
            _print_banner(servers[0], args)
        with contextlib.suppress(asyncio.CancelledError):
            await stop.wait()
    print("emulator stopped", flush=True)
    return EXIT_OK


def _key_lines(server: TabbyEmulator, args: argparse.Namespace) -> list[str]:
    # The keys are the emulator's own test keys: printing generated ones is fine.
    # Keys the user passed in are not echoed back.
    def key(given: str | None, value: str) -> str:
        return "(as given)" if given is not None else value

    if not server.auth:
        return ["auth:       off (every request is admin)"]
    return [
        f"api key:    {key(args.emulator_api_key, server.api_key)}",
        f"admin key:  {key(args.emulator_admin_key, server.admin_key)}",
    ]


def _model_lines(args: argparse.Namespace) -> list[str]:
    lines = [
        f"models:     {', '.join(args.models) or '-'}",
        f"drafts:     {', '.join(args.drafts) or '-'}",
        f"embeddings: {', '.join(args.embeddings) or '-'}",
    ]
    if args.downloadable:
        lines.append(f"downloads:  {', '.join(repo for repo, _ in args.downloadable)}")
    return lines


def _export_line(server: TabbyEmulator, args: argparse.Namespace, **first: str) -> str:
    """The ``export`` line a user pastes: the URL (and nodes file), the generated keys."""
    names = {**first, "TABBY_URL": server.url}
    if server.auth and args.emulator_api_key is None:
        names["TABBY_API_KEY"] = server.api_key
    if server.auth and args.emulator_admin_key is None:
        names["TABBY_ADMIN_KEY"] = server.admin_key
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in names.items())


def _print_banner(server: TabbyEmulator, args: argparse.Namespace) -> None:
    lines = [
        f"TabbyAPI emulator serving {', '.join(args.models) or 'no models'} "
        f"on {server.url}  (Ctrl-C to stop)",
        *_model_lines(args),
        *_key_lines(server, args),
        "",
        "In the shell you work in, set:",
        f"  {_export_line(server, args)}",
        "then try:",
        "  tabby-async models list",
    ]
    print("\n".join(lines), flush=True)


def _print_fleet_banner(servers: list[TabbyEmulator], path: Path, args: argparse.Namespace) -> None:
    from ._emulator_nodes import node_names

    lines = [
        f"TabbyAPI emulators: {len(servers)} nodes serving {', '.join(args.models) or 'no models'}"
        "  (Ctrl-C to stop)",
        *(
            f"{name}:  {server.url}"
            for name, server in zip(node_names(len(servers)), servers, strict=True)
        ),
        f"nodes file: {path}",
        *_model_lines(args),
        *_key_lines(servers[0], args),
        "",
        "In the shell you work in, set (TABBY_URL is the first node):",
        f"  {_export_line(servers[0], args, TABBY_FLEET_NODES=str(path))}",
        "then try:",
        "  tabby-async fleet status",
    ]
    print("\n".join(lines), flush=True)


# --- tabby-async demo -----------------------------------------------------------------

_DEMO_MODELS = ("Llama-3.1-8B-Instruct-exl2", "Qwen2.5-7B-Instruct-exl2", "Mistral-Nemo-12B-exl2")
_DEMO_DRAFTS = ("Llama-3.2-1B-Instruct-exl2",)
_DEMO_EMBEDDINGS = ("bge-small-en-v1.5",)


def _indent(text: str, prefix: str = "   ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


class _Steps:
    """Numbered, flushed output for the demo's walk-through."""

    def __init__(self) -> None:
        self.number = 0

    def step(self, title: str, call: str) -> None:
        self.number += 1
        print(f"\n{self.number}. {title}\n   >>> {call}", flush=True)

    def show(self, text: str) -> None:
        print(_indent(text), flush=True)


async def run_demo(*, module_delay: float = 0.04) -> None:
    """Start an emulator, walk the whole model workflow with the SDK, stop it.

    Every step prints the SDK call it makes and what came back, so the output
    doubles as a tour of the API. Takes about a second.
    """
    from ..testing import EmulatedModel, TabbyEmulator

    main_model = EmulatedModel(
        _DEMO_MODELS[0],
        modules=12,
        delay=module_delay,
        vision_modules=4,
        max_seq_len=8192,
        prompt_template="llama3",
        chat_template="{% for message in messages %}...{% endfor %}",
    )
    models = [main_model, *(EmulatedModel(n, delay=module_delay) for n in _DEMO_MODELS[1:])]
    drafts = [EmulatedModel(n, modules=4, delay=module_delay) for n in _DEMO_DRAFTS]
    out = _Steps()
    async with TabbyEmulator(models, drafts=drafts, embeddings=_DEMO_EMBEDDINGS) as server:
        print(
            f"tabby-async demo: a TabbyAPI emulator is serving on {server.url}\n"
            "(with generated test keys); every step below is one call of the SDK.",
            flush=True,
        )
        # Both keys explicit: the user's TABBY_* keys are for their own server.
        admin = AsyncTabbyClient(server.url, api_key=None, admin_key=server.admin_key)
        reader = AsyncTabbyClient(server.url, api_key=server.api_key, admin_key=None)
        async with admin, reader:
            out.step("Connect and list the models", "await client.models.list()")
            listing = await admin.models.list()
            out.show(format_table(("ID",), [(i,) for i in listing.ids]))

            request = ModelLoadRequest(
                model_name=main_model.name,
                max_seq_len=8192,
                cache_mode="Q8",
                vision=True,
                draft_model=DraftModelLoadRequest(draft_model_name=_DEMO_DRAFTS[0]),
            )
            out.step(
                f"Load {main_model.name} with vision and a draft model, following its progress",
                "async with client.models.load_stream(request) as stream: "
                "async for event in stream: ...",
            )
            _, seconds, _ = await load_with_progress(admin, request, indent="   ")
            out.show(f"loaded in {seconds:.1f} s")

            out.step("The loaded model and its parameters", "await client.models.get()")
            out.show(card_fields(await admin.models.get()))

            out.step("Its slots and context length", "await client.models.get_props()")
            out.show(props_fields(await admin.models.get_props()))

            out.step("The draft models", "await client.models.list_draft()")
            out.show(", ".join((await admin.models.list_draft()).ids))

            out.step(
                "Embedding models: list, load, get, unload",
                "await client.models.list_embedding() / load_embedding(...) / ...",
            )
            embeddings = await admin.models.list_embedding()
            out.show(f"available: {', '.join(embeddings.ids)}")
            loaded = await admin.models.load_embedding(embedding_model_name=embeddings.ids[0])
            out.show(f"load_embedding: {loaded.status} ({loaded.module}/{loaded.modules})")
            out.show(f"get_embedding:  {(await admin.models.get_embedding()).id}")
            await admin.models.unload_embedding()
            out.show("unload_embedding: done")

            out.step(
                "A handled error: load a model the server does not have",
                'await client.models.load(model_name="no-such-model")',
            )
            try:
                await admin.models.load(model_name="no-such-model")
            except E.ModelNotFoundError as err:
                out.show(f"{type(err).__name__} (code {err.code!r}): {err.message}")

            out.step(
                "A handled error: unload with only the api key",
                "await reader.models.unload()",
            )
            try:
                await reader.models.unload()
            except E.PermissionDeniedError as err:
                out.show(f"{type(err).__name__} (code {err.code!r}): {err.message}")

            out.step("Unload the model", "await client.models.unload()")
            await admin.models.unload()
            try:
                await admin.models.get()
            except E.ModelNotLoadedError as err:
                out.show(f"unloaded; models.get() now raises {type(err).__name__}: {err.message}")
    print("\ndone: the emulator is stopped.", flush=True)


async def _demo(args: argparse.Namespace) -> int:
    await run_demo()
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``emulator`` and ``demo`` to the top-level parser."""
    # Their lines in the top-level --help are their entries in tabby_async.cli.GROUPS.
    emu = subparsers.add_parser(
        "emulator",
        description="Serve the built-in TabbyAPI emulator until Ctrl-C. It prints its URL, "
        "its models and an export line with its generated test keys (keys you pass are "
        "not echoed). With --nodes N it serves N emulators on loopback and writes a nodes "
        "file for them.",
    )
    emu.set_defaults(handler=_emulator, command_name="emulator")
    emu.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    emu.add_argument(
        "--port",
        type=int,
        default=5000,
        help="port (5000; 0 picks a free one); with --nodes the first node's, the next follow",
    )
    emu.add_argument(
        "--nodes",
        type=_node_count,
        metavar="N",
        help="serve N emulators (gpu-01 ... on loopback) and write a nodes file for them",
    )
    emu.add_argument(
        "--nodes-file",
        default="nodes.toml",
        metavar="FILE",
        help="where --nodes writes its nodes file (nodes.toml; removed on stop; "
        "a file not written by the emulator is never replaced)",
    )
    for flag, names, what in (
        ("--models", _DEMO_MODELS, "main model names (default: three example names)"),
        ("--drafts", _DEMO_DRAFTS, "draft model names"),
        ("--embeddings", _DEMO_EMBEDDINGS, "embedding model names"),
    ):
        emu.add_argument(flag, type=name_list, default=list(names), metavar="A,B", help=what)
    emu.add_argument(
        "--no-auth", dest="auth", action="store_false", help="no keys: every request is admin"
    )
    emu.add_argument(
        "--api-key", dest="emulator_api_key", metavar="KEY", help="api key (default: generated)"
    )
    emu.add_argument(
        "--admin-key",
        dest="emulator_admin_key",
        metavar="KEY",
        help="admin key (default: generated)",
    )
    emu.add_argument(
        "--modules", type=positive_int, default=8, metavar="N", help="modules each load reports (8)"
    )
    emu.add_argument(
        "--delay",
        type=non_negative_seconds,
        default=0.1,
        metavar="SECONDS",
        help="time per module of a load (0.1)",
    )
    emu.add_argument(
        "--ping-interval",
        type=non_negative_seconds,
        default=15.0,
        metavar="SECONDS",
        help="SSE ping period of load and generation streams (15; 0 disables)",
    )
    emu.add_argument(
        "--token-delay",
        type=non_negative_seconds,
        default=0.0,
        metavar="SECONDS",
        help="time before each generated token of a completion (0)",
    )
    emu.add_argument(
        "--downloadable",
        type=_downloadable,
        action="append",
        metavar="ORG/REPO[=SECONDS]",
        help="a repo that POST /v1/download can fetch, and how long it takes (repeatable)",
    )

    demo = subparsers.add_parser(
        "demo",
        description="Start an emulator on a free loopback port, walk the model workflow "
        "with the SDK (list, load with progress, get, props, drafts, embeddings, "
        "errors, unload), then stop it. Needs no server and takes a few seconds.",
    )
    demo.set_defaults(handler=_demo, command_name="demo")
