"""The gateway's pure placement rules: which replica serves, where a model loads, and when not."""

from __future__ import annotations

from typing import Any

import pytest

from tabby_async.gateway import CatalogModel
from tabby_async.gateway._catalog import last_segment
from tabby_async.gateway._placement import (
    NodeState,
    Placement,
    Slot,
    can_ever_place,
    pick_replica,
    place,
    routable,
)
from tabby_async.types import EmbeddingModelLoadRequest, ModelLoadRequest


def model(name: str, folder: str | None = None, **policy: Any) -> CatalogModel:
    return CatalogModel(name, ModelLoadRequest(model_name=folder or name), **policy)


def embedding(name: str, **policy: Any) -> CatalogModel:
    return CatalogModel(name, EmbeddingModelLoadRequest(embedding_model_name=name), **policy)


CATALOG = {
    entry.name: entry
    for entry in [
        model("want", max_replicas=2),
        model("one"),  # max_replicas 1
        model("nested", "org/nested/4.0bpw"),
        model("only-b", nodes=frozenset({"b"})),
        model("old1"),
        model("old2"),
        model("pin", pinned=True),
        embedding("emb"),
        embedding("emb2"),
        embedding("emb-pin", pinned=True),
    ]
}


def node(
    name: str,
    held: str | None = None,
    *,
    seen: str | None = None,
    in_flight: int = 0,
    last_used: float = 0.0,
    emb: str | None = None,
    emb_seen: str | None = None,
    emb_in_flight: int = 0,
    draining: bool = False,
    **state: Any,
) -> NodeState:
    """A node whose model place holds ``held`` (or an unproven card ``seen``).

    A ``swapping`` node swaps its model place unless ``swapping_kind`` says another.
    """
    if state.get("swapping") is not None:
        state.setdefault("swapping_kind", "model")
    return NodeState(
        name,
        slots={
            "model": Slot(held, seen, in_flight, last_used, draining),
            "embedding": Slot(emb, emb_seen, emb_in_flight, last_used),
        },
        **state,
    )


def fleet(*nodes: NodeState) -> dict[str, NodeState]:
    return {n.name: n for n in nodes}


# --------------------------------------------------------------------------- pick_replica

PICK = [
    # (nodes, the model asked, its kind, the node picked)
    (
        [
            node("a", "want", in_flight=3),
            node("b", "want", in_flight=1),
            node("c", "want", in_flight=2),
        ],
        "want",
        "model",
        "b",
    ),
    # A tie goes to the first.
    ([node("a", "want", in_flight=1), node("b", "want", in_flight=1)], "want", "model", "a"),
    ([node("a", "want", in_flight=0), node("b", "old1", in_flight=0)], "old1", "model", "b"),
    # Down, swapping or draining nodes take no request, however idle.
    ([node("a", "want", up=False), node("b", "want", in_flight=5)], "want", "model", "b"),
    ([node("a", "want", swapping="old1"), node("b", "want", in_flight=5)], "want", "model", "b"),
    ([node("a", "want", swapping=""), node("b", "want", in_flight=5)], "want", "model", "b"),
    # A swap of the other place leaves this one serving.
    (
        [
            node("a", "want", swapping="e2", swapping_kind="embedding"),
            node("b", "want", in_flight=5),
        ],
        "want",
        "model",
        "a",
    ),
    ([node("a", "want", draining=True), node("b", "want", in_flight=5)], "want", "model", "b"),
    # Degraded (its /health says unhealthy) still serves.
    ([node("a", "want", healthy=False), node("b", "want", in_flight=5)], "want", "model", "a"),
    ([node("a", "want", up=False), node("b", "want", draining=True)], "want", "model", None),
    ([node("a", "old1"), node("b")], "want", "model", None),
    ([], "want", "model", None),
    # An unproven card is never routed to, even when its last segment matches.
    ([node("a", seen="4.0bpw")], "nested", "model", None),
    # Each kind is its own place.
    ([node("a", "emb"), node("b", emb="emb", emb_in_flight=2)], "emb", "embedding", "b"),
    ([node("a", emb="emb")], "emb", "model", None),
    (
        [node("a", emb="emb", emb_in_flight=4), node("b", emb="emb", emb_in_flight=1, in_flight=9)],
        "emb",
        "embedding",
        "b",
    ),
]


@pytest.mark.parametrize(("nodes", "name", "kind", "picked"), PICK)
def test_pick_replica_takes_the_routable_holder_with_fewest_in_flight(
    nodes: list[NodeState], name: str, kind: Any, picked: str | None
) -> None:
    got = pick_replica(nodes, name, kind)
    assert (None if got is None else got.name) == picked
    if got is None:
        assert not any(routable(n, name, kind) for n in nodes)
    else:
        fewest = min(n.slots[kind].in_flight for n in nodes if routable(n, name, kind))
        assert routable(got, name, kind) and got.slots[kind].in_flight == fewest


# --------------------------------------------------------------------------- place

