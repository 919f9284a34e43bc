"""A fleet sweep's result and the metrics it exposes: pure, no I/O and no prometheus_client.

Naming follows Prometheus practice: base units (``_seconds``), ``_info``
gauges of value 1 that carry an identity in their labels, and labels of low
cardinality (the node, a model's name, a plan's action).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._state import StatePlan
from ..errors import TabbyError
from ..fleet import NodeStatus

__all__ = ["METRICS", "FleetSnapshot", "Metric", "NodeSnapshot", "metrics", "plan_action"]

#: Every metric: its name, its help text and its label names.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tabby_up": ("1 when the node was reached and answered its probes, else 0", ("node",)),
    "tabby_healthy": ("1 when the node's /health says healthy, else 0", ("node",)),
    "tabby_model_loaded": (
        "1 when a model is loaded, 0 when none is (or a load is running)",
        ("node",),
    ),
    "tabby_model_info": (
        "The loaded model (value 1)",
        ("node", "model", "cache_mode", "prompt_template"),
    ),
    "tabby_model_max_seq_len": ("Context length of the loaded model, in tokens", ("node",)),
    "tabby_model_cache_size": ("Cache size of the loaded model, in tokens", ("node",)),
    "tabby_embedding_model_info": ("The loaded embedding model (value 1)", ("node", "model")),
    "tabby_probe_duration_seconds": ("Seconds the node's probes took", ("node",)),
    "tabby_desired_state_match": (
        "1 when the node is in its declared desired state, else 0",
        ("node",),
    ),
    "tabby_desired_state_info": (
        "What the node needs to reach its desired state (value 1): none, load, reload or switch",
        ("node", "action"),
    ),
    "tabby_scrape_duration_seconds": ("Seconds the last sweep of the fleet took", ()),
    "tabby_nodes": ("Nodes in the fleet", ()),
}


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
        """The node was reached and answered."""
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


def metrics(snapshot: FleetSnapshot) -> list[Metric]:
    """Every metric of ``snapshot``, in the order of :data:`METRICS`.

    An unreachable node has ``tabby_up`` 0, ``tabby_healthy`` 0 and its probe
    duration, and nothing else: what it runs is unknown. A probe that failed
    on a reachable node (a refused key, say) leaves out what it would have
    told.
    """
    found = {name: Metric(name) for name in METRICS}

    def add(name: str, labels: tuple[str, ...], value: float) -> None:
        found[name].samples.append((labels, value))

    for node in snapshot.nodes:
        name = (node.node,)
        status = node.status
        add("tabby_up", name, float(node.up))
        add("tabby_healthy", name, float(status is not None and status.healthy))
        add("tabby_probe_duration_seconds", name, node.duration)
        if status is None:
            continue
        if "model" not in status.problems:
            card = status.model
            add("tabby_model_loaded", name, float(card is not None))
            params = card.parameters if card is not None else None
            if card is not None:
                cache_mode = (params.cache_mode if params else None) or ""
                template = (params.prompt_template if params else None) or ""
                add("tabby_model_info", (node.node, card.id, cache_mode, template), 1.0)
            if params is not None and params.max_seq_len is not None:
                add("tabby_model_max_seq_len", name, params.max_seq_len)
            if params is not None and params.cache_size is not None:
                add("tabby_model_cache_size", name, params.cache_size)
        if status.embedding_model is not None:
            add("tabby_embedding_model_info", (node.node, status.embedding_model.id), 1.0)
        if node.plan is not None:
            action = plan_action(node.plan)
            add("tabby_desired_state_match", name, float(action == "none"))
            add("tabby_desired_state_info", (node.node, action), 1.0)
    add("tabby_scrape_duration_seconds", (), snapshot.duration)
    add("tabby_nodes", (), len(snapshot.nodes))
    return list(found.values())
