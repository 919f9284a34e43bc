"""The emulator served from a background thread, for synchronous tests.

The first test is what a FastAPI user writes: a plain ``def`` test, the
``tabby_emulator_thread`` fixture and Starlette's blocking ``TestClient``.
The rest check the lifecycle: nothing (thread, loop, socket) outlives the
block, however it ends.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from tabby_async import AsyncTabbyClient
from tabby_async.testing import EmulatedModel, TabbyEmulator, ThreadedEmulator

FASTAPI_APP = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


@pytest.fixture
def fastapi_app(
    tabby_emulator_thread: ThreadedEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """examples/fastapi_app.py, configured through TABBY_* for the threaded emulator."""
    monkeypatch.setenv("TABBY_URL", tabby_emulator_thread.url)
    monkeypatch.setenv("TABBY_API_KEY", tabby_emulator_thread.api_key)
    monkeypatch.setenv("TABBY_ADMIN_KEY", tabby_emulator_thread.admin_key)
    spec = importlib.util.spec_from_file_location("fastapi_app_sync_test", FASTAPI_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the module's annotations there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_fastapi_testclient_against_the_threaded_emulator(
    tabby_emulator_thread: ThreadedEmulator, fastapi_app: ModuleType
) -> None:
    server = tabby_emulator_thread
    server.call(lambda e: e.faults.fail_next(1, status=502, path="/v1/model/list"))
    with TestClient(fastapi_app.app) as http:
        listing = http.get("/models")
        assert listing.status_code == 200
        assert listing.json() == {"models": ["alpha", "beta"], "loaded": None}
        # The 502 was injected and retried through, on the emulator's thread.
        assert server.call(lambda e: e.count("GET", "/v1/model/list")) == 2

        with http.stream("POST", "/models/load", json={"model_name": "beta"}) as events:
            assert events.status_code == 200
            body = "".join(events.iter_text())
        assert body.count("event: progress") >= 2
        assert body.endswith('event: done\ndata: {"model_name":"beta"}\n\n')

        assert http.get("/models").json()["loaded"] == "beta"
        missing = http.post("/models/load", json={"model_name": "nope"})
        assert missing.status_code == 404
    assert server.call(lambda e: e.loaded) == "beta"


def test_the_fixture_serves_the_tabby_emulator_setup(
    tabby_emulator_thread: ThreadedEmulator,
) -> None:
    server = tabby_emulator_thread
    assert server.running and server.url.startswith("http://127.0.0.1:")
    assert server.call(lambda e: (e.models, e.auth)) == (["alpha", "beta"], True)
    assert server.call(lambda e: (e.api_key, e.admin_key)) == (server.api_key, server.admin_key)


# --- lifecycle ----------------------------------------------------------------------


def emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tabby-emulator"]


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_close_leaves_no_thread_loop_or_socket() -> None:
    before = emulator_threads()
    with ThreadedEmulator(models=["a"]) as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert not refuses_connections(port)
        assert len(emulator_threads()) == len(before) + 1
        loop = server.call(lambda e: asyncio.get_running_loop())
    assert not server.running
    assert emulator_threads() == before
    assert loop.is_closed()
    assert refuses_connections(port)
    server.close()  # idempotent


def test_an_exception_in_the_block_still_closes_everything() -> None:
    before = emulator_threads()
    with pytest.raises(ZeroDivisionError), ThreadedEmulator(models=["a"]) as server:
        port = int(server.url.rsplit(":", 1)[1])
        1 / 0  # noqa: B018
    assert emulator_threads() == before
    assert refuses_connections(port)


def leave_a_load(model_name: str) -> Callable[[TabbyEmulator], Awaitable[None]]:
    """For ``call``: start a load of ``model_name``, read its first event, leave the stream."""

    async def start(emulator: TabbyEmulator) -> None:
        async with AsyncTabbyClient(
            emulator.url, admin_key=emulator.admin_key
        ) as client, client.models.load_stream(model_name=model_name) as stream:
            await anext(stream)

    return start


def test_close_cancels_a_running_load() -> None:
    # A load that would run for days: close() must cancel it, or it would wait
    # for the thread until the hang guard and raise.
    endless = EmulatedModel("endless", modules=1_000_000, delay=1.0)
    with ThreadedEmulator(models=[endless]) as server:
        server.call(leave_a_load("endless"))  # the server goes on loading
        assert server.call(lambda e: e.is_loading)
    assert emulator_threads() == []


def test_wait_loaded_through_call_for_a_load_left_running() -> None:
    slow = EmulatedModel("slow", modules=5, delay=0.02)
    with ThreadedEmulator(models=[slow]) as server:
        server.call(leave_a_load("slow"))
        server.call(lambda e: e.wait_loaded("slow"))
        assert server.call(lambda e: (e.loaded, e.is_loading)) == ("slow", False)


def test_a_failed_start_raises_in_the_caller_and_leaves_no_thread() -> None:
    before = emulator_threads()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError):
            ThreadedEmulator(models=["a"], port=port).start()
    assert emulator_threads() == before


def test_a_bad_argument_raises_before_any_thread() -> None:
    before = emulator_threads()
    with pytest.raises(TypeError):
        ThreadedEmulator(no_such_option=1)
    assert emulator_threads() == before


def test_call_runs_plain_and_async_functions_and_raises_their_errors() -> None:
    with ThreadedEmulator(models=["a", "b"]) as server:
        caller = threading.current_thread()

        async def loaded_after_yield(emulator: TabbyEmulator) -> tuple[bool, str | None]:
            await asyncio.sleep(0)
            return threading.current_thread() is caller, emulator.loaded

        server.call(lambda e: e.preload("b", max_seq_len=2048))
        assert server.call(loaded_after_yield) == (False, "b")
        with pytest.raises(KeyError):
            server.call(lambda e: e.preload("no-such-model"))
        with pytest.raises(RuntimeError, match="own thread"):
            server.call(lambda e: server.call(lambda e2: None))


def test_call_outside_the_block_is_refused() -> None:
    server = ThreadedEmulator(models=["a"])
    with pytest.raises(RuntimeError, match="not running"):
        server.call(lambda e: e.loaded)
    with server:
        pass
    with pytest.raises(RuntimeError, match="not running"):
        server.call(lambda e: e.loaded)
