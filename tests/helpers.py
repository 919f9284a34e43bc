"""Helpers shared by the tests: hostile servers, and what an error lets reach."""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

__all__ = ["RawHandler", "raw_server", "reachable_text", "serve_app"]

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
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Run an aiohttp ``app`` on 127.0.0.1; yields its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
