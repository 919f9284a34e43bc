"""Desired-state loading on one server: compare, then leave alone, load or reload.

Why this exists: asked to load the model that is already loaded, the real
server does nothing and *ignores the new parameters*.
``load(model_name="m", max_seq_len=32768)`` on a server that runs ``m`` at
4096 therefore "succeeds" and leaves 4096. The fix is to read the loaded card
first (``GET /v1/model``), compare it with the request, and unload before
loading when a parameter differs.

What is compared, and what cannot be because the server never reports it
back (the rope values, the GPU split, the backend, ...), is one table:
:data:`~tabby_async.desired.FIELD_RULES`. Only the fields the request sets count. A
field that cannot be compared is never a difference: it is listed in
:attr:`ModelPlan.unchecked` and :attr:`ModelResult.unchecked` instead.

Which folder is loaded: the card's id is the folder's last segment, so a
nested name (``org/exl3/4.0bpw``) whose last segment is the id is left to the
server. Ensure sends the load; the server answers it with its "already
loaded" no-op when that very folder is loaded (then the card is ours and is
compared), and loads ours otherwise. It never unloads on the id alone.

Races: while another client's load runs, ``GET /v1/model`` answers 503 "No
models are currently loaded." exactly as when nothing is loaded, and our load
then queues behind the running one. If that one was the same model, our load
is a no-op that ignores our parameters (its stream is exactly ``processing
1/1``, ``finished 1/1``). :func:`ensure_loaded` therefore reads the card
again after acting. When our load was that no-op and either a reported field
differs or the request sets fields the card cannot confirm, it unloads and
loads once more. Whatever still differs after that is a value the server
itself changed (a clamped context, say): it raises
:class:`ModelMismatchError` rather than loop, and the client remembers the
card that load left. An ensure of the same request that finds that same card
raises the same mismatch at once, with no unload and no load: loading again
would only give the same card (a fixed point). Concurrent ensures of the same
request on one client share one run.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import msgspec

from ._defaults import USE_CLIENT_DEFAULT, TimeoutArg
from ._model_plan import (
    DraftSeen,
    EnsureAction,
    ModelMismatchError,
    ModelPlan,
    ModelResult,
    check_reachable,
    plan_for,
    unchanged,
)
from ._otel import operation_span, set_plan
from ._stream import follow
from .errors import APIStatusError, ClientStateError, ModelNotLoadedError, ResponseDecodeError
from .types import ModelCard, ModelLoadRequest, ModelLoadResponse

if TYPE_CHECKING:
    from ._stream import LoadStream, ProgressCallback

__all__ = [
    "EnsureMemory",
    "ModelsPort",
    "ensure_loaded",
    "loaded_card",
    "loaded_draft",
    "plan_load",
]

#: How many requests' outcomes a client keeps (one model runs per server;
#: a few requests cover a node whose desired state is switched back and forth).
_REMEMBERED = 16


class EnsureMemory:
    """What one client's ensures know beyond a single look at the server.

    ``produced`` maps a request to the card its own last load left when that
    card still differed from it (what the server refused to apply); an entry
    goes once the same request is met. ``flights`` holds the ensure of each
    request (and ``verify``) under way, which concurrent callers of the same
    request join.
    """

    __slots__ = ("api_view", "flights", "produced")

    def __init__(self) -> None:
        self.produced: dict[bytes, ModelCard] = {}
        self.flights: dict[tuple[bytes, bool], asyncio.Future[ModelResult]] = {}
        #: Whether the server gives the client's plain api key api permission
        #: (None: not asked yet), which decides if the draft can be read.
        self.api_view: bool | None = None

    @staticmethod
    def key(request: ModelLoadRequest) -> bytes:
        """The request's identity: its encoded fields."""
        return msgspec.json.encode(request)

    def remember(self, key: bytes, card: ModelCard | None) -> None:
        """Keep (or, with None, forget) the card a load of ``key`` left."""
        self.produced.pop(key, None)
        if card is not None:
            self.produced[key] = card
            while len(self.produced) > _REMEMBERED:
                del self.produced[next(iter(self.produced))]


class ModelsPort(Protocol):
    """What one model's desired state uses of a server's Models API.

    The models service satisfies it; naming only these members keeps this
    module below the service that calls it (no import of the service here).
    """

    @property
    def _memory(self) -> EnsureMemory: ...

    async def get(self) -> ModelCard: ...

    async def loaded_draft(self) -> str | None: ...

    async def unload(self, *, missing_ok: bool = False) -> None: ...

    def load_stream(
        self, request: ModelLoadRequest | None = None, /, *, timeout: TimeoutArg = ...
    ) -> LoadStream: ...