PLACE = [
    # (entry, nodes, replicas, evict_unknown, now, Placement or None)
    # An empty place first, over the least recently used idle model.
    ("one", [node("a", "old1", last_used=1), node("b")], 0, False, 0, Placement("b", "cold", None)),
    ("one", [node("a"), node("b")], 0, False, 0, Placement("a", "cold", None)),
    # A card whose last segment is the entry's: loading there lets the server prove it.
    (
        "nested",
        [node("a"), node("b", seen="4.0bpw")],
        0,
        False,
        0,
        Placement("b", "cold", "4.0bpw", adopt=True),
    ),
    ("nested", [node("a", seen="5.0bpw")], 0, False, 0, None),
    # Least recently used among idle evictable models.
    (
        "one",
        [node("a", "old1", last_used=5), node("b", "old2", last_used=3)],
        0,
        False,
        0,
        Placement("b", "evict", "old2"),
    ),
    (
        "one",
        [node("a", "old1", last_used=2), node("b", "old2", last_used=3)],
        0,
        False,
        0,
        Placement("a", "evict", "old1"),
    ),
    # An idle model before a busy one, however long the busy one has gone unused.
    (
        "one",
        [node("a", "old1", in_flight=2), node("b", "old2", last_used=9)],
        0,
        False,
        0,
        Placement("b", "evict", "old2"),
    ),
    # A busy model (drained first) for a first replica, the least recently used one.
    ("one", [node("a", "old1", in_flight=1)], 0, False, 0, Placement("a", "evict", "old1")),
    (
        "one",
        [node("a", "old1", in_flight=1, last_used=5), node("b", "old2", in_flight=3, last_used=2)],
        0,
        False,
        0,
        Placement("b", "evict", "old2"),
    ),
    # A second replica only on a free node: empty, or holding an idle model.
    ("want", [node("a", "want"), node("b", "old1", in_flight=1)], 1, False, 0, None),
    ("want", [node("a", "want"), node("b")], 1, False, 0, Placement("b", "cold", None)),
    ("want", [node("a", "want"), node("b", "old1")], 1, False, 0, Placement("b", "evict", "old1")),
    # max_replicas reached.
    ("want", [node("a", "want"), node("b", "want"), node("c")], 2, False, 0, None),
    ("one", [node("a", "one"), node("b")], 1, False, 0, None),
    # A node that already holds it is not a place for it.
    (
        "want",
        [node("a", "want"), node("b", "old1", last_used=9)],
        0,
        False,
        0,
        Placement("b", "evict", "old1"),
    ),
    # Never a pinned model.
    ("one", [node("a", "pin"), node("b", "pin", in_flight=1)], 0, False, 0, None),
    (
        "one",
        [node("a", "pin"), node("b", "old1", in_flight=1)],
        0,
        False,
        0,
        Placement("b", "evict", "old1"),
    ),
    # Never a model outside the catalog, unless evict_unknown.
    ("one", [node("a", seen="stranger")], 0, False, 0, None),
    ("one", [node("a", seen="stranger")], 0, True, 0, Placement("a", "evict", "stranger")),
    (
        "one",
        [node("a", seen="stranger", last_used=0), node("b", "old1", last_used=5)],
        0,
        True,
        0,
        Placement("a", "evict", "stranger"),
    ),
    # Never a node outside the entry's nodes.
    (
        "only-b",
        [node("a"), node("b", "old1", in_flight=1)],
        0,
        False,
        0,
        Placement("b", "evict", "old1"),
    ),
    ("only-b", [node("a"), node("c")], 0, False, 0, None),
    # Never a node backing off that model, until its time.
    (
        "one",
        [node("a", backoff={"one": 10.0}), node("b", "old1")],
        0,
        False,
        5,
        Placement("b", "evict", "old1"),
    ),
    (
        "one",
        [node("a", backoff={"one": 10.0}), node("b", "old1")],
        0,
        False,
        10,
        Placement("a", "cold", None),
    ),
    (
        "one",
        [node("a", backoff={"other": 10.0}), node("b", "old1")],
        0,
        False,
        5,
        Placement("a", "cold", None),
    ),
    ("one", [node("a", backoff={"one": 10.0})], 0, False, 9.5, None),
    # Never a node that is down or swapping.
    ("one", [node("a", up=False), node("b", "old1")], 0, False, 0, Placement("b", "evict", "old1")),
    (
        "one",
        [node("a", swapping="old2"), node("b", "old1")],
        0,
        False,
        0,
        Placement("b", "evict", "old1"),
    ),
    ("one", [node("a", swapping=""), node("b", up=False)], 0, False, 0, None),
    # Degraded still takes a load.
    ("one", [node("a", healthy=False)], 0, False, 0, Placement("a", "cold", None)),
    # An embedding model uses the embedding place and leaves the model place alone.
    ("emb", [node("a", "pin", in_flight=4)], 0, False, 0, Placement("a", "cold", None)),
    (
        "emb",
        [node("a", emb="emb2", last_used=1), node("b", "old1", emb="emb-pin")],
        0,
        False,
        0,
        Placement("a", "evict", "emb2"),
    ),
    ("emb", [node("a", emb="emb-pin"), node("b", emb_seen="x")], 0, False, 0, None),
    ("emb", [node("a", emb="emb2", emb_in_flight=1)], 0, False, 0, Placement("a", "evict", "emb2")),
    # The model place ignores what the embedding place holds.
    (
        "one",
        [node("a", emb="emb-pin"), node("b", "old1")],
        0,
        False,
        0,
        Placement("a", "cold", None),
    ),
]


