"""A fleet sweep's result and the metrics it exposes: pure, no I/O and no prometheus_client.

Naming follows Prometheus practice: base units (``_seconds``), ``_info``
gauges of value 1 that carry an identity in their labels, and labels of low
cardinality (the node, a model's name, a plan's action).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .._state_plan import StatePlan
from ..errors import TabbyError
from ..fleet import NodeStatus

__all__ = [
    "FLEET_METRICS",
    "METRICS",
    "FleetSnapshot",
    "Metric",
    "NodeSnapshot",
    "metrics",
    "plan_action",
]

#: Every metric: its name, its help text and its label names.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tabby_up": (
        "1 when TabbyAPI itself answered /health (healthy or unhealthy), else 0",
        ("node",),
    ),
    "tabby_healthy": ("1 when the node's /health says healthy, else 0", ("node",)),
    "tabby_probe_error_info": (
        "Why a node is down (value 1): the probe error's code",
        ("node", "code"),
    ),
    "tabby_health_issues": (
        "Issues the node's /health lists (TabbyAPI keeps the last 100 until restarted)",
        ("node",),
    ),
    "tabby_unhealthy_since_timestamp_seconds": (
        "Unix time of the oldest issue the node's /health still lists",
        ("node",),
    ),
    "tabby_last_health_issue_timestamp_seconds": (
        "Unix time of the latest issue the node's /health lists",
        ("node",),
    ),
    "tabby_last_health_issue_info": (
        "The latest issue's description (value 1; one line, at most 200 characters)",
        ("node", "description"),
    ),
    "tabby_model_loaded": (
        "1 when a model is loaded, 0 when none is (or a load is running)",
        ("node",),
    ),
    "tabby_model_info": (
        "The loaded model (value 1)",
        ("node", "model", "cache_mode", "prompt_template"),
    ),
    "tabby_model_max_seq_len_tokens": ("Context length of the loaded model", ("node",)),
    "tabby_model_cache_size_tokens": ("Cache size of the loaded model", ("node",)),
    "tabby_embedding_model_info": ("The loaded embedding model (value 1)", ("node", "model")),
    "tabby_probe_duration_seconds": ("Seconds the node's probes took", ("node",)),
    "tabby_desired_state_match": (
        "1 when the node is in its declared desired state, 0 when it is not; "
        "absent when that cannot be told (see tabby_desired_state_verified)",
        ("node",),
    ),
    "tabby_desired_state_verified": (
        "1 when the node's answers prove whether it is in its desired state, 0 when they "
        "cannot (a part matches only by a name its card cannot prove)",
        ("node",),
    ),
    "tabby_desired_state_info": (
        "What the node needs to reach its desired state (value 1): none, load, reload or switch",
        ("node", "action"),
    ),
    "tabby_scrape_duration_seconds": ("Seconds the last sweep of the fleet took", ()),
    "tabby_nodes": ("Nodes in the fleet", ()),
}

#: The metrics of a whole sweep, which a probe of one node leaves out.
FLEET_METRICS = frozenset({"tabby_scrape_duration_seconds", "tabby_nodes"})


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """One node in a sweep: its status, or why it could not be reached.

    ``plan`` is what reaching the node's declared desired state would take
    (None when it declares none, or when a probe it needs failed).
    """

    node: str
    status: NodeStatus | None
    error: TabbyError | None
    duration: float
    plan: StatePlan | None = None

    @property
    def up(self) -> bool:
        """TabbyAPI itself answered the node's ``/health`` (healthy or not)."""
        return self.status is not None


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """One sweep of a fleet: every node, how long it took, and when it started."""

    nodes: tuple[NodeSnapshot, ...]
    duration: float
    started: float = 0.0


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric family's samples: ``(label values, value)`` in the order of ``METRICS``."""

    name: str
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    @property
    def help(self) -> str:
        """The help text."""
        return METRICS[self.name][0]

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names."""
        return METRICS[self.name][1]


def plan_action(plan: StatePlan) -> str:
    """The action a plan needs first (in the order parts are applied), or ``none``."""
    return next((p.action for p in plan.parts if p.changes), "none")


def metrics(snapshot: FleetSnapshot, *, fleet: bool = True) -> list[Metric]:
    """Every metric of ``snapshot``, in the order of :data:`METRICS`.

    A node that is down has ``tabby_up`` 0, ``tabby_healthy`` 0, its probe
    duration and ``tabby_probe_error_info`` (why), and nothing else: what it
    runs is unknown. A probe that failed on a node that is up (a refused
    key, say) leaves out what it would have told. ``fleet=False`` (one
    node's probe) leaves out the sweep's own metrics.
    """
    found = {name: Metric(name) for name in METRICS if fleet or name not in FLEET_METRICS}

    def add(name: str, labels: tuple[str, ...], value: float) -> None:
        found[name].samples.append((labels, value))

    for node in snapshot.nodes:
        name = (node.node,)
        status = node.status
        add("tabby_up", name, float(node.up))
        add("tabby_healthy", name, float(status is not None and status.healthy))
        add("tabby_probe_duration_seconds", name, node.duration)
        if status is None:
            code = node.error.code if node.error is not None else "unknown"
            add("tabby_probe_error_info", (node.node, code), 1.0)
            continue
        _health(add, node.node, status)
        if "model" not in status.problems:
            card = status.model
            add("tabby_model_loaded", name, float(card is not None))
            params = card.parameters if card is not None else None
            if card is not None:
                cache_mode = (params.cache_mode if params else None) or ""
                template = (params.prompt_template if params else None) or ""
                add("tabby_model_info", (node.node, card.id, cache_mode, template), 1.0)
            if params is not None and params.max_seq_len is not None:
                add("tabby_model_max_seq_len_tokens", name, params.max_seq_len)
            if params is not None and params.cache_size is not None:
                add("tabby_model_cache_size_tokens", name, params.cache_size)
        if status.embedding_model is not None:
            add("tabby_embedding_model_info", (node.node, status.embedding_model.id), 1.0)
        if node.plan is not None:
            met = node.plan.met
            if met is not None:
                add("tabby_desired_state_match", name, float(met))
            add("tabby_desired_state_verified", name, float(met is not None))
            add("tabby_desired_state_info", (node.node, plan_action(node.plan)), 1.0)
    if fleet:
        add("tabby_scrape_duration_seconds", (), snapshot.duration)
        add("tabby_nodes", (), len(snapshot.nodes))
    return list(found.values())


def _health(
    add: Callable[[str, tuple[str, ...], float], None], node: str, status: NodeStatus
) -> None:
    """The health metrics of a node that is up: its issues, since when, the latest one."""
    health = status.health
    issues = health.issues if health is not None else []
    add("tabby_health_issues", (node,), len(issues))
    if health is None or health.healthy:
        return
    since = health.since
    if since is not None:
        add("tabby_unhealthy_since_timestamp_seconds", (node,), since.timestamp())
    last = health.last_issue
    if last is not None:
        at = last.at
        if at is not None:
            add("tabby_last_health_issue_timestamp_seconds", (node,), at.timestamp())
        add("tabby_last_health_issue_info", (node, last.summary()), 1.0)