# --- acting ------------------------------------------------------------------


async def loaded_card(service: ModelsPort) -> ModelCard | None:
    """``GET /v1/model``, with "no model loaded" (also said during a load) as None."""
    try:
        return await service.get()
    except ModelNotLoadedError:
        return None


async def loaded_draft(service: ModelsPort, request: ModelLoadRequest) -> DraftSeen | None:
    """The loaded draft, when ``request`` names one and the client can read it (else None).

    The read is an extra look, not the ensure's business: a server that
    answers it with an error or an odd body leaves the draft unchecked
    rather than failing the ensure (a server that cannot be reached fails
    the next call anyway, so that is raised).
    """
    if request.draft_model is None:
        return None
    try:
        return DraftSeen(await service.loaded_draft())
    except (ClientStateError, APIStatusError, ResponseDecodeError):
        # No plain api key, a key that sees every folder, an older server, a
        # refusal or a garbled answer: the draft stays unchecked.
        return None


async def _plan(
    service: ModelsPort,
    request: ModelLoadRequest,
    card: ModelCard | None,
    proven: bool = False,
) -> ModelPlan:
    """The plan against ``card``, with what the client knows and the loaded draft."""
    memory = service._memory
    draft = None if card is None else await loaded_draft(service, request)
    produced = memory.produced.get(memory.key(request))
    return plan_for(request, card, proven=proven, produced=produced, draft=draft)


async def plan_load(service: ModelsPort, request: ModelLoadRequest) -> ModelPlan:
    """Read the loaded card and plan; loads nothing (the dry-run form)."""
    check_reachable(request)  # before anything is sent
    return await _plan(service, request, await loaded_card(service))


async def _unload(service: ModelsPort) -> None:
    # "Not loaded": nothing is loaded any more, or a load is running (ours
    # then queues behind it and the check afterwards sorts it out).
    await service.unload(missing_ok=True)


@dataclass(frozen=True, slots=True)
class _LoadOutcome:
    """What one load call returned, and what its stream showed."""

    event: ModelLoadResponse
    ignored: bool  # the server's "already loaded" no-op: our parameters were not used
    draft: bool  # the stream showed ``draft`` events

    @property
    def draft_evidence(self) -> bool | None:
        return None if self.ignored else self.draft


async def _load(
    service: ModelsPort,
    request: ModelLoadRequest,
    on_progress: ProgressCallback | None,
    timeout: TimeoutArg,
) -> _LoadOutcome:
    """Load, watching the stream for the "already loaded" no-op and for a draft."""
    draft = False

    async def watch(event: ModelLoadResponse) -> None:
        nonlocal draft
        draft = draft or event.model_type == "draft"
        if on_progress is not None:
            shown = on_progress(event)
            if inspect.isawaitable(shown):
                await shown

    stream = service.load_stream(request, timeout=timeout)
    event = await follow(stream, watch)
    return _LoadOutcome(event, stream.already_loaded, draft)


async def ensure_loaded(
    service: ModelsPort,
    request: ModelLoadRequest,
    *,
    on_progress: ProgressCallback | None = None,
    timeout: TimeoutArg = USE_CLIENT_DEFAULT,
    verify: bool = True,
) -> ModelResult:
    """Make the server run ``request``: do nothing, load, or unload then load.

    ``timeout`` bounds each load (the client's stream timeout by default);
    the reads and the unload use the client's control timeout. With
    ``verify`` (the default) the card is read again afterwards and compared
    on the fields it reports. Any reported difference left is one the server
    made itself: :class:`ModelMismatchError`. Calls with the same request
    and ``verify`` on one client while one is under way share its outcome,
    error included (its ``on_progress`` and ``timeout`` apply); a caller
    cancelled while it waits leaves the others alone, and when the caller
    running it is cancelled, the next one runs it.
    """
    memory = service._memory
    key = memory.key(request)
    # A caller that verifies does not take the result of one that does not.
    joined = (key, verify)
    while (flight := memory.flights.get(joined)) is not None:
        # Waiting leaves the flight alone: this task's own cancellation is
        # raised here, while a cancelled flight (the caller that ran it was
        # cancelled) ends the wait, and this caller runs the ensure itself.
        await asyncio.wait((flight,))
        if not flight.cancelled():
            return flight.result()
    flight = asyncio.get_running_loop().create_future()
    flight.add_done_callback(_retrieve)
    memory.flights[joined] = flight
    try:
        result = await _ensure_once(service, request, key, on_progress, timeout, verify)
    except asyncio.CancelledError:
        flight.cancel()
        raise
    except BaseException as exc:
        flight.set_exception(exc)
        raise
    else:
        flight.set_result(result)
        return result
    finally:
        if memory.flights.get(joined) is flight:
            del memory.flights[joined]


