"""One node's monitoring snapshot: reachability, health, key permission, loaded models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from .._client import AsyncTabbyClient
from .._defaults import USE_CLIENT_DEFAULT, TimeoutArg
from .._words import counted
from ..errors import ModelNotLoadedError, TabbyError
from ..types import HealthIssue, HealthResponse, ModelCard

__all__ = ["NodeStatus", "health_text", "probe_status"]

#: The probes, in the order a NodeStatus lists their problems.
_PROBES = ("health", "permission", "model", "embedding")

T = TypeVar("T")


@dataclass(frozen=True)
class NodeStatus:
    """What one node looked like when :meth:`TabbyFleet.status` asked.

    A node is up only when TabbyAPI itself answered ``/health`` (its 200
    "healthy" or its 503 "unhealthy"). A node that could not be reached, or
    whose ``/health`` got anything else (a proxy's 502/503/504 page, HTML,
    another service's JSON) has no NodeStatus: its NodeResult holds that
    error instead, the reason it is down.

    A node that says "unhealthy" is up but *degraded*: TabbyAPI records
    each failed generation and says "unhealthy" until it is restarted, while
    it goes on serving. :attr:`unhealthy_since` and :attr:`last_issue` say
    when that started and what the latest issue was.

    ``permission`` is what the configured key may do (``"api"``/``"admin"``;
    None when the server refused the key). ``model`` is the loaded card (None
    when nothing is loaded *or* a load is running: the server says the same
    for both). ``problems`` maps each other probe that failed
    ``permission``, ``model``, ``embedding``) to its error; "not loaded"
    answers are states, not problems. ``latency`` is the seconds the health
    probe took (all four probes with ``concurrent_probes``).
    """

    url: str
    health: HealthResponse | None
    permission: str | None
    model: ModelCard | None
    embedding_model: ModelCard | None
    latency: float
    problems: Mapping[str, TabbyError] = field(default_factory=dict)

    @property
    def reachable(self) -> bool:
        """Always True: an unreachable node has an error instead of a NodeStatus."""
        return True

    @property
    def healthy(self) -> bool:
        """``/health`` answered and said healthy."""
        return self.health is not None and self.health.healthy

    @property
    def degraded(self) -> bool:
        """Up, but ``/health`` says "unhealthy" (the server still answers)."""
        return self.health is not None and not self.health.healthy

    @property
    def unhealthy_since(self) -> datetime | None:
        """When the oldest issue ``/health`` still lists happened (None: healthy)."""
        return self.health.since if self.health is not None else None

    @property
    def last_issue(self) -> HealthIssue | None:
        """The latest issue ``/health`` lists (None: healthy)."""
        return self.health.last_issue if self.health is not None else None

    @property
    def health_text(self) -> str:
        """The health on one line: ``healthy``, or ``unhealthy (2 issues) since ..., last: ...``.

        ``?`` when ``/health`` gave no answer to read.
        """
        return health_text(self.health)

    @property
    def model_name(self) -> str | None:
        """The loaded model's id (None: nothing loaded, or a load is running)."""
        return self.model.id if self.model is not None else None

    @property
    def max_seq_len(self) -> int | None:
        """The loaded model's context length, if a model is loaded."""
        if self.model is None or self.model.parameters is None:
            return None
        return self.model.parameters.max_seq_len

    @property
    def ok(self) -> bool:
        """Healthy and every probe answered."""
        return self.healthy and not self.problems

    def summary(self) -> str:
        """One line: health, the key's permission, the model and context, any problems."""
        health = self.health_text
        model = self.model_name or "no model"
        ctx = f" @{self.max_seq_len}" if self.max_seq_len else ""
        issues = f"; problems: {self._problems_text()}" if self.problems else ""
        return f"{health}, {self.permission or 'no permission'}, {model}{ctx}{issues}"

    def _problems_text(self) -> str:
        return ", ".join(f"{probe}: {err.code}" for probe, err in self.problems.items())


def health_text(health: HealthResponse | None) -> str:
    """``healthy``, or ``unhealthy (N issues) since <UTC time>, last: <latest issue>``.

    One line: the issue's text without control characters, bounded.
    """
    if health is None:
        return "?"
    if health.healthy:
        return health.status
    since, last = health.since, health.last_issue
    text = f"{health.status} ({counted(len(health.issues), 'issue')})"
    if since is not None:
        text += f" since {since:%Y-%m-%d %H:%M:%S}Z"
    if last is not None and last.description:
        text += f", last: {last.summary()}"
    return text


def _problem(name: str, err: TabbyError, problems: dict[str, TabbyError]) -> None:
    """Note a failed probe; a "not loaded" answer is a state, not a problem."""
    if not isinstance(err, ModelNotLoadedError):
        problems[name] = err


async def _probe(name: str, awaitable: Awaitable[T], problems: dict[str, TabbyError]) -> T | None:
    try:
        return await awaitable
    except TabbyError as err:
        _problem(name, err, problems)
        return None


async def probe_status(
    client: AsyncTabbyClient, *, concurrent: bool = False, timeout: TimeoutArg = USE_CLIENT_DEFAULT
) -> NodeStatus:
    """Ask one node four things: health, permission, model, embedding model.

    By default one after the other on one kept-alive connection, health
    first, so that an unreachable node costs one failed connect, not four;
    a fleet gets its speed from many nodes at once. ``concurrent=True``
    sends the four at once (four connections per node: lower latency per
    node on a slow network, more sockets and CPU).

    ``timeout`` is each probe's, as for the client's own calls. Raises the
    health probe's error when TabbyAPI did not answer ``/health`` itself
    (unreachable, a timeout, a proxy's page, another shape): the node is
    down, and that error is its result, not a NodeStatus.
    """
    problems: dict[str, TabbyError] = {}
    models = client.models
    started = time.perf_counter()
    if not concurrent:
        # The probes are awaited here rather than through _probe(): one
        # coroutine less on every resume, which a sweep of many nodes feels.
        health = await client.health(timeout=timeout)
        latency = time.perf_counter() - started
        permission = model = embedding = None
        try:
            permission = await client.permission(timeout=timeout)
        except TabbyError as err:
            _problem("permission", err, problems)
        try:
            model = await models.get(max_retries=0, timeout=timeout)
        except TabbyError as err:
            _problem("model", err, problems)
        try:
            embedding = await models.loaded_embedding(max_retries=0, timeout=timeout)
        except TabbyError as err:
            _problem("embedding", err, problems)
    else:
        health_task = asyncio.ensure_future(client.health(timeout=timeout))
        try:
            permission, model, embedding = await asyncio.gather(
                _probe("permission", client.permission(timeout=timeout), problems),
                _probe("model", models.get(max_retries=0, timeout=timeout), problems),
                _probe(
                    "embedding", models.loaded_embedding(max_retries=0, timeout=timeout), problems
                ),
            )
            health = await health_task
        finally:
            if not health_task.done():  # pragma: no cover - only when cancelled
                health_task.cancel()
                await asyncio.gather(health_task, return_exceptions=True)
        latency = time.perf_counter() - started
    # Order the problems as the probes are listed, whatever order they failed in.
    ordered = {k: problems[k] for k in _PROBES if k in problems} if problems else problems
    return NodeStatus(
        url=str(client.base_url),
        health=health,
        permission=permission.permission if permission is not None else None,
        model=model,
        embedding_model=embedding,
        latency=latency,
        problems=ordered,
    )
