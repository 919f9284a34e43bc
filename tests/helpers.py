"""Helpers shared by the tests: hostile servers, held connections, hang guards, and
what an error lets reach. The fixtures built on them are in ``conftest.py``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import ssl
import subprocess
import sys
import tomllib
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tabby_async import cli
from tabby_async.fleet import NodeSpec, TabbyFleet
from tabby_async.gateway import Gateway, gateway_pool, parse_catalog
from tabby_async.testing import TabbyEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory

__all__ = [
    "GATEWAY_MODELS",
    "GUARD",
    "BuiltSite",
    "CliResult",
    "ConnectionCounter",
    "RawHandler",
    "cli_emulator",
    "forwarded",
    "gateway_node",
    "guarded",
    "node_loads",
    "node_unloads",
    "point_env_at",
    "post_completion",
    "raw_server",
    "reachable_text",
    "run_cli",
    "run_gateway",
    "serve_app",
    "span_provider",
    "started",
    "stream_events",
    "tabby_cli",
]

T = TypeVar("T")

#: A hang guard, never a measure: far above any honest wait, far below a hang.
GUARD = 30.0


async def guarded(call: Awaitable[T], seconds: float = GUARD) -> T:
    """Await ``call``, failing the test instead of hanging past ``seconds``."""
    return await asyncio.wait_for(call, seconds)


#: A raw TCP server's handler: it owns the connection and may send anything.
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None))
#: Not entered: code and machinery, not data an error carries.
_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.FrameType,
    types.TracebackType,
    types.CodeType,
    asyncio.AbstractEventLoop,
)


def reachable_text(err: BaseException, *, max_depth: int = 8) -> str:
    """Every text reachable from ``err``, joined: what a leak check searches.

    It walks the error's ``args``, its attributes, ``__cause__``,
    ``__context__`` and ``__notes__``, then the attributes (``__dict__`` and
    ``__slots__``), items and fields of everything found there, recursively,
    adding each object's ``repr`` and ``str`` on the way. Modules, functions,
    classes and event loops are not entered. The tracebacks' frames are not
    walked: they hold the caller's own locals, not the error's data.
    """
    parts: list[str] = []
    seen: set[int] = set()

    def text_of(obj: object) -> None:
        for show in (repr, str):
            try:
                parts.append(show(obj))
            except Exception as exc:  # a broken repr is not what is tested here
                parts.append(f"<{show.__name__} failed: {exc!r}>")

    def visit(obj: object, depth: int) -> None:
        if id(obj) in seen or depth > max_depth:
            return
        seen.add(id(obj))
        if isinstance(obj, _LEAVES):
            parts.append(obj.decode("utf-8", "replace") if isinstance(obj, bytes) else str(obj))
            return
        if isinstance(obj, _OPAQUE):
            return
        text_of(obj)
        children: list[object] = []
        if isinstance(obj, BaseException):
            children += [obj.args, obj.__cause__, obj.__context__, getattr(obj, "__notes__", None)]
        if isinstance(obj, dict):
            children += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children += list(obj)
        else:
            items = getattr(obj, "items", None)
            if callable(items) and not isinstance(obj, BaseException):
                with contextlib.suppress(Exception):
                    for key, value in items():
                        children += [key, value]
        with contextlib.suppress(TypeError):
            children += list(vars(obj).values())
        names = list(getattr(type(obj), "__struct_fields__", ()))
        for klass in type(obj).__mro__:
            slots = getattr(klass, "__slots__", ())
            names += [slots] if isinstance(slots, str) else list(slots)
        for name in names:
            if isinstance(name, str):
                with contextlib.suppress(AttributeError):
                    children.append(getattr(obj, name))
        for child in children:
            visit(child, depth + 1)

    visit(err, 0)
    return "\n".join(parts)


@contextlib.asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that runs ``handler`` per connection; yields its URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            tasks.discard(task)
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@contextlib.asynccontextmanager
async def serve_app(
    app: web.Application,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handler_cancellation: bool = False,
) -> AsyncIterator[str]:
    """Run an aiohttp ``app`` on 127.0.0.1 (over TLS with ``ssl_context``); yields its URL."""
    runner = web.AppRunner(app, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    scheme = "http" if ssl_context is None else "https"
    try:
        yield f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class ConnectionCounter:
    """The connections aiohttp connectors hand out, seen through aiohttp's public API.

    ``connector_class`` is a ``TCPConnector`` whose public ``connect()``
    records each :class:`~aiohttp.connector.Connection` it returns; the
    ``connections`` fixture puts it in place of ``aiohttp.TCPConnector``, which
    the client builds its two pools from. A connection is held from ``connect()``
    until its ``release()`` or ``close()`` (then its public ``protocol`` is None),
    whichever pool it came from.
    """

    def __init__(self) -> None:
        self._handed: list[Connection] = []
        # Strong references, so that an id is never reused by a later protocol.
        self._protocols: dict[int, object] = {}
        self._waiters: list[tuple[int, asyncio.Event]] = []
        record = self._record

        class CountingConnector(aiohttp.TCPConnector):
            """A ``TCPConnector`` that tells the counter about each connection it hands out."""

            async def connect(
                self,
                req: aiohttp.ClientRequest,
                traces: list[Trace],
                timeout: aiohttp.ClientTimeout,
            ) -> Connection:
                connection = await super().connect(req, traces, timeout)
                record(connection)  # no await here: a cancel must not strand the connection
                return connection

        self.connector_class: type[aiohttp.TCPConnector] = CountingConnector

    def _record(self, connection: Connection) -> None:
        self._handed.append(connection)
        self._protocols.setdefault(id(connection.protocol), connection.protocol)
        for count, event in self._waiters:
            if len(self._handed) >= count:
                event.set()

    def connector(self, **kwargs: object) -> aiohttp.TCPConnector:
        """A counting connector, for a session a test makes itself."""
        return self.connector_class(**kwargs)  # type: ignore[arg-type]

    @property
    def held(self) -> int:
        """Connections handed out and neither released nor closed yet."""
        return sum(1 for connection in self._handed if connection.protocol is not None)

    @property
    def handed_out(self) -> int:
        """Every ``connect()`` that returned a connection, new or from the pool."""
        return len(self._handed)

    @property
    def opened(self) -> int:
        """Distinct connections handed out: the ones that were not reused from a pool."""
        return len(self._protocols)

    async def wait_handed_out(self, count: int) -> None:
        """Wait until ``count`` connections were handed out in all (a request is under way)."""
        if len(self._handed) >= count:
            return
        waiter = (count, asyncio.Event())
        self._waiters.append(waiter)
        try:
            await waiter[1].wait()
        finally:
            self._waiters.remove(waiter)


def point_env_at(
    server: TabbyEmulator, monkeypatch: pytest.MonkeyPatch, *, admin_key: bool = True
) -> TabbyEmulator:
    """Set TABBY_URL and TABBY_API_KEY (and TABBY_ADMIN_KEY) to ``server``'s; returns it."""
    monkeypatch.setenv("TABBY_URL", server.url)
    monkeypatch.setenv("TABBY_API_KEY", server.api_key)
    if admin_key:
        monkeypatch.setenv("TABBY_ADMIN_KEY", server.admin_key)
    return server