def _retrieve(flight: asyncio.Future[ModelResult]) -> None:
    # The leader raises the error itself; no follower may be waiting, so
    # mark it seen rather than have asyncio report it as never retrieved.
    if not flight.cancelled():
        flight.exception()


async def _ensure_once(
    service: ModelsPort,
    request: ModelLoadRequest,
    key: bytes,
    on_progress: ProgressCallback | None,
    timeout: TimeoutArg,
    verify: bool,
) -> ModelResult:
    name = request.model_name
    with operation_span("tabby.ensure_loaded", lambda: {"tabby.model.name": name}) as span:
        plan = await plan_load(service, request)
        if span is not None:
            set_plan(span, plan.action, plan.reasons, plan.unchecked)
        result = await _act(service, request, key, plan, on_progress, timeout, verify)
        if span is not None:
            span.set_attribute("tabby.ensure.done", result.action)
        return result


async def _after(
    service: ModelsPort, request: ModelLoadRequest, card: ModelCard | None
) -> ModelPlan:
    """The look after our own load: the folder is proved, no memory applies."""
    draft = None if card is None else await loaded_draft(service, request)
    return plan_for(request, card, proven=True, draft=draft)


def _mismatch(plan: ModelPlan, action: EnsureAction, loaded: _LoadOutcome | None) -> ModelResult:
    """The result of a plan that found what the server refused, without acting again."""
    return ModelResult(
        action,
        plan.reasons,
        plan,
        None if loaded is None else loaded.event,
        plan.loaded,
        plan.refused,
        plan.unchecked,
        None if loaded is None else loaded.draft_evidence,
    )


async def _act(
    service: ModelsPort,
    request: ModelLoadRequest,
    key: bytes,
    plan: ModelPlan,
    on_progress: ProgressCallback | None,
    timeout: TimeoutArg,
    verify: bool,
) -> ModelResult:
    """Carry out ``plan`` (see :func:`ensure_loaded`)."""
    memory = service._memory
    if plan.refused:
        raise ModelMismatchError(_mismatch(plan, "none", None))
    if plan.action == "none":
        return unchanged(plan)
    action: EnsureAction = plan.action
    if action == "reload":
        await _unload(service)
    loaded = await _load(service, request, on_progress, timeout)
    if not plan.verified and loaded.ignored:
        # The server says the folder it runs is ours, as the card was when
        # planning: compare that card now, as if the name had proved it.
        settled = await _plan(service, request, await loaded_card(service), proven=True)
        if settled.refused:
            raise ModelMismatchError(_mismatch(settled, "none", loaded))
        if settled.action == "none":
            return ModelResult(
                "none", (), plan, loaded.event, settled.loaded, (), settled.unchecked, None
            )
        action = "reload"
        await _unload(service)
        loaded = await _load(service, request, on_progress, timeout)
    if not verify:
        return ModelResult(
            action,
            plan.reasons,
            plan,
            loaded.event,
            None,
            unchecked=plan.unchecked,
            draft_loaded=loaded.draft_evidence,
        )
    card = await loaded_card(service)
    after = await _after(service, request, card)
    unconfirmed = after.action == "none" and bool(after.unchecked)
    if loaded.ignored and (after.action == "reload" or unconfirmed):
        # The right model, and our load was the server's no-op: a concurrent
        # load of the same model won the lock and its parameters are in use
        # (a reported difference shows it; unreported ones may hide it).
        action = "reload"
        await _unload(service)
        loaded = await _load(service, request, on_progress, timeout)
        card = await loaded_card(service)
        after = await _after(service, request, card)
    mismatches = after.reasons if after.action != "none" else ()
    # Our own load left this card: if it still differs, that is what the
    # server does with this request, and the next ensure need not load again.
    if not loaded.ignored:
        memory.remember(key, card if mismatches else None)
    result = ModelResult(
        action,
        plan.reasons,
        plan,
        loaded.event,
        card,
        mismatches,
        after.unchecked,
        loaded.draft_evidence,
    )
    if mismatches:
        raise ModelMismatchError(result)
    return result
