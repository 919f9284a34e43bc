"""Where a request goes and where a model is loaded: the gateway's pure rules, apart from I/O.

Each node has two places (:class:`Slot`): one for a generating model and one
for an embedding model, as TabbyAPI holds one of each. The gateway's
:class:`NodeState` records what each place holds, the requests in flight
through the gateway, when the last one ended, and whether the node is up,
healthy or in the middle of a swap. The functions here read that state and
decide; the gateway acts on what they decide. They never await, so the
decision and the bookkeeping that follows it happen in one step of the event
loop, with no request slipping in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ._catalog import CatalogModel, ModelKind, last_segment

__all__ = [
    "NodeState",
    "Placement",
    "Slot",
    "SwapReason",
    "can_ever_place",
    "pick_replica",
    "place",
    "routable",
]

#: Why a swap ran: ``cold`` (into an empty place), ``evict`` (over another
#: model), ``ttl`` (an unload after the model's time to live).
SwapReason = Literal["cold", "evict", "ttl"]


@dataclass
class Slot:
    """What one place of a node holds, as far as the gateway can tell.

    ``model`` is the catalog name of the model proven to be there (the
    gateway loaded it, or the card's id is the catalog's flat folder name).
    ``seen`` is the card id the node reported when the catalog cannot prove
    which folder it is (a model outside the catalog, or a nested folder whose
    last segment matches an entry: the card shows only that segment).
    """

    model: str | None = None
    seen: str | None = None
    in_flight: int = 0
    #: When the last request for this place's model ended (or it was loaded).
    last_used: float = 0.0
    #: A swap is waiting for this place's requests to end (no new ones come).
    draining: bool = False

    @property
    def empty(self) -> bool:
        """True when nothing is loaded here."""
        return self.model is None and self.seen is None


@dataclass
class NodeState:
    """One node as the gateway sees it (mutable; the gateway's loop owns it)."""

    name: str
    up: bool = True
    #: False while the node's /health says "unhealthy": it still serves (degraded).
    healthy: bool = True
    #: The catalog name a swap is bringing in, or "" for an unload; None: no swap.
    swapping: str | None = None
    #: The place the swap changes: the other place keeps serving meanwhile
    #: (the server holds a generating and an embedding model apart).
    swapping_kind: ModelKind | None = None
    slots: dict[ModelKind, Slot] = field(
        default_factory=lambda: {"model": Slot(), "embedding": Slot()}
    )
    #: model name -> the time until which loading it here is not tried again.
    backoff: dict[str, float] = field(default_factory=dict)

    def holds(self, name: str, kind: ModelKind) -> bool:
        """True when the place of ``kind`` holds the catalog model ``name``."""
        return self.slots[kind].model == name


@dataclass(frozen=True)
class Placement:
    """Where to load a model: the node, why, and what it replaces."""

    node: str
    reason: SwapReason
    #: The catalog name or card id of what is unloaded (None: the place is empty).
    replaces: str | None
    #: The place holds a model the catalog matches by its last segment only:
    #: loading it there lets the server prove (a no-op) or replace it.
    adopt: bool = False


def routable(node: NodeState, name: str, kind: ModelKind) -> bool:
    """True when a request for ``name`` may go to ``node`` now."""
    slot = node.slots[kind]
    return (
        slot.model == name
        and node.up
        and not slot.draining
        and (node.swapping is None or node.swapping_kind != kind)
    )


def pick_replica(nodes: Iterable[NodeState], name: str, kind: ModelKind) -> NodeState | None:
    """The routable node holding ``name`` with the fewest requests in flight, or None."""
    best: NodeState | None = None
    for node in nodes:
        if routable(node, name, kind) and (
            best is None or node.slots[kind].in_flight < best.slots[kind].in_flight
        ):
            best = node
    return best


def place(
    entry: CatalogModel,
    nodes: Mapping[str, NodeState],
    catalog: Mapping[str, CatalogModel],
    now: float,
    *,
    evict_unknown: bool,
    replicas: int,
) -> Placement | None:
    """Where to load ``entry`` now, or None when no node may take it at the moment.

    ``replicas`` counts the nodes that hold it or are loading it. Order: a
    place that already holds it unproven (the server decides), an empty
    place, then the least recently used model with nothing in flight, and
    only for a first replica, the least recently used one with requests in
    flight (drained first). Never a pinned model, a node that is down,
    swapping or backing off this model, a model outside the catalog unless
    ``evict_unknown``, or a node outside the entry's ``nodes``.
    """
    if replicas >= entry.max_replicas:
        return None
    kind = entry.kind
    best: tuple[int, float, str] | None = None
    found: Placement | None = None
    for name, node in nodes.items():
        if not _may_take(entry, node, now):
            continue
        slot = node.slots[kind]
        rank, replaces, adopt = _rank(entry, slot, catalog, evict_unknown)
        if rank is None or (replicas and rank > 1):  # a second replica needs a free node
            continue
        key = (rank, slot.last_used, name)
        if best is None or key < best:
            best = key
            reason: SwapReason = "cold" if slot.empty or adopt else "evict"
            found = Placement(name, reason, replaces, adopt)
    return found


def can_ever_place(
    entry: CatalogModel,
    nodes: Mapping[str, NodeState],
    catalog: Mapping[str, CatalogModel],
    now: float,
    *,
    evict_unknown: bool,
) -> bool:
    """True when some node could take ``entry`` once what runs there ends.

    False when every node it may run on is down, backing off this model, or
    holds a model that is never evicted (pinned, or outside the catalog):
    waiting would only end in the queue timeout.
    """
    for node in nodes.values():
        if node.holds(entry.name, entry.kind) and node.up:
            return True
        if not _may_take(entry, node, now, swapping_ok=True):
            continue
        rank, _, _ = _rank(entry, node.slots[entry.kind], catalog, evict_unknown)
        if rank is not None:
            return True
    return False


def _may_take(entry: CatalogModel, node: NodeState, now: float, swapping_ok: bool = False) -> bool:
    if not node.up or (node.swapping is not None and not swapping_ok):
        return False
    if entry.nodes is not None and node.name not in entry.nodes:
        return False
    if node.backoff.get(entry.name, 0.0) > now:
        return False
    return not node.holds(entry.name, entry.kind)


def _rank(
    entry: CatalogModel, slot: Slot, catalog: Mapping[str, CatalogModel], evict_unknown: bool
) -> tuple[int | None, str | None, bool]:
    """``(rank, what it replaces, adopt)``: lower ranks first; None: never this place."""
    if slot.empty:
        return 0, None, False
    if slot.model is None:  # a card the catalog cannot prove
        seen = slot.seen or ""
        if last_segment(entry.folder) == seen:
            return -1, seen, True
        return (1 if evict_unknown else None), seen, False
    held = catalog.get(slot.model)
    if held is None or held.pinned:
        return None, slot.model, False
    return (1 if slot.in_flight == 0 else 2), slot.model, False