class CliResult(msgspec.Struct):
    """One run of the command line: its exit code and what it printed."""

    code: int
    out: str
    err: str


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> CliResult:
    """``tabby_async.cli.main(argv)`` in a worker thread; its exit code and output.

    ``main`` runs its own event loop, so it cannot run in the test's; the
    emulator it talks to keeps serving from the test's loop meanwhile.
    """
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


#: The variables a user's shell may carry that change what a program or the CLI does.
TABBY_ENV_NAMES = ("TABBY_URL", "TABBY_API_KEY", "TABBY_ADMIN_KEY", "TABBY_FLEET_NODES", "HF_TOKEN")


def tabby_cli() -> list[str]:
    """The ``tabby-async`` command a user runs: the venv's script, else ``python -m``."""
    script = Path(sys.executable).with_name("tabby-async")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tabby_async"]


def on_a_free_port(args: Sequence[str]) -> list[str]:
    """``args`` of ``tabby-async emulator`` with ``--port 0``: a free loopback port (or ports)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--port" and i + 1 < len(out):
            out[i + 1] = "0"
            return out
        if arg.startswith("--port="):
            out[i] = "--port=0"
            return out
    return [*out, "--port", "0"]


def export_variables(line: str) -> dict[str, str]:
    """``{NAME: value}`` of a shell ``export NAME=value ...`` line."""
    words = shlex.split(line)
    assert words[:1] == ["export"], line
    return dict(word.split("=", 1) for word in words[1:])


@contextlib.asynccontextmanager
async def cli_emulator(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[dict[str, str]]:
    """``tabby-async emulator ARGS`` in a subprocess, as a user starts it in a terminal.

    It binds free loopback ports (:func:`on_a_free_port`) and runs in ``cwd``
    (where ``--nodes`` writes its nodes file). Yields the variables of the
    ``export`` line it prints, which is what the user pastes; leaving stops it
    with SIGTERM and checks it stopped cleanly.
    """
    given = os.environ if env is None else env
    base = {k: v for k, v in given.items() if k not in TABBY_ENV_NAMES}
    proc = await asyncio.create_subprocess_exec(
        *tabby_cli(),
        "emulator",
        *on_a_free_port(args),
        cwd=cwd,
        env={**base, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    seen = ""
    try:
        while True:
            line = (await guarded(proc.stdout.readline())).decode()
            assert line, f"the emulator ended before its export line:\n{seen}"
            seen += line
            if line.strip().startswith("export "):
                break
        yield export_variables(line.strip())
    finally:
        if proc.returncode is None:
            proc.terminate()
        out, err = await guarded(proc.communicate())
    assert proc.returncode == 0, err.decode()
    assert out.decode().rstrip().endswith("emulator stopped")


@contextlib.asynccontextmanager
async def run_gateway(
    nodes: Mapping[str, TabbyEmulator | str],
    catalog: str,
    *,
    api_keys: Sequence[str] = (),
) -> AsyncIterator[tuple[str, Gateway]]:
    """A gateway over emulators (or bare URLs, for nodes that are down), served on loopback.

    ``catalog`` is the catalog's TOML text. Yields the gateway's URL and the
    gateway; everything is closed on the way out.
    """
    specs = [
        NodeSpec(name, node, api_key="k")
        if isinstance(node, str)
        else NodeSpec(name, node.url, api_key=node.api_key, admin_key=node.admin_key)
        for name, node in nodes.items()
    ]
    fleet = TabbyFleet(specs, **gateway_pool({}))
    parsed = parse_catalog(tomllib.loads(catalog))
    gateway = Gateway(fleet, parsed, api_keys=api_keys, close_fleet=True)
    async with serve_app(gateway.app(), handler_cancellation=True) as url:
        yield url, gateway


async def started(nodes: Sequence[TabbyEmulator], count: int) -> None:
    """Return once the nodes have started ``count`` generations between them (no polling)."""

    def enough(_: object) -> bool:
        return sum(n.generations.stats().started for n in nodes) >= count

    waits = [asyncio.ensure_future(n.generations.wait_for(enough, None)) for n in nodes]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


#: The folders a gateway test's node has on disk.
GATEWAY_MODELS = ["m1", "m2", "m3", "org/nested/4.0bpw"]


async def gateway_node(factory: EmulatorFactory, **kwargs: Any) -> TabbyEmulator:
    """An emulated node for a gateway test: the test folders on disk, none loaded."""
    kwargs.setdefault("models", GATEWAY_MODELS)
    kwargs.setdefault("reply_tokens", 3)
    return await factory(**kwargs)


def node_loads(server: TabbyEmulator) -> list[str]:
    """The folders a node was asked to load, in order."""
    return [r.body["model_name"] for r in server.requests if r.path == "/v1/model/load"]


def node_unloads(server: TabbyEmulator) -> int:
    """How many unloads a node was asked for."""
    return server.count("POST", "/v1/model/unload")


def forwarded(server: TabbyEmulator, path: str = "/v1/completions") -> list[Any]:
    """The bodies of the inference requests a node received on ``path``."""
    return [r.body for r in server.requests if r.path == path]


async def post_completion(
    http: aiohttp.ClientSession, url: str, model: str, **extra: Any
) -> tuple[int, Any, Mapping[str, str]]:
    """``(status, JSON body, headers)`` of a non-streamed completion through ``url``."""
    body = {"model": model, "prompt": "hello", "max_tokens": 3, **extra}
    async with http.post(url + "/v1/completions", json=body) as r:
        data = await r.json(content_type=None)
        return r.status, data, dict(r.headers)


async def stream_events(response: aiohttp.ClientResponse) -> list[Any]:
    """The ``data:`` events of an SSE answer, JSON parsed (``[DONE]`` as the string)."""
    events: list[Any] = []
    async for line in response.content:
        text = line.decode().strip()
        if text.startswith("data:"):
            payload = text[5:].strip()
            events.append(payload if payload == "[DONE]" else msgspec.json.decode(payload))
    return events


#: Where every finished span of the test process goes (the ``spans`` fixture empties it).
SPAN_EXPORTER = InMemorySpanExporter()


def span_provider() -> TracerProvider:
    """The process's tracer provider, with :data:`SPAN_EXPORTER` (set once)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPAN_EXPORTER))
    trace.set_tracer_provider(provider)
    return provider


class BuiltSite(msgspec.Struct):
    """A build of the documentation site: its directory and what mkdocs printed."""

    root: Path
    output: str
