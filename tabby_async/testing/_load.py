"""The emulated server's model load: one job at a time, behind one global lock.

A load runs as a task of its own, so a client that disconnects does not stop
it: it finishes in the background and then shows in ``GET /v1/model``. Its
progress goes out through an ``emit`` callback as ready-made SSE frames.

What a load does, in order, once it holds the lock:

1. if the same folder is loaded (the server compares resolved paths, so
   ``a/exl3/4.0bpw`` and ``b/exl3/4.0bpw`` are different models):
   ``processing 1/1`` and ``finished 1/1``, nothing else (the new parameters
   and the folder's own config are ignored);
2. otherwise the loaded model is unloaded first, so that a failure below leaves
   nothing loaded; the unload waits until its running generations have ended;
3. the folder's own config (``EmulatedModel.folder_config``) is merged over the
   request's fields;
4. a model with a ``config_error`` or an unknown ``backend`` fails at once;
5. the components load in the order vision (with ``vision: true`` and a model
   that has vision modules), draft (when named), model; an unknown draft, or a
   component's ``fail_at``, ends the load with an error frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ._models import EmulatedModel
from ._state import ModelState, apply_folder_config, resolve_name
from ._wire import MSG_MISSING_DRAFT, error_frame, progress_frame

__all__ = ["BACKENDS", "Emit", "LoadJobs"]

#: Backends the emulated server has installed; any other ``backend`` fails the load.
BACKENDS = ("exllamav2", "exllamav3")

#: Where a load job sends its frames.
Emit = Callable[[bytes], None]


class LoadJobs:
    """The load lock and the running load tasks of one emulator."""

    __slots__ = ("_lock", "_state", "tasks")

    def __init__(self, state: ModelState) -> None:
        self._state = state
        self._lock = asyncio.Lock()
        #: Load tasks queued or running; each removes itself when done.
        self.tasks: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        """A fresh lock, for a (re)started server."""
        self._lock = asyncio.Lock()

    def start(self, model: EmulatedModel, fields: dict[str, Any], emit: Emit) -> asyncio.Task[None]:
        """Queue a load of ``model`` with these validated request fields; returns its task."""
        task = asyncio.get_running_loop().create_task(self._run(model, fields, emit))
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._state.changed()  # wait_idle() waiters re-check

    async def wait_idle(self) -> None:
        """Return once no load is queued or running."""
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    async def _run(self, model: EmulatedModel, fields: dict[str, Any], emit: Emit) -> None:
        state = self._state
        async with self._lock:
            current = state.loaded
            # ``model`` is the resolved folder (resolve_name), so equal names are
            # equal paths: a folder that only shares the last segment is swapped in.
            if current is not None and current.name == model.name:
                emit(progress_frame("model", 1, 1, "processing"))
                emit(progress_frame("model", 1, 1, "finished"))
                return
            if current is not None:
                await _wait_for_generations(state)
            state.loading = True
            state.loaded = None  # The old model is unloaded first.
            state.changed()
            try:
                await self._load(model, fields, emit)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # pragma: no cover - defensive, reported like the server
                emit(error_frame(str(exc)))
            finally:
                state.loading = False
                state.changed()

    async def _load(self, model: EmulatedModel, fields: dict[str, Any], emit: Emit) -> None:
        fields = apply_folder_config(model, fields)
        if model.config_error is not None:
            emit(error_frame(model.config_error))
            return
        backend = fields["backend"]
        if backend is not None and backend not in BACKENDS:
            emit(error_frame(f"Invalid backend '{backend}'. Available backends: {list(BACKENDS)}"))
            return
        await asyncio.sleep(0)

        if fields["vision"] and model.vision_modules > 0:
            n = model.vision_modules
            for module in range(1, n + 1):
                await _module_pause(model.delay)
                emit(progress_frame("vision", module, n, "processing"))
            emit(progress_frame("vision", n, n, "finished"))

        draft_fields = fields["draft_model"] or {}
        requested: str | None = draft_fields.get("draft_model_name") or None
        draft_name: str | None = None
        if requested is not None:
            draft_name = resolve_name(requested, self._state.drafts)
            if draft_name is None:
                emit(error_frame(MSG_MISSING_DRAFT))
                return
            draft = self._state.drafts[draft_name]
            if not await _load_component("draft", draft, emit):
                return

        if not await _load_component("model", model, emit):
            return
        self._state.loaded = self._state.make_loaded(model, fields, draft_name)


async def _wait_for_generations(state: ModelState) -> None:
    """A swap's unload waits until the running generations have ended (never cancels them)."""
    books = state.generations
    if not books.running:
        return
    books.swap_waiting = True
    books.changed()
    try:
        await books.drain()
    finally:
        books.swap_waiting = False
        books.changed()


async def _module_pause(delay: float) -> None:
    # Always yield, so that even instant loads interleave with other requests.
    await asyncio.sleep(delay)


async def _load_component(model_type: str, model: EmulatedModel, emit: Emit) -> bool:
    """Emit ``processing 1..N`` and ``finished N/N`` (or fail at ``fail_at``)."""
    n = model.modules
    fail_at = model.fail_at
    if fail_at is not None and fail_at <= 0:
        emit(error_frame(model.fail_message))
        return False
    for module in range(1, n + 1):
        await _module_pause(model.delay)
        emit(progress_frame(model_type, module, n, "processing"))
        if fail_at is not None and module >= fail_at:
            emit(error_frame(model.fail_message))
            return False
    emit(progress_frame(model_type, n, n, "finished"))
    return True
