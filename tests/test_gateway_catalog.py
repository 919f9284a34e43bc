"""The gateway's catalog: what it accepts, what it refuses (naming the key), and its defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from tabby_async import InvalidInputError
from tabby_async.gateway import (
    Catalog,
    CatalogModel,
    GatewayPolicy,
    parse_catalog,
    read_catalog,
    unservable,
)
from tabby_async.types import DraftModelLoadRequest, EmbeddingModelLoadRequest, ModelLoadRequest
from tests.helpers import reachable_text


def parse(text: str) -> Catalog:
    return parse_catalog(tomllib.loads(text))


def refusal(text: str) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        parse(text)
    return caught.value


# --------------------------------------------------------------------------- refusals

REFUSED = [
    # (catalog, the key path named, a word of the reason)
    ("[model.a]\n", "model", "not a catalog table"),
    ("models = 1\n", "models", "table"),
    ("defaults = 1\n[models.a]\n", "defaults", "table"),
    ("gateway = 1\n[models.a]\n", "gateway", "table"),
    ("[models]\na = 1\n", "models.a", "table"),
    ("[models.a]\nmax_seqlen = 4096\n", "models.a.max_seqlen", "not a field of a model load"),
    ("[defaults]\nbogus = 1\n[models.a]\n", "defaults.bogus", "not a field"),
    # Unknown in [defaults] even when only embedding models (which take no load field) use it.
    ('[defaults]\nbogus = 1\n[models.e]\nkind = "embedding"\n', "defaults.bogus", "not a field"),
    ('[defaults]\nmodel_name = "x"\n[models.a]\n', "defaults.model_name", "own table"),
    ('[defaults]\nkind = "embedding"\n[models.a]\n', "defaults.kind", "own table"),
    ("[models.a]\n[gateway]\nqueue_sise = 5\n", "gateway.queue_sise", "not a gateway setting"),
    ('[models.a]\nmax_seq_len = "x"\n', "models.a.max_seq_len", "integer"),
    ("[models.a]\ncache_size = 4000\n", "models.a.cache_size", "multiple of 256"),
    ('[defaults]\nmax_seq_len = "x"\n[models.a]\n', "defaults.max_seq_len", "integer"),
    ('[defaults]\nmax_seq_len = "x"\n[models.e]\nkind = "embedding"\n', "defaults.max_seq_len", ""),
    ('[models.a]\nkind = "lora"\n', "models.a.kind", "'model' or 'embedding'"),
    ("[models.a]\nkind = 1\n", "models.a.kind", "'model' or 'embedding'"),
    ("[models.a]\nttl = 0\n", "models.a.ttl", "above 0"),
    ("[models.a]\nttl = -5\n", "models.a.ttl", "above 0"),
    ('[models.a]\nttl = "600"\n', "models.a.ttl", "seconds"),
    ("[models.a]\nttl = true\n", "models.a.ttl", "seconds"),
    ("[models.a]\nttl = inf\n", "models.a.ttl", "seconds"),
    ("[defaults]\nttl = 0\n[models.a]\n", "defaults.ttl", "in models.a"),
    ('[models.a]\npinned = "yes"\n', "models.a.pinned", "true or false"),
    ("[models.a]\npinned = 1\n", "models.a.pinned", "true or false"),
    ('[models.a]\nnodes = "gpu-01"\n', "models.a.nodes", "list of node names"),
    ("[models.a]\nnodes = [1, 2]\n", "models.a.nodes", "list of node names"),
    ("[models.a]\nnodes = []\n", "models.a.nodes", "empty"),
    ("[defaults]\nnodes = []\n[models.a]\n", "defaults.nodes", "empty"),
    ("[models.a]\nmax_replicas = 0\n", "models.a.max_replicas", "at least 1"),
    ("[models.a]\nmax_replicas = true\n", "models.a.max_replicas", "at least 1"),
    ("[models.a]\nmax_replicas = 1.5\n", "models.a.max_replicas", "at least 1"),
    ('[models.a]\nmodel_name = "f"\n[models.b]\nmodel_name = "f"\n', "models.b.model_name", "a"),
    ('[models.f]\n[models.b]\nmodel_name = "f"\n', "models.b.model_name", "folder of f"),
    ('[models.a]\nmodel_name = ""\n', "models.a.model_name", ""),
    ('[models.e]\nkind = "embedding"\nmax_seq_len = 4096\n', "models.e.max_seq_len", "embedding"),
    ('[models.a]\nembeddings_device = "cpu"\n', "models.a.embeddings_device", "model load"),
    ('[models.a]\ndraft_model = "d"\n', "models.a.draft_model", "table"),
    ("[models.a]\ndraft_model = {}\n", "models.a.draft_model.draft_model_name", "required"),
    (
        '[models.a]\ndraft_model = { draft_model_name = "d", rope = 2 }\n',
        "models.a.draft_model.rope",
        "not a field of a draft",
    ),
    (
        '[models.a]\ndraft_model = { draft_model_name = "d", draft_rope_scale = -1 }\n',
        "models.a.draft_model.draft_rope_scale",
        "greater than 0",
    ),
    (
        '[defaults]\ndraft_model = { draft_model_name = "d", draft_rope_scale = -1 }\n'
        '[models.e]\nkind = "embedding"\n',
        "defaults.draft_model.draft_rope_scale",
        "",
    ),
    # Names that are not bare TOML keys are quoted in the path.
    ('[models."llama.8b"]\nmax_seq_len = "x"\n', 'models."llama.8b".max_seq_len', "integer"),
    ('[models."org/m"]\nttl = 0\n', 'models."org/m".ttl', "above 0"),
    ('[models."a b"]\npinned = 2\n', 'models."a b".pinned', "true or false"),
    ("[gateway]\nqueue_size = 5\n", "models", "no model"),
    ("", "models", "no model"),
    ("[models]\n", "models", "no model"),
]


@pytest.mark.parametrize(("text", "field", "why"), REFUSED)
def test_every_refusal_names_its_key_path(text: str, field: str, why: str) -> None:
    err = refusal(text)
    assert err.field == field
    assert str(err).startswith(f"{field}: ")
    assert why in str(err)
    # Raised on its own: no chained error from inside the checks.
    assert err.__cause__ is None
    assert err.__context__ is None


GATEWAY_REFUSED = [
    ("queue_size = 0", "gateway.queue_size"),
    ("queue_size = true", "gateway.queue_size"),
    ("queue_size = 2.5", "gateway.queue_size"),
    ("max_answer_bytes = 0", "gateway.max_answer_bytes"),
    ("max_answer_bytes = 1.5", "gateway.max_answer_bytes"),
    ("queue_timeout = 0", "gateway.queue_timeout"),
    ('drain_timeout = "10m"', "gateway.drain_timeout"),
    ("load_backoff = -1", "gateway.load_backoff"),
    ("refresh_interval = nan", "gateway.refresh_interval"),
    ("stall_timeout = false", "gateway.stall_timeout"),
    ("connect_timeout = inf", "gateway.connect_timeout"),
    ("evict_unknown = 1", "gateway.evict_unknown"),
]


@pytest.mark.parametrize(("line", "field"), GATEWAY_REFUSED)
def test_a_bad_gateway_setting_names_its_key(line: str, field: str) -> None:
    assert refusal(f"[models.a]\n[gateway]\n{line}\n").field == field


def test_the_gateway_policy_has_documented_defaults_and_takes_its_table() -> None:
    policy = parse("[models.a]\n").policy
    assert policy == GatewayPolicy()
    # Generations run long: the drain waits at least ten minutes by default.
    assert policy.drain_timeout >= 600
    assert policy.evict_unknown is False
    text = "[models.a]\n[gateway]\nqueue_size = 3\nqueue_timeout = 1.5\nevict_unknown = true\n"
    assert parse(text).policy == GatewayPolicy(queue_size=3, queue_timeout=1.5, evict_unknown=True)


@pytest.mark.parametrize(
    ("nodes", "field"),
    [
        ({"gpu-01"}, 'models."org/m".nodes'),
        ({"gpu-01", "gpu-02"}, None),
        ({"gpu-02", "cpu"}, 'models."org/m".nodes'),
    ],
)
def test_check_nodes_refuses_a_node_the_fleet_does_not_have(
    nodes: set[str], field: str | None
) -> None:
    catalog = parse('[models."org/m"]\nnodes = ["gpu-02", "gpu-01"]\n[models.b]\n')
    if field is None:
        catalog.check_nodes(nodes)
        return
    with pytest.raises(InvalidInputError) as caught:
        catalog.check_nodes(nodes)
    assert caught.value.field == field
    assert "is not a node of the fleet" in str(caught.value)


# --------------------------------------------------------------------------- the file


def test_read_catalog_reads_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text('[models."llama-8b"]\nmodel_name = "org/Llama/4.0bpw"\n')
    catalog = read_catalog(path)
    assert catalog.models["llama-8b"].folder == "org/Llama/4.0bpw"
    assert read_catalog(str(path)) == catalog


SECRET = "sk-live-do-not-show-0451"


@pytest.mark.parametrize(
    "content",
    [
        None,  # no such file
        f'[models.a]\nmodel_name = "{SECRET}\n'.encode(),  # an unterminated string
        f"[models.{SECRET}\n".encode(),  # a broken table header
        f"[models.a]\n{SECRET} = = 1\n".encode(),
        b"[models.a]\nx = '" + SECRET.encode() + b"\xff'\n",  # not UTF-8
    ],
)
def test_a_missing_or_broken_file_names_the_file_never_its_text(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "catalog.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidInputError) as caught:
        read_catalog(path)
    assert caught.value.field == "catalog"
    assert str(path) in str(caught.value)
    assert SECRET not in reachable_text(caught.value)


def test_a_file_with_a_bad_value_names_the_key_path(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text('[models."m.1"]\nmax_replicas = 0\n')
    with pytest.raises(InvalidInputError) as caught:
        read_catalog(path)
    assert caught.value.field == 'models."m.1".max_replicas'


# --------------------------------------------------------------------------- what it builds


def test_a_table_with_no_keys_loads_its_own_name_with_the_default_policy() -> None:
    entry = parse("[models.m1]\n").models["m1"]
    assert entry == CatalogModel("m1", ModelLoadRequest(model_name="m1"))
    assert entry.kind == "model"
    assert entry.folder == "m1"
    assert (entry.ttl, entry.pinned, entry.nodes, entry.max_replicas) == (None, False, None, 1)


def test_the_issue_example_is_read_as_written() -> None:
    catalog = parse(
        """
        [defaults]
        max_seq_len = 8192

        [models."llama-8b"]
        model_name = "org/Llama-3.1-8B/4.0bpw"
        max_seq_len = 16384
        ttl = 600
        pinned = false
        nodes = ["gpu-01", "gpu-02"]
        max_replicas = 1

        [models."bge-small"]
        kind = "embedding"
        """
    )
    llama = catalog.models["llama-8b"]
    assert llama.load == ModelLoadRequest(model_name="org/Llama-3.1-8B/4.0bpw", max_seq_len=16384)
    assert llama.folder == "org/Llama-3.1-8B/4.0bpw"
    assert (llama.ttl, llama.pinned, llama.nodes) == (600, False, frozenset({"gpu-01", "gpu-02"}))
    bge = catalog.models["bge-small"]
    assert bge.kind == "embedding"
    # An embedding load takes none of [defaults]' load fields.
    assert bge.load == EmbeddingModelLoadRequest(embedding_model_name="bge-small")
    assert bge.folder == "bge-small"


DEFAULTS = """
[defaults]
max_seq_len = 8192
cache_mode = "Q8"
ttl = 300
pinned = true
nodes = ["a", "b"]
max_replicas = 2
"""


@pytest.mark.parametrize(
    ("entry", "load", "policy"),
    [
        # Every default applies to a generating model.
        (
            "",
            {"max_seq_len": 8192, "cache_mode": "Q8"},
            {"ttl": 300, "pinned": True, "nodes": {"a", "b"}, "max_replicas": 2},
        ),
        # The entry's own keys win, load fields and policy alike.
        (
            'max_seq_len = 4096\nttl = 60\npinned = false\nnodes = ["c"]\nmax_replicas = 1\n',
            {"max_seq_len": 4096, "cache_mode": "Q8"},
            {"ttl": 60, "pinned": False, "nodes": {"c"}, "max_replicas": 1},
        ),
        # Policy keys apply to an embedding model; load fields do not.
        (
            'kind = "embedding"\n',
            None,
            {"ttl": 300, "pinned": True, "nodes": {"a", "b"}, "max_replicas": 2},
        ),
        (
            'kind = "embedding"\nembeddings_device = "cpu"\nttl = 5\n',
            {"embeddings_device": "cpu"},
            {"ttl": 5, "pinned": True, "nodes": {"a", "b"}, "max_replicas": 2},
        ),
    ],
)
def test_defaults_apply_and_an_entrys_own_keys_win(
    entry: str, load: dict[str, Any] | None, policy: dict[str, Any]
) -> None:
    got = parse(DEFAULTS + f"[models.m]\n{entry}").models["m"]
    if "embedding" in entry:
        assert got.load == EmbeddingModelLoadRequest(embedding_model_name="m", **(load or {}))
    else:
        assert got.load == ModelLoadRequest(model_name="m", **(load or {}))
    nodes = None if got.nodes is None else set(got.nodes)
    assert {
        "ttl": got.ttl,
        "pinned": got.pinned,
        "nodes": nodes,
        "max_replicas": got.max_replicas,
    } == policy


def test_an_embedding_entry_names_its_folder_with_model_name() -> None:
    entry = parse('[models.e]\nkind = "embedding"\nmodel_name = "org/bge"\n').models["e"]
    assert entry.load == EmbeddingModelLoadRequest(embedding_model_name="org/bge")
    assert (entry.kind, entry.folder) == ("embedding", "org/bge")


def test_an_embedding_and_a_model_may_share_a_folder() -> None:
    catalog = parse(
        '[models.m]\nmodel_name = "x"\n[models.e]\nkind = "embedding"\nmodel_name = "x"\n'
    )
    assert {e.kind for e in catalog.models.values()} == {"model", "embedding"}


def test_a_draft_model_is_a_table() -> None:
    text = '[models.m]\ndraft_model = { draft_model_name = "org/draft", draft_rope_scale = 2.0 }\n'
    load = parse(text).models["m"].load
    assert isinstance(load, ModelLoadRequest)
    assert load.draft_model == DraftModelLoadRequest(
        draft_model_name="org/draft", draft_rope_scale=2.0
    )


def test_a_default_draft_model_is_replaced_whole_by_an_entrys_own() -> None:
    text = (
        '[defaults]\ndraft_model = { draft_model_name = "d1", draft_rope_scale = 2.0 }\n'
        '[models.m]\ndraft_model = { draft_model_name = "d2" }\n[models.n]\n'
    )
    models = parse(text).models
    assert models["m"].load == ModelLoadRequest(
        model_name="m", draft_model=DraftModelLoadRequest(draft_model_name="d2")
    )
    assert models["n"].load == ModelLoadRequest(
        model_name="n",
        draft_model=DraftModelLoadRequest(draft_model_name="d1", draft_rope_scale=2.0),
    )


def test_a_catalog_built_in_code_is_checked_too() -> None:
    load = ModelLoadRequest(model_name="m")
    with pytest.raises(InvalidInputError) as caught:
        Catalog({"x": CatalogModel("m", load)})
    assert caught.value.field == "models.x"
    with pytest.raises(InvalidInputError) as caught:
        Catalog({})
    assert caught.value.field == "models"
    with pytest.raises(InvalidInputError) as caught:
        CatalogModel("", load)
    assert caught.value.field == "models"
    with pytest.raises(InvalidInputError) as caught:
        CatalogModel(5, load)  # type: ignore[arg-type]
    assert caught.value.field == "models"
    with pytest.raises(InvalidInputError) as caught:
        CatalogModel("m", "m")  # type: ignore[arg-type]
    assert caught.value.field == "models.m.load"
    with pytest.raises(InvalidInputError) as caught:
        CatalogModel("m", load, nodes=frozenset())
    assert caught.value.field == "models.m.nodes"


# --------------------------------------------------------------------------- unservable

#: (cache_size, max_seq_len, chunk_size, output_chunking, the key refused or None)
#: With output chunking on, a prompt of two tokens or more needs room for a chunk
#: rounded up past its first token: chunk_size (at least 256, rounded up to 256)
#: plus one 256-token page; the cache is cache_size, else max_seq_len.
UNSERVABLE = [
    (None, 2303, None, None, "max_seq_len"),
    (None, 2304, None, None, None),
    (2048, None, None, None, "cache_size"),
    (2304, None, None, None, None),
    (2048, 65536, None, None, "cache_size"),  # the cache caps the context
    (4096, 1024, None, None, None),  # a short context in a big cache
    (None, 767, 512, None, "max_seq_len"),
    (None, 768, 512, None, None),
    (None, 511, 1, None, "max_seq_len"),  # the chunk is at least 256
    (None, 512, 1, None, None),
    (None, 512, 256, None, None),
    (None, 767, 257, None, "max_seq_len"),  # 257 rounds up to 512
    (None, 768, 257, None, None),
    (None, 4351, 4096, True, "max_seq_len"),
    (None, 4352, 4096, True, None),
    (256, None, None, False, None),  # without output chunking: never refused
    (None, 16, 4096, False, None),
    (None, None, None, None, None),  # the model's own context: unknown before loading
    (None, None, 65536, None, None),
    (None, -1, None, None, None),  # -1 asks for the model's own context too
    (2048, -1, None, None, "cache_size"),
]


@pytest.mark.parametrize(("cache", "context", "chunk", "chunking", "refused"), UNSERVABLE)
def test_unservable_refuses_a_cache_that_no_prompt_fits(
    cache: int | None,
    context: int | None,
    chunk: int | None,
    chunking: bool | None,
    refused: str | None,
) -> None:
    load = ModelLoadRequest(
        model_name="m",
        cache_size=cache,
        max_seq_len=context,
        chunk_size=chunk,
        output_chunking=chunking,
    )
    problem = unservable(load)
    assert (None if problem is None else problem[0]) == refused
    if problem is not None:
        assert "refuse every request" in problem[1]
    fields = {
        "cache_size": cache,
        "max_seq_len": context,
        "chunk_size": chunk,
        "output_chunking": chunking,
    }
    text = "[models.m]\n" + "".join(
        f"{k} = {str(v).lower()}\n" for k, v in fields.items() if v is not None
    )
    if refused is None:
        assert parse(text).models["m"].load == load
    else:
        assert refusal(text).field == f"models.m.{refused}"


def test_an_unservable_cache_names_the_table_that_set_it() -> None:
    # From [defaults]: named there, with the entry it broke.
    err = refusal("[defaults]\nmax_seq_len = 1024\n[models.m]\n")
    assert err.field == "defaults.max_seq_len"
    assert "in models.m" in str(err)
    assert "2304" in str(err)
    # The entry's own chunk_size with the default context: the cache is still the default's.
    assert refusal("[defaults]\nmax_seq_len = 4096\n[models.m]\nchunk_size = 4096\n").field == (
        "defaults.max_seq_len"
    )
    # The entry's own context overrides a bad default.
    assert parse("[defaults]\nmax_seq_len = 1024\n[models.m]\nmax_seq_len = 4096\n")
    # An embedding model takes no default load field, so none refuses it.
    assert parse('[defaults]\nmax_seq_len = 1024\n[models.e]\nkind = "embedding"\n')


def test_an_embedding_load_is_never_unservable() -> None:
    assert unservable(EmbeddingModelLoadRequest(embedding_model_name="bge")) is None
