"""The gateway's catalog: which models it serves, how each is loaded, and its policy.

A catalog is a TOML file (:func:`read_catalog`) or built in code
(:class:`Catalog`, :class:`CatalogModel`, :class:`GatewayPolicy`). Every
check names the key it refused (``models."llama-8b".max_seq_len``), and an
entry TabbyAPI would load but never serve is refused too (:func:`unservable`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InvalidInputError
from ..fleet import read_toml
from ..types import DraftModelLoadRequest, EmbeddingModelLoadRequest, ModelLoadRequest

__all__ = [
    "Catalog",
    "CatalogModel",
    "GatewayPolicy",
    "ModelKind",
    "parse_catalog",
    "read_catalog",
    "unservable",
]

#: What a catalog entry is: a generating model (one per node) or an embedding
#: model (one per node too, beside the generating one).
ModelKind = Literal["model", "embedding"]

#: The policy keys an entry (or ``[defaults]``) may set beside its load fields.
_POLICY_KEYS = frozenset({"model_name", "kind", "ttl", "pinned", "nodes", "max_replicas"})
#: The server's smallest cache page, and its default prompt chunk (exllamav3).
_PAGE = 256
_DEFAULT_CHUNK = 2048


@dataclass(frozen=True)
class GatewayPolicy:
    """The gateway's fleet-wide policy (the catalog's ``[gateway]`` table); seconds throughout.

    - ``queue_size``: the most requests waiting for one model that is not
      loaded, the one that triggered its load included; past it, 503
      ``queue_full``.
    - ``queue_timeout``: the longest a request waits for its model (503
      ``queue_timeout``). A load of a large model takes minutes.
    - ``drain_timeout``: how long a swap waits for the requests running on
      the old model to end before it unloads anyway (the server then cancels
      them). Generations run long: ten minutes by default.
    - ``load_backoff``: after a failed load, how long that node is skipped
      for that model.
    - ``refresh_interval``: how often each node's loaded models and health
      are read, to follow changes made outside the gateway.
    - ``stall_timeout``: the longest an upstream stream may send no token
      (pings do not count) before the gateway ends it with an error event;
      also the longest a non-streamed answer may go silent once it has begun.
    - ``max_answer_bytes``: the largest non-streamed answer passed on; a
      larger one is a 502 ``upstream_error`` (64 MiB by default).
    - ``evict_unknown``: whether a model the catalog does not know may be
      unloaded to make room.
    - ``connect_timeout``: the bound on reaching a node.
    """

    queue_size: int = 100
    queue_timeout: float = 300.0
    drain_timeout: float = 600.0
    load_backoff: float = 60.0
    refresh_interval: float = 15.0
    stall_timeout: float = 300.0
    max_answer_bytes: int = 64 << 20
    evict_unknown: bool = False
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        _count("gateway.queue_size", self.queue_size)
        _count("gateway.max_answer_bytes", self.max_answer_bytes)
        for name in (
            "queue_timeout",
            "drain_timeout",
            "load_backoff",
            "refresh_interval",
            "stall_timeout",
            "connect_timeout",
        ):
            _seconds(f"gateway.{name}", getattr(self, name))
        if not isinstance(self.evict_unknown, bool):
            raise InvalidInputError("gateway.evict_unknown", "must be true or false")


@dataclass(frozen=True)
class CatalogModel:
    """One model the gateway serves: its name for clients, how to load it, where, how long.

    ``load`` is the request that loads it (a
    :class:`~tabby_async.types.ModelLoadRequest`, or an
    :class:`~tabby_async.types.EmbeddingModelLoadRequest` for ``kind
    "embedding"``). ``ttl``: seconds without a request before it is unloaded
    (None: never). ``pinned``: loaded at start, never evicted. ``nodes``: the
    nodes it may run on (None: any). ``max_replicas``: the most nodes that
    hold it at once.
    """

    name: str
    load: ModelLoadRequest | EmbeddingModelLoadRequest
    ttl: float | None = None
    pinned: bool = False
    nodes: frozenset[str] | None = None
    max_replicas: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError("models", "a model's name must be a non-empty string")
        where = f"models.{_quoted(self.name)}"
        if not isinstance(self.load, (ModelLoadRequest, EmbeddingModelLoadRequest)):
            raise InvalidInputError(f"{where}.load", "must be a load request")
        if self.ttl is not None:
            _seconds(f"{where}.ttl", self.ttl)
        if not isinstance(self.pinned, bool):
            raise InvalidInputError(f"{where}.pinned", "must be true or false")
        _count(f"{where}.max_replicas", self.max_replicas)
        if self.nodes is not None and not self.nodes:
            raise InvalidInputError(f"{where}.nodes", "is empty: leave it out for any node")
        problem = unservable(self.load)
        if problem is not None:
            raise InvalidInputError(f"{where}.{problem[0]}", problem[1])

    @property
    def kind(self) -> ModelKind:
        """``"embedding"`` for an embedding model, else ``"model"``."""
        return "embedding" if isinstance(self.load, EmbeddingModelLoadRequest) else "model"

    @property
    def folder(self) -> str:
        """The model's folder on the nodes: what the gateway loads and names upstream."""
        load = self.load
        if isinstance(load, EmbeddingModelLoadRequest):
            return load.embedding_model_name
        return load.model_name