@pytest.mark.parametrize(("name", "nodes", "replicas", "evict_unknown", "now", "expected"), PLACE)
def test_place_picks_the_best_place_or_none(
    name: str,
    nodes: list[NodeState],
    replicas: int,
    evict_unknown: bool,
    now: float,
    expected: Placement | None,
) -> None:
    got = place(
        CATALOG[name],
        fleet(*nodes),
        CATALOG,
        now,
        evict_unknown=evict_unknown,
        replicas=replicas,
    )
    assert got == expected


def test_place_reads_the_state_and_changes_none_of_it() -> None:
    nodes = fleet(node("a", "old1", in_flight=1, last_used=3), node("b", seen="x"))
    before = repr(nodes)
    assert place(CATALOG["one"], nodes, CATALOG, 0, evict_unknown=True, replicas=0) == Placement(
        "b", "evict", "x"
    )
    assert repr(nodes) == before


# --------------------------------------------------------------------------- can_ever_place

EVER = [
    # (entry, nodes, evict_unknown, now, whether waiting can end in a load or a route)
    ("one", [node("a", "one")], False, 0, True),  # it is loaded
    ("one", [node("a", "one", swapping="")], False, 0, True),
    ("one", [node("a", "one", up=False)], False, 0, False),
    ("one", [node("a", "old1", in_flight=3)], False, 0, True),  # once what runs there ends
    ("one", [node("a", "old1", swapping="old2")], False, 0, True),  # once the swap ends
    ("one", [node("a")], False, 0, True),
    ("one", [node("a", up=False), node("b", up=False)], False, 0, False),
    ("one", [node("a", backoff={"one": 10.0})], False, 5, False),
    ("one", [node("a", backoff={"one": 10.0})], False, 10, True),
    ("one", [node("a", backoff={"one": 10.0}), node("b", up=False)], False, 5, False),
    ("one", [node("a", "pin"), node("b", "pin", in_flight=1)], False, 0, False),
    ("one", [node("a", seen="stranger")], False, 0, False),
    ("one", [node("a", seen="stranger")], True, 0, True),
    ("one", [node("a", "pin"), node("b", seen="stranger", backoff={"one": 9.0})], True, 0, False),
    ("nested", [node("a", seen="4.0bpw")], False, 0, True),
    ("only-b", [node("a"), node("b", "pin")], False, 0, False),
    ("only-b", [node("a"), node("b", "old1", in_flight=1)], False, 0, True),
    ("only-b", [node("a")], False, 0, False),
    ("emb", [node("a", "pin", emb="emb-pin")], False, 0, False),
    ("emb", [node("a", "pin", in_flight=2)], False, 0, True),
    ("emb", [node("a", emb="emb2", emb_in_flight=2)], False, 0, True),
    ("one", [node("a", "pin", emb="emb2")], False, 0, False),
    ("one", [], False, 0, False),
]


@pytest.mark.parametrize(("name", "nodes", "evict_unknown", "now", "expected"), EVER)
def test_can_ever_place_says_whether_waiting_can_end_well(
    name: str, nodes: list[NodeState], evict_unknown: bool, now: float, expected: bool
) -> None:
    entry = CATALOG[name]
    got = can_ever_place(entry, fleet(*nodes), CATALOG, now, evict_unknown=evict_unknown)
    assert got is expected


@pytest.mark.parametrize(("name", "nodes", "evict_unknown", "now", "expected"), EVER)
def test_a_place_found_now_is_a_place_that_can_ever_be(
    name: str, nodes: list[NodeState], evict_unknown: bool, now: float, expected: bool
) -> None:
    # The gateway fails waiters at once only when can_ever_place is False:
    # it must never say so while place() would find a node.
    found = place(
        CATALOG[name], fleet(*nodes), CATALOG, now, evict_unknown=evict_unknown, replicas=0
    )
    if found is not None:
        assert expected


# --------------------------------------------------------------------------- the pieces


@pytest.mark.parametrize(
    ("folder", "card"),
    [
        ("m1", "m1"),
        ("org/Llama-3.1-8B/4.0bpw", "4.0bpw"),
        ("org/model/", "model"),
        ("org\\model", "model"),
    ],
)
def test_last_segment_is_what_a_card_shows_of_a_folder(folder: str, card: str) -> None:
    assert last_segment(folder) == card


def test_a_slot_is_empty_only_with_nothing_proven_or_seen() -> None:
    assert Slot().empty
    assert not Slot(model="m").empty
    assert not Slot(seen="card").empty
    state = NodeState("a")
    assert state.slots["model"].empty and state.slots["embedding"].empty
    assert state.slots["model"] is not NodeState("b").slots["model"]
    assert not state.holds("m", "model")
    state.slots["embedding"].model = "m"
    assert state.holds("m", "embedding") and not state.holds("m", "model")
