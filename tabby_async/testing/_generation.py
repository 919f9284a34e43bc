"""The emulated model's generations: a deterministic token producer per choice, and their books.

A generation is one inference request's work: one *choice* per ``n`` (and per
prompt of a prompt list), each a task that produces tokens until it has said
what it wants to say, reaches ``max_tokens`` or is cancelled. What a choice
says is fixed: token ``k`` (1-based) is ``"<card id>:<k> "``, so a test can
tell which model answered and how far it got.

:class:`Generations` keeps the books (started, finished, cancelled per model
folder, and the ones in flight) and lets a test wait for them: the emulator
exposes it as :attr:`TabbyEmulator.generations`. The server's own rules, from
its source: an explicit unload cancels every running generation at once, a
swap through a load waits until they have all ended, and a client that goes
away cancels its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any, Literal

__all__ = [
    "Choice",
    "Generation",
    "GenerationStats",
    "Generations",
    "token_text",
]

#: What a choice's producer hands on: ``(choice, text, finish)``; ``finish`` is the
#: finish chunk's fields on the last call, else ``None``.
Emit = Callable[["Choice", str, "dict[str, Any] | None"], None]

#: The text of the toy tokenizer's end-of-sequence token, the server's ``stop_str``
#: when a generation ends on it.
EOS_TEXT = "</s>"


def token_text(card_id: str, k: int) -> str:
    """The ``k``-th token (1-based) a model with this card id generates."""
    return f"{card_id}:{k} "


@dataclasses.dataclass(frozen=True, slots=True)
class GenerationStats:
    """How many generations a model (or the whole server) started, finished, had cancelled."""

    started: int = 0
    finished: int = 0
    cancelled: int = 0

    @property
    def running(self) -> int:
        """Started and not yet ended."""
        return self.started - self.finished - self.cancelled


class Choice:
    """One choice of a generation: its index, its plan and what it has produced."""

    __slots__ = ("finish", "index", "prompt_tokens", "text", "tokens", "want", "will_stop")

    def __init__(self, index: int, prompt_tokens: int, want: int, will_stop: bool) -> None:
        self.index = index
        self.prompt_tokens = prompt_tokens
        #: How many tokens it will produce; ``will_stop``: it then ends on EOS (else on length).
        self.want = want
        self.will_stop = will_stop
        self.text = ""
        self.tokens = 0
        #: The finish chunk's fields once the choice has ended normally.
        self.finish: dict[str, Any] | None = None


class Generation:
    """One inference request's generation, as :attr:`Generations.running` lists it.

    Attributes:
        id: the request's id (the hex part of the response's ``id``).
        model: the folder of the model generating (``org/model/4.0bpw``).
        route: ``"/v1/completions"`` or ``"/v1/chat/completions"``.
        stream: whether the client asked for a stream.
        outcome: ``None`` while running, then ``"finished"`` or ``"cancelled"``.
    """

    __slots__ = ("_books", "_tasks", "choices", "id", "model", "outcome", "route", "stream")

    def __init__(
        self, books: Generations, request_id: str, model: str, route: str, stream: bool
    ) -> None:
        self._books = books
        self.id = request_id
        self.model = model
        self.route = route
        self.stream = stream
        self.outcome: Literal["finished", "cancelled"] | None = None
        self.choices: list[Choice] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def tokens(self) -> int:
        """Tokens generated so far, over all choices."""
        return sum(c.tokens for c in self.choices)

    def start(self, choices: list[Choice], card_id: str, delay: float, emit: Emit) -> None:
        """Start one producer task per choice."""
        loop = asyncio.get_running_loop()
        self.choices = choices
        for choice in choices:
            self._tasks.append(loop.create_task(self._produce(choice, card_id, delay, emit)))

    async def wait(self) -> None:
        """Return once every producer has ended (finished or cancelled)."""
        if self._tasks:
            await asyncio.wait(self._tasks)

    def cancel(self) -> None:
        """Stop every producer; the generation counts as cancelled (if not already ended)."""
        for task in self._tasks:
            task.cancel()
        self._end("cancelled")

    def _end(self, outcome: Literal["finished", "cancelled"]) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self._books._ended(self)

    async def _produce(self, choice: Choice, card_id: str, delay: float, emit: Emit) -> None:
        begun = time.monotonic()
        for k in range(1, choice.want + 1):
            await asyncio.sleep(delay)  # always yields, even without a delay
            text = token_text(card_id, k)
            choice.text += text
            choice.tokens = k
            emit(choice, text, None)
            self._books.changed()  # waits on token counts re-check
        choice.finish = _finish_chunk(choice, round(time.monotonic() - begun, 2))
        emit(choice, "", choice.finish)
        if all(c.finish is not None for c in self.choices):
            self._end("finished")


def _finish_chunk(choice: Choice, gen_time: float) -> dict[str, Any]:
    """The finish chunk's fields, as the server's backend builds them (no prefill time)."""
    stop = choice.will_stop
    return {
        "prompt_tokens": choice.prompt_tokens,
        "prompt_time": 0.0,
        "prompt_tokens_per_sec": "Indeterminate",
        "gen_tokens": choice.tokens,
        "gen_time": gen_time,
        "gen_tokens_per_sec": "Indeterminate"
        if gen_time == 0
        else round(choice.tokens / gen_time, 2),
        "total_time": round(gen_time, 2),
        "finish_reason": "stop" if stop else "length",
        "eos_reason": "stop_token" if stop else "max_new_tokens",
        "stop_str": EOS_TEXT if stop else None,
    }


class Generations:
    """The books of one emulator's generations, and a way to wait on them.

    ``server.generations.stats("m")`` counts model ``m``'s generations,
    :attr:`running` lists the ones in flight, and :meth:`wait_for` returns once
    a condition on these books holds (woken by every change, no polling)::

        await server.generations.wait_for(lambda g: g.stats().cancelled == 1)
    """

    __slots__ = ("_changed", "_counts", "_running", "swap_waiting")

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}
        self._running: list[Generation] = []
        self._changed = asyncio.Event()
        #: True while a model load waits for the running generations to end before
        #: it unloads the loaded model (the server's swap never cancels them).
        self.swap_waiting = False

    def stats(self, model: str | None = None) -> GenerationStats:
        """The counts of one model folder, or of every model (``None``)."""
        rows = self._counts.values() if model is None else [self._counts.get(model, [0, 0, 0])]
        started = finished = cancelled = 0
        for row in rows:
            started += row[0]
            finished += row[1]
            cancelled += row[2]
        return GenerationStats(started, finished, cancelled)

    @property
    def running(self) -> list[Generation]:
        """The generations in flight, oldest first."""
        return list(self._running)

    async def wait_for(
        self, predicate: Callable[[Generations], bool], timeout: float | None = 30.0
    ) -> None:
        """Return once ``predicate(self)`` holds; ``TimeoutError`` after ``timeout`` seconds."""

        async def wait() -> None:
            while not predicate(self):
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    # ------------------------------------------------------------------ the emulator's side

    def begin(self, request_id: str, model: str, route: str, stream: bool) -> Generation:
        """Book a new generation of ``model`` (its producers are started by the caller)."""
        generation = Generation(self, request_id, model, route, stream)
        self._counts.setdefault(model, [0, 0, 0])[0] += 1
        self._running.append(generation)
        self.changed()
        return generation

    def cancel_all(self) -> None:
        """Cancel every running generation (the server's explicit unload)."""
        for generation in list(self._running):
            generation.cancel()

    async def drain(self) -> None:
        """Return once no generation runs (the server's swap waits for them)."""
        await self.wait_for(lambda g: not g._running, None)

    def changed(self) -> None:
        """Wake the waiters of :meth:`wait_for`."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _ended(self, generation: Generation) -> None:
        self._running.remove(generation)
        self._counts[generation.model][1 if generation.outcome == "finished" else 2] += 1
        self.changed()
