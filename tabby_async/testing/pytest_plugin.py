"""pytest plugin: ``tabby_emulator``, ``tabby_emulator_factory`` and ``tabby_emulator_thread``.

Registered through the ``pytest11`` entry point, so it must import with nothing but
aiohttp, msgspec and pytest installed; ``pip install 'tabby-async[testing]'`` adds
pytest and pytest-asyncio, which the two async fixtures need. They rely on
pytest-asyncio (``asyncio_mode = "auto"``, or ``@pytest.mark.asyncio`` on each
test in its default strict mode): when it is importable its fixture decorator is
used so that they also work in strict mode. They run the emulator on the test's
own event loop (``loop_scope="function"``, whatever your default), which suits
async tests.

pytest-asyncio warns at start-up when ``asyncio_default_fixture_loop_scope`` is
unset, which is the case in a project that has not configured it yet. The
plugin silences that one notice: its own fixtures name their loop scope, so the
default changes nothing for them, and the notice is about your configuration,
not about the tests you run. Unset, pytest-asyncio runs each async fixture in a
loop of the fixture's own scope; to choose for your own fixtures, set it, e.g.
``asyncio_default_fixture_loop_scope = "function"`` in ``[tool.pytest.ini_options]``.

``tabby_emulator_thread`` is a plain fixture for synchronous tests: it serves the
emulator from a background thread (:class:`~tabby_async.testing.ThreadedEmulator`),
so that a blocking client such as FastAPI's ``TestClient`` can reach it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import pytest

from ._emulator import TabbyEmulator
from ._fixtures import DEFAULT_LORAS, DEFAULT_PRESETS, DEFAULT_TEMPLATES
from ._models import EmulatedModel
from ._thread import ThreadedEmulator

_F = TypeVar("_F", bound=Callable[..., Any])

try:  # pragma: no cover - depends on the environment
    import pytest_asyncio

    _fixture: Any = functools.partial(pytest_asyncio.fixture, loop_scope="function")
except ImportError:  # pragma: no cover
    _fixture = pytest.fixture

#: The start of pytest-asyncio's notice that ``asyncio_default_fixture_loop_scope`` is unset.
_UNSET_LOOP_SCOPE = 'The configuration option "asyncio_default_fixture_loop_scope" is unset'


def _async_fixture(func: _F) -> _F:
    """Typed wrapper: register ``func`` as an (async) fixture."""
    registered: _F = _fixture(func)
    return registered


__all__ = [
    "EmulatorFactory",
    "pytest_configure",
    "tabby_emulator",
    "tabby_emulator_factory",
    "tabby_emulator_thread",
]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Silence pytest-asyncio's start-up notice about an unset fixture loop scope.

    Runs before pytest-asyncio's own ``pytest_configure``, which gives the notice;
    the filter lives in the warning filters pytest keeps for the configure stage.
    """
    warnings.filterwarnings(
        "ignore", message=_UNSET_LOOP_SCOPE, category=pytest.PytestDeprecationWarning
    )


class EmulatorFactory(Protocol):
    """The ``tabby_emulator_factory`` fixture: ``await factory(...)`` is a started emulator.

    It takes :class:`~tabby_async.testing.TabbyEmulator`'s arguments, so a type
    checker checks their names and types; every emulator it started is closed at
    the test's teardown.
    """

    async def __call__(
        self,
        models: Iterable[str | EmulatedModel] = (),
        *,
        drafts: Iterable[str | EmulatedModel] = (),
        embeddings: Iterable[str | EmulatedModel] = (),
        auth: bool = True,
        api_key: str | None = None,
        admin_key: str | None = None,
        extra_api_keys: Iterable[str] = (),
        ping_interval: float = 15.0,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        downloadable: Mapping[str, float] | None = None,
        download_failure_delay: float = 0.0,
        embeddings_available: bool = True,
        templates: Mapping[str, str] = DEFAULT_TEMPLATES,
        presets: Mapping[str, Mapping[str, Any]] = DEFAULT_PRESETS,
        loras: Iterable[str] | None = DEFAULT_LORAS,
        override_preset: str | None = None,
        reply_tokens: int = 16,
        token_delay: float = 0.0,
        inline_model_loading: bool = False,
    ) -> TabbyEmulator:
        """A started :class:`~tabby_async.testing.TabbyEmulator` built with these arguments."""


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