@dataclass(frozen=True)
class Catalog:
    """The models the gateway serves, by the name clients ask for, and its policy."""

    models: Mapping[str, CatalogModel]
    policy: GatewayPolicy = field(default_factory=GatewayPolicy)

    def __post_init__(self) -> None:
        if not self.models:
            raise InvalidInputError("models", "the catalog has no model")
        folders: dict[tuple[str, str], str] = {}
        for name, entry in self.models.items():
            if entry.name != name:
                raise InvalidInputError(f"models.{_quoted(name)}", f"holds {entry.name!r}")
            # One folder, one name: the gateway tells what a node holds by its folder.
            other = folders.setdefault((entry.kind, entry.folder), name)
            if other != name:
                raise InvalidInputError(
                    f"models.{_quoted(name)}.model_name",
                    f"{entry.folder!r} is the folder of {_quoted(other)} too",
                )

    def check_nodes(self, names: Collection[str]) -> None:
        """Refuse an entry's ``nodes`` that names a node the nodes file does not have."""
        for name, entry in self.models.items():
            for node in sorted(entry.nodes or ()):
                if node not in names:
                    raise InvalidInputError(
                        f"models.{_quoted(name)}.nodes", f"{node!r} is not a node of the fleet"
                    )


def last_segment(folder: str) -> str:
    """What a node's model card shows of a folder: its last path segment."""
    return folder.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def unservable(load: ModelLoadRequest | EmbeddingModelLoadRequest) -> tuple[str, str] | None:
    """``(field, why)`` when the server would load this but refuse every request; else None.

    With output chunking on (the server's default), every request needs cache
    room for a prompt chunk rounded up to the next page beyond its first
    token: ``chunk_size`` (2048 by default, at least 256, rounded up to 256)
    plus a 256-token page. A cache smaller than that (``cache_size``, which
    defaults to ``max_seq_len``) rejects every prompt of two tokens or more,
    so 2,304 tokens is the smallest that serves with the defaults. (A prompt
    of one token, a bare BOS, needs only the chunk.) Without ``cache_size``
    or ``max_seq_len``, or with ``max_seq_len = -1``, the cache is the
    model's own context length, not known before loading: not refused.
    This is a floor: a model with a recurrent cache allocates in larger
    steps, and a ``tabby_config.yml`` in the model's folder overrides the
    load request on the server.
    """
    if isinstance(load, EmbeddingModelLoadRequest) or load.output_chunking is False:
        return None
    if load.cache_size is not None:
        name, cache = "cache_size", load.cache_size
    elif load.max_seq_len is not None and load.max_seq_len != -1:
        name, cache = "max_seq_len", load.max_seq_len
    else:
        return None  # the model's own context length: not known before loading
    chunk = max(_PAGE, load.chunk_size or _DEFAULT_CHUNK)
    chunk = -(-chunk // _PAGE) * _PAGE
    need = chunk + _PAGE
    if cache >= need:
        return None
    return (
        name,
        f"a cache of {cache} tokens would refuse every request: with a chunk_size of "
        f"{chunk} the server needs at least {need} (or set output_chunking = false)",
    )


def read_catalog(path: str | os.PathLike[str]) -> Catalog:
    """The catalog in a TOML file (its format: :func:`parse_catalog`).

    Raises:
        InvalidInputError: the file cannot be read or is not TOML (naming
            the file, never quoting it), or a key or value in it is wrong
            (naming its key path).
    """
    return parse_catalog(read_toml(path, what="catalog"))


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    """The catalog from parsed TOML: ``[defaults]``, ``[models."name"]`` tables and ``[gateway]``.

    ::

        [defaults]                 # fields and policy for every model
        max_seq_len = 8192

        [models."llama-8b"]
        model_name = "org/Llama-3.1-8B/4.0bpw"   # the folder; defaults to the name
        max_seq_len = 16384        # any load-request field
        ttl = 600                  # seconds without a request before unloading
        pinned = false             # loaded at start, never evicted
        nodes = ["gpu-01", "gpu-02"]
        max_replicas = 1

        [models."bge-small"]
        kind = "embedding"         # placed beside the generating model on a node

        [gateway]
        queue_size = 100
        queue_timeout = 300
        drain_timeout = 600

    ``[defaults]`` load fields apply to the generating models only (an
    embedding load takes none of them); its policy keys (``ttl``,
    ``pinned``, ``nodes``, ``max_replicas``) apply to every entry. An entry's
    own keys win.

    Raises:
        InvalidInputError: an unknown key, a bad value, or an entry the
            server would never serve, naming its key path.
    """
    unknown = set(data) - {"defaults", "models", "gateway"}
    if unknown:
        raise InvalidInputError(
            sorted(unknown)[0], "is not a catalog table (defaults, models, gateway)"
        )
    defaults = _table("defaults", data.get("defaults", {}))
    for key in ("model_name", "kind"):
        if key in defaults:
            raise InvalidInputError(f"defaults.{key}", "belongs to a model's own table")
    # Its load fields are checked on their own, so that a bad one is named
    # there even when only embedding models (which take none) use them.
    _load("defaults", "model", "defaults", _load_fields(defaults))
    models = _table("models", data.get("models", {}))
    entries = {
        name: _entry(name, _table(f"models.{_quoted(name)}", t), defaults)
        for name, t in models.items()
    }
    policy = _policy(_table("gateway", data.get("gateway", {})))
    return Catalog(entries, policy)


def _entry(name: str, table: Mapping[str, Any], defaults: Mapping[str, Any]) -> CatalogModel:
    where = f"models.{_quoted(name)}"
    kind = table.get("kind", "model")
    if kind not in ("model", "embedding"):
        raise InvalidInputError(f"{where}.kind", f"must be 'model' or 'embedding', not {kind!r}")
    own_fields = _load_fields(table)
    fields = own_fields if kind == "embedding" else {**_load_fields(defaults), **own_fields}
    policy = {k: v for k, v in {**defaults, **table}.items() if k in _POLICY_KEYS}
    folder = policy.get("model_name", name)
    load = _load(where, kind, folder, fields)
    nodes = policy.get("nodes")
    failure: InvalidInputError | None = None
    if nodes is not None and (
        not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes)
    ):
        failure = InvalidInputError(f"{where}.nodes", "must be a list of node names")
    else:
        try:
            return CatalogModel(
                name=name,
                load=load,
                ttl=policy.get("ttl"),
                pinned=policy.get("pinned", False),
                nodes=None if nodes is None else frozenset(nodes),
                max_replicas=policy.get("max_replicas", 1),
            )
        except InvalidInputError as err:
            failure = err
    raise _origin(failure, where, table)  # outside the handler: no chained error


