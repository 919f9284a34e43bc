"""Fleet methods take a request's keyword fields and the run options in one typed tail."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import tabby_async.fleet as fleet_module
import tabby_async.types as types_module
from tabby_async import InvalidInputError
from tabby_async.fleet import (
    FleetDownloadKeywords,
    FleetEmbeddingLoadKeywords,
    FleetLoadKeywords,
    FleetLoadStreamKeywords,
    FleetModels,
    NodeResult,
    NodeSpec,
    RunOptions,
    StreamOptions,
    TabbyFleet,
)
from tabby_async.fleet._runner import OPTION_NAMES, split_options
from tabby_async.testing import TabbyEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tabby_async.types import (
    DownloadFields,
    DownloadRequest,
    EmbeddingModelLoadFields,
    ModelLoadFields,
)

pytestmark = pytest.mark.emulator(models=["alpha"])


async def test_a_field_and_an_option_in_one_call_both_take_effect(server: TabbyEmulator) -> None:
    seen: list[str] = []
    spec = NodeSpec("a", server.url, admin_key=server.admin_key)
    async with TabbyFleet([spec]) as fleet:
        loaded = await fleet.models.load(
            model_name="alpha",
            max_seq_len=2048,
            nodes=["a"],
            on_result=lambda r: seen.append(r.node),
        )
        assert loaded["a"].ok and seen == ["a"]
        card = (await fleet.models.get())["a"].unwrap()
    assert card.parameters is not None and card.parameters.max_seq_len == 2048


async def test_an_unknown_keyword_or_node_is_refused_by_name(server: TabbyEmulator) -> None:
    spec = NodeSpec("a", server.url, admin_key=server.admin_key)
    async with TabbyFleet([spec]) as fleet:
        with pytest.raises(InvalidInputError) as info:
            await fleet.models.load(model_name="alpha", max_seq=1)  # type: ignore[call-arg]
        assert info.value.field == "max_seq"
        with pytest.raises(InvalidInputError, match="nope"):
            await fleet.models.plan_load(model_name="alpha", nodes=["nope"])
        with pytest.raises(InvalidInputError) as stream_info:
            fleet.models.load_stream(model_name="alpha", on_result=print)  # type: ignore[call-arg]
        assert stream_info.value.field == "on_result"
    assert [r.path for r in server.requests] == []  # refused before any node was asked


KEYWORDS = {
    FleetLoadKeywords: (ModelLoadFields, RunOptions),
    FleetLoadStreamKeywords: (ModelLoadFields, StreamOptions),
    FleetEmbeddingLoadKeywords: (EmbeddingModelLoadFields, RunOptions),
    FleetDownloadKeywords: (DownloadFields, RunOptions),
}


@pytest.mark.parametrize("keywords", list(KEYWORDS), ids=lambda k: k.__name__)
def test_a_methods_keywords_are_its_fields_and_its_options_and_no_name_is_both(
    keywords: type,
) -> None:
    fields, options = KEYWORDS[keywords]
    assert not set(fields.__annotations__) & OPTION_NAMES
    assert set(options.__annotations__) <= OPTION_NAMES
    assert set(keywords.__annotations__) == set(fields.__annotations__) | set(
        options.__annotations__
    )


def test_split_options_parts_a_call_by_name() -> None:
    on_result: Callable[[NodeResult[Any]], None] = print
    options, fields = split_options(
        {"model_name": "m", "nodes": ["a"], "timeout": None, "on_result": on_result, "max_seq": 1}
    )
    assert options == {"nodes": ["a"], "timeout": None, "on_result": on_result}
    assert fields == {"model_name": "m", "max_seq": 1}  # the unknown one goes to build_request
    assert {"nodes", "timeout", "fail_fast", "max_concurrency", "on_result"} == OPTION_NAMES


def _option_methods(cls: type) -> dict[str, type]:
    """Each public method of ``cls`` taking ``**`` keywords, with their TypedDict."""
    found: dict[str, type] = {}
    for name, member in vars(cls).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        tail = [p for p in inspect.signature(member).parameters.values() if p.kind is p.VAR_KEYWORD]
        if tail:
            annotation = str(tail[0].annotation)
            assert annotation.startswith("Unpack[") and annotation.endswith("]"), name
            inner = annotation.removeprefix("Unpack[").removesuffix("]")
            found[name] = getattr(fleet_module, inner, None) or getattr(types_module, inner)
    return found


@pytest.mark.parametrize("cls", [FleetModels, TabbyFleet])
def test_every_fleet_method_takes_its_options_through_run_options(cls: type) -> None:
    methods = _option_methods(cls)
    # rollout has no fail_fast or max_concurrency (batch_size is its concurrency);
    # from_toml takes the fleet's settings, not a call's options.
    own = {"rollout", "from_toml"}
    taking = {name: td for name, td in methods.items() if name not in own}
    expected = (
        {"load", "load_stream", "load_embedding", "download", "plan_load", "ensure_loaded", "get"}
        if cls is FleetModels
        else {"run", "health", "permission", "status", "apply", "ensure"}
    )
    assert expected <= set(taking)
    for name, typed in taking.items():
        keys: frozenset[str] = getattr(typed, "__optional_keys__", frozenset())
        assert StreamOptions.__optional_keys__ <= keys, name
        spelled = OPTION_NAMES & set(inspect.signature(getattr(cls, name)).parameters)
        assert spelled == set(), name


@pytest.fixture
async def pair(tabby_emulator_factory: EmulatorFactory) -> dict[str, TabbyEmulator]:
    """Two nodes, ``a`` and ``b``, with a model, an embedding model and a repo."""
    return {
        name: await tabby_emulator_factory(
            models=["alpha"], embeddings=["emb"], downloadable={"org/repo": 0.0}
        )
        for name in ("a", "b")
    }


def _fleet(pair: dict[str, TabbyEmulator]) -> TabbyFleet:
    return TabbyFleet([NodeSpec(n, s.url, admin_key=s.admin_key) for n, s in pair.items()])


async def _stream(fleet: TabbyFleet, seen: list[str]) -> None:
    async with fleet.models.load_stream(
        model_name="alpha", max_seq_len=2048, nodes=["b"], fail_fast=True, max_concurrency=1
    ) as stream:
        seen.extend([item.node async for item in stream if item.done])


Call = Callable[[TabbyFleet, list[str]], Awaitable[object]]
WRITES: list[tuple[str, Call, str, dict[str, object]]] = [
    (
        "load",
        lambda f, seen: f.models.load(
            model_name="alpha",
            max_seq_len=2048,
            nodes=["b"],
            on_result=lambda r: seen.append(r.node),
        ),
        "/v1/model/load",
        {"model_name": "alpha", "max_seq_len": 2048},
    ),
    ("load_stream", _stream, "/v1/model/load", {"model_name": "alpha", "max_seq_len": 2048}),
    (
        "ensure_loaded",
        lambda f, seen: f.models.ensure_loaded(
            model_name="alpha",
            max_seq_len=2048,
            nodes=["b"],
            fail_fast=True,
            on_result=lambda r: seen.append(r.node),
        ),
        "/v1/model/load",
        {"model_name": "alpha", "max_seq_len": 2048},
    ),
    (
        "load_embedding",
        lambda f, seen: f.models.load_embedding(
            embedding_model_name="emb", nodes=["b"], on_result=lambda r: seen.append(r.node)
        ),
        "/v1/model/embedding/load",
        {"embedding_model_name": "emb"},
    ),
    (
        "download",
        # The request's own (server-side) timeout rides in the Struct; timeout= is the SDK's.
        lambda f, seen: f.models.download(
            DownloadRequest(repo_id="x/y", timeout=30),
            repo_id="org/repo",
            timeout=120,
            nodes=["b"],
            on_result=lambda r: seen.append(r.node),
        ),
        "/v1/download",
        {"repo_id": "org/repo", "timeout": 30},
    ),
]


@pytest.mark.parametrize(("method", "call", "path", "sent"), WRITES, ids=[w[0] for w in WRITES])
async def test_each_methods_fields_reach_the_request_and_its_options_the_fan_out(
    pair: dict[str, TabbyEmulator],
    method: str,
    call: Call,
    path: str,
    sent: dict[str, object],
) -> None:
    seen: list[str] = []
    async with _fleet(pair) as fleet:
        await call(fleet, seen)
    assert seen == ["b"], method  # on_result (or the stream) saw the one chosen node
    assert pair["a"].requests == []  # nodes= left a alone
    (posted,) = [r for r in pair["b"].requests if r.method == "POST" and r.path == path]
    assert isinstance(posted.body, dict)
    assert {name: posted.body.get(name) for name in sent} == sent


async def test_plan_load_plans_the_fields_on_the_chosen_nodes(
    pair: dict[str, TabbyEmulator],
) -> None:
    async with _fleet(pair) as fleet:
        plans = await fleet.models.plan_load(model_name="alpha", cache_size=4096, nodes=["b"])
    assert plans.nodes == ["b"]
    plan = plans["b"].unwrap()
    assert plan.action == "load" and plan.request.cache_size == 4096
    assert pair["a"].requests == []


BAD_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("load", {"model_name": "alpha", "max_concurrency": 0}),
    ("load", {"model_name": "alpha", "timeout": "5"}),
    ("load", {"model_name": "alpha", "nodes": "a"}),
    ("load_stream", {"model_name": "alpha", "max_concurrency": True}),
    ("load_stream", {"model_name": "alpha", "timeout": -1}),
    ("load_embedding", {"embedding_model_name": "emb", "nodes": ["nope"]}),
    ("download", {"repo_id": "org/repo", "timeout": float("nan")}),
    ("plan_load", {"model_name": "alpha", "max_concurrency": 0}),
    ("ensure_loaded", {"model_name": "alpha", "timeout": 0}),
]


@pytest.mark.parametrize(("method", "keywords"), BAD_OPTIONS)
async def test_a_bad_option_beside_fields_is_refused_naming_it(
    pair: dict[str, TabbyEmulator], method: str, keywords: dict[str, Any]
) -> None:
    option = next(name for name in keywords if name in OPTION_NAMES)
    async with _fleet(pair) as fleet:
        with pytest.raises(InvalidInputError) as info:
            outcome = getattr(fleet.models, method)(**keywords)
            if inspect.isawaitable(outcome):
                await outcome
            else:  # the load stream: its options are checked as it is made
                await outcome.aclose()
        assert info.value.field == option
    assert pair["a"].requests == pair["b"].requests == []
