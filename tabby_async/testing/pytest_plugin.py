"""pytest plugin: ``tabby_emulator``, ``tabby_emulator_factory`` and ``tabby_emulator_thread``.

Registered through the ``pytest11`` entry point, so it must import with nothing but
aiohttp, msgspec and pytest installed. The first two are async and rely on
pytest-asyncio (``asyncio_mode = "auto"``); when pytest-asyncio is importable its
fixture decorator is used so that they also work in strict mode. They run the
emulator on the test's own event loop, which suits async tests.

``tabby_emulator_thread`` is a plain fixture for synchronous tests: it serves the
emulator from a background thread (:class:`~tabby_async.testing.ThreadedEmulator`),
so that a blocking client such as FastAPI's ``TestClient`` can reach it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from ._emulator import TabbyEmulator
from ._thread import ThreadedEmulator

_F = TypeVar("_F", bound=Callable[..., Any])

try:  # pragma: no cover - depends on the environment
    import pytest_asyncio

    _fixture: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover
    _fixture = pytest.fixture


def _async_fixture(func: _F) -> _F:
    """Typed wrapper: register ``func`` as an (async) fixture."""
    registered: _F = _fixture(func)
    return registered


__all__ = ["EmulatorFactory", "tabby_emulator", "tabby_emulator_factory", "tabby_emulator_thread"]

#: ``await factory(**TabbyEmulator kwargs)`` -> a started emulator, closed at teardown.
EmulatorFactory = Callable[..., Awaitable[TabbyEmulator]]


#: What the ``tabby_emulator`` and ``tabby_emulator_thread`` fixtures serve.
_FIXTURE_SETUP: dict[str, Any] = {
    "models": ["alpha", "beta"],
    "drafts": ["draft-small"],
    "embeddings": ["embed-a"],
    "auth": True,
}


@_async_fixture
async def tabby_emulator() -> AsyncIterator[TabbyEmulator]:
    """A started emulator with models ``alpha``/``beta``, draft ``draft-small``,
    embedding model ``embed-a`` and auth on (use ``.api_key`` / ``.admin_key``)."""
    async with TabbyEmulator(**_FIXTURE_SETUP) as emulator:
        yield emulator


@pytest.fixture
def tabby_emulator_thread() -> Iterator[ThreadedEmulator]:
    """The ``tabby_emulator`` set-up, served from a background thread, for sync tests.

    Use it with blocking clients (FastAPI's ``TestClient``, ``requests``...).
    Read ``.url``, ``.api_key`` and ``.admin_key`` directly; reach the emulator's
    state and faults with ``.call(lambda emulator: ...)``. Stopped at teardown.
    """
    with ThreadedEmulator(**_FIXTURE_SETUP) as server:
        yield server


@_async_fixture
async def tabby_emulator_factory() -> AsyncIterator[EmulatorFactory]:
    """A factory for customised emulators: ``server = await factory(models=[...], ...)``.

    Every emulator it started is closed at teardown (newest first).
    """
    started: list[TabbyEmulator] = []

    async def factory(*args: Any, **kwargs: Any) -> TabbyEmulator:
        emulator = TabbyEmulator(*args, **kwargs)
        await emulator.start()
        started.append(emulator)
        return emulator

    try:
        yield factory
    finally:
        for emulator in reversed(started):
            await emulator.close()