def _origin(err: InvalidInputError, where: str, table: Mapping[str, Any]) -> InvalidInputError:
    """``err`` naming ``defaults.KEY`` when the entry took that key's value from ``[defaults]``."""
    key = err.field.removeprefix(f"{where}.")
    if key == err.field or key.split(".", 1)[0] in table:
        return err
    why = str(err).removeprefix(f"{err.field}: ")
    return InvalidInputError(f"defaults.{key}", f"{why} (in {where})")


def _load_fields(table: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of an entry (or ``[defaults]``) that go into its load request."""
    return {k: v for k, v in table.items() if k not in _POLICY_KEYS}


def _load(
    where: str, kind: str, folder: object, fields: Mapping[str, Any]
) -> ModelLoadRequest | EmbeddingModelLoadRequest:
    cls: type[ModelLoadRequest] | type[EmbeddingModelLoadRequest]
    if kind == "embedding":
        cls, name_field = EmbeddingModelLoadRequest, "embedding_model_name"
    else:
        cls, name_field = ModelLoadRequest, "model_name"
    what = "an embedding load" if kind == "embedding" else "a model load"
    for key in fields:
        if key not in cls.__struct_fields__ or key == name_field:
            raise InvalidInputError(f"{where}.{key}", f"is not a field of {what}")
    values: dict[str, Any] = {**fields, name_field: folder}
    if "draft_model" in values:
        values["draft_model"] = _draft(where, values["draft_model"])
    problem: InvalidInputError | None = None
    try:
        return cls(**values)
    except InvalidInputError as err:
        field_name = "model_name" if err.field == name_field else err.field
        why = str(err).removeprefix(f"{err.field}: ")
        problem = InvalidInputError(f"{where}.{field_name}", why)
    raise problem


def _draft(where: str, table: object) -> DraftModelLoadRequest:
    """The ``draft_model`` table as a draft load, each refusal naming its key."""
    if not isinstance(table, dict):
        raise InvalidInputError(f"{where}.draft_model", "must be a table with draft_model_name")
    for key in table:
        if key not in DraftModelLoadRequest.__struct_fields__:
            raise InvalidInputError(
                f"{where}.draft_model.{key}", "is not a field of a draft model load"
            )
    if "draft_model_name" not in table:
        raise InvalidInputError(f"{where}.draft_model.draft_model_name", "is required")
    problem: InvalidInputError | None = None
    try:
        return DraftModelLoadRequest(**table)
    except InvalidInputError as err:  # its field is draft_model.KEY
        why = str(err).removeprefix(f"{err.field}: ")
        problem = InvalidInputError(f"{where}.{err.field}", why)
    raise problem


def _policy(table: Mapping[str, Any]) -> GatewayPolicy:
    known = GatewayPolicy.__dataclass_fields__
    for key in table:
        if key not in known:
            raise InvalidInputError(f"gateway.{key}", "is not a gateway setting")
    return GatewayPolicy(**table)


def _table(where: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(where, "must be a table")
    return value


def _count(where: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(where, f"must be a whole number of at least 1, not {value!r}")


def _seconds(where: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidInputError(where, f"must be seconds above 0, not {value!r}")


def _quoted(name: str) -> str:
    """A model name as a TOML key: bare when it can be, else in quotes."""
    bare = bool(name) and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    return name if bare else '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
