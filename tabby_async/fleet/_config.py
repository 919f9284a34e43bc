"""Node specs, the fleet's options, and reading both from a nodes file (TOML).

A nodes file has these tables:

- ``[[nodes]]`` (or ``[nodes.NAME]``): one per server, its ``url`` and
  where its keys come from;
- ``[defaults]``: the key sources of every node that names none;
- ``[fleet]``: options of :class:`~tabby_async.fleet.TabbyFleet`;
- ``[desired]``: the desired state of every node (its model, prompt
  template, sampler preset and embedding model), and ``desired`` inside a
  node's table for that node's own, overriding it part by part.

The format, with an example of each table and the rules for desired state,
is in :func:`read_nodes_toml`, which the reference documentation shows.
"""

from __future__ import annotations

import os
import re
import ssl as _ssl
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import aiohttp

from .._checks import check_folder_name, check_key, normalise_base_url, redact_url
from .._env import check_env_name
from .._resource import build_request
from .._state_plan import DesiredState
from ..errors import InvalidInputError
from ..types import EmbeddingModelLoadRequest, ModelLoadRequest

__all__ = [
    "FLEET_OPTIONS",
    "REMOVED_OPTIONS",
    "FleetOptions",
    "NodeSpec",
    "check_fleet_options",
    "desired_parts",
    "parse_nodes",
    "read_nodes_toml",
    "read_toml",
]


class FleetOptions(TypedDict, total=False):
    """The options of :class:`~tabby_async.fleet.TabbyFleet` a nodes file may also set."""

    max_concurrency: int
    node_timeout: float | None
    load_timeout: float | None
    connection_limit: int | None
    limit_per_host: int
    max_retries: int
    ssl: _ssl.SSLContext | bool
    trace_configs: Iterable[aiohttp.TraceConfig] | None


#: The ``[fleet]`` keys a nodes file may set, with their types.
FLEET_OPTIONS: dict[str, tuple[type, ...]] = {
    "max_concurrency": (int,),
    "node_timeout": (int, float),
    "load_timeout": (int, float),
    "connection_limit": (int,),
    "limit_per_host": (int,),
    "max_retries": (int,),
}
#: Options that no longer exist, and what to do instead.
REMOVED_OPTIONS: dict[str, str] = {
    name: "was removed: the fleet's clients use the client defaults; for other client "
    "settings build the clients yourself and pass them (TabbyFleet({name: client}))"
    for name in ("client_timeout", "stream_timeout")
}
_NODE_KEYS = frozenset(
    {"name", "url", "api_key", "admin_key", "api_key_env", "admin_key_env", "desired"}
)
_DEFAULT_KEYS = frozenset({"api_key", "admin_key", "api_key_env", "admin_key_env"})


@dataclass(frozen=True)
class NodeSpec:
    """One server of a fleet: a unique name, its URL and its keys.

    The keys are secrets: ``repr`` only says whether each is set.
    """

    name: str
    url: str
    api_key: str | None = field(default=None, repr=False)
    admin_key: str | None = field(default=None, repr=False)
    #: The node's declared desired state (None: it declares none), for
    #: :meth:`TabbyFleet.apply <tabby_async.fleet.TabbyFleet.apply>`.
    desired: DesiredState | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError("name", "a node needs a non-empty name")
        normalise_base_url(self.url)  # raises InvalidInputError naming base_url
        check_key("api_key", self.api_key)
        check_key("admin_key", self.admin_key)
        if self.desired is not None and not isinstance(self.desired, DesiredState):
            raise InvalidInputError("desired", "must be a DesiredState or None")

    def __repr__(self) -> str:
        desired = ""
        if self.desired is not None:
            desired = f", desired=<{', '.join(self.desired.parts) or 'nothing'}>"
        return (
            f"NodeSpec(name={self.name!r}, url={redact_url(self.url)!r}, "
            f"api_key={'<set>' if self.api_key else None}, "
            f"admin_key={'<set>' if self.admin_key else None}{desired})"
        )


def _key(
    where: str,
    table: Mapping[str, Any],
    kind: str,
    defaults: Mapping[str, Any],
    env: Mapping[str, str],
) -> str | None:
    """A node's ``api``/``admin`` key: inline, from the named env var, or the default's."""
    for source, label in ((table, where), (defaults, "defaults")):
        inline = source.get(f"{kind}_key")
        env_name = source.get(f"{kind}_key_env")
        if inline is not None and env_name is not None:
            raise InvalidInputError(
                f"{label}.{kind}_key", f"give {kind}_key or {kind}_key_env, not both"
            )
        if inline is not None:
            if not isinstance(inline, str) or not inline:
                raise InvalidInputError(f"{label}.{kind}_key", "must be a non-empty string")
            return inline
        if env_name is not None:
            check_env_name(f"{label}.{kind}_key_env", env_name)
            value = env.get(env_name)
            if not value:
                # Not echoed: a key pasted here may pass as a name (TabbyAPI's
                # generated keys are hex, and may start with a letter).
                raise InvalidInputError(
                    f"{label}.{kind}_key_env",
                    "the environment variable it names is not set (or is empty)",
                )
            return value
    return None


#: The parts of a desired state: the request type of the two that load, with
#: the field a bare name fills; None for the two that are names.
_PARTS: dict[str, tuple[type[ModelLoadRequest | EmbeddingModelLoadRequest], str] | None] = {
    "model": (ModelLoadRequest, "model_name"),
    "template": None,
    "sampling_preset": None,
    "embedding": (EmbeddingModelLoadRequest, "embedding_model_name"),
}


def _part(key: str, name: str, value: object) -> Any:
    """One part of a ``desired`` table, checked, as DesiredState takes it (None: ``false``)."""
    if value is False:
        return None
    kind = _PARTS[name]
    if kind is None:
        check_folder_name(key, value)
        return value
    cls, name_field = kind
    if isinstance(value, str):
        value = {name_field: value}
    if not isinstance(value, dict):
        raise InvalidInputError(key, "must be a table, a name, or false")
    if name_field not in value:
        raise InvalidInputError(f"{key}.{name_field}", "is required")
    try:
        return build_request(cls, None, value)
    except InvalidInputError as err:
        problem = str(err).removeprefix(f"{err.field}: ")
        raise InvalidInputError(f"{key}.{err.field}", problem) from None


def desired_parts(where: str, table: object) -> dict[str, Any]:
    """The parts a ``desired`` table at key path ``where`` gives, checked (None: ``false``)."""
    if not isinstance(table, dict):
        raise InvalidInputError(where, "must be a table")
    for name in table:
        if name not in _PARTS:
            raise InvalidInputError(
                f"{where}.{name}", f"is not a part of a desired state ({', '.join(_PARTS)})"
            )
    return {name: _part(f"{where}.{name}", name, value) for name, value in table.items()}


def _desired(
    where: str, table: Mapping[str, Any], defaults: Mapping[str, Any]
) -> DesiredState | None:
    """A node's desired state: the file's ``[desired]`` with the node's own parts over it."""
    own = desired_parts(f"{where}.desired", table["desired"]) if "desired" in table else {}
    parts = {name: value for name, value in {**defaults, **own}.items() if value is not None}
    return DesiredState(**parts) if parts else None


def check_fleet_options(
    options: Mapping[str, object], allowed: Collection[str], prefix: str = ""
) -> None:
    """Refuse an unknown or removed option, naming it (``prefix`` says where it was)."""
    for name in options:
        if name in REMOVED_OPTIONS:
            raise InvalidInputError(f"{prefix}{name}", REMOVED_OPTIONS[name])
        if name not in allowed:
            raise InvalidInputError(f"{prefix}{name}", "is not a fleet option")


def parse_nodes(
    data: Mapping[str, Any], *, env: Mapping[str, str] | None = None
) -> tuple[list[NodeSpec], dict[str, Any]]:
    """Node specs and ``[fleet]`` options from a parsed nodes document."""
    env = os.environ if env is None else env
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InvalidInputError("defaults", "must be a table")
    unknown = set(defaults) - _DEFAULT_KEYS
    if unknown:
        raise InvalidInputError("defaults", f"unknown keys: {', '.join(sorted(unknown))}")
    for name in ("api_key_env", "admin_key_env"):  # checked even if every node has its own
        if name in defaults:
            check_env_name(f"defaults.{name}", defaults[name])
    options = data.get("fleet", {})
    if not isinstance(options, dict):
        raise InvalidInputError("fleet", "must be a table")
    check_fleet_options(options, FLEET_OPTIONS, "fleet.")
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, FLEET_OPTIONS[name]):
            raise InvalidInputError(f"fleet.{name}", f"must be a number, not {value!r}")
    default_state = desired_parts("desired", data.get("desired", {}))
    raw = data.get("nodes")
    tables: list[tuple[str, dict[str, Any]]] = []
    if isinstance(raw, list):
        for i, table in enumerate(raw):
            if not isinstance(table, dict):
                raise InvalidInputError(f"nodes[{i}]", "must be a table")
            tables.append((f"nodes[{i}]", table))
    elif isinstance(raw, dict):
        for name, table in raw.items():
            if not isinstance(table, dict):
                raise InvalidInputError(f"nodes.{name}", "must be a table")
            if "name" in table and table["name"] != name:
                raise InvalidInputError(f"nodes.{name}.name", "differs from the table's name")
            tables.append((f"nodes.{name}", {"name": name, **table}))
    else:
        raise InvalidInputError("nodes", "the file needs [[nodes]] tables with a url each")
    specs: list[NodeSpec] = []
    seen: set[str] = set()
    for where, table in tables:
        unknown = set(table) - _NODE_KEYS
        if unknown:
            raise InvalidInputError(where, f"unknown keys: {', '.join(sorted(unknown))}")
        url = table.get("url")
        if not isinstance(url, str):
            raise InvalidInputError(f"{where}.url", "is required (http://host:port)")
        name = table.get("name", _url_name(url))
        if not isinstance(name, str):
            raise InvalidInputError(f"{where}.name", "must be a string")
        if name in seen:
            if "name" in table:
                raise InvalidInputError(f"{where}.name", f"{name!r} is used by two nodes")
            raise InvalidInputError(
                f"{where}.url",
                f"its name {name!r} (a node without a name is named by its URL without "
                "user info, query or fragment) is used by two nodes: give each node a name",
            )
        seen.add(name)
        specs.append(_spec(where, table, name, url, defaults, default_state, env))
    return specs, dict(options)


def _url_name(url: str) -> str:
    """The name of a node that gives none: its URL, without what may hold a secret.

    User info, a query and a fragment may carry a password or a token
    (``?api_key=...``), and a name is shown everywhere (metric labels,
    tables, logs), so they are hidden as in every message.
    """
    return redact_url(url.strip())


def _spec(
    where: str,
    table: Mapping[str, Any],
    name: str,
    url: str,
    defaults: Mapping[str, Any],
    default_state: Mapping[str, Any],
    env: Mapping[str, str],
) -> NodeSpec:
    """One node's spec from its table; NodeSpec's own errors name the node's key path."""
    api_key = _key(where, table, "api", defaults, env)
    admin_key = _key(where, table, "admin", defaults, env)
    desired = _desired(where, table, default_state)
    try:
        return NodeSpec(name=name, url=url, api_key=api_key, admin_key=admin_key, desired=desired)
    except InvalidInputError as err:  # its message names no secret (see _checks)
        problem = str(err).removeprefix(f"{err.field}: ")
        field = {"base_url": "url"}.get(err.field, err.field)
        failure = InvalidInputError(f"{where}.{field}", problem)
    raise failure  # outside the handler: no chained error


def read_nodes_toml(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> tuple[list[NodeSpec], dict[str, Any]]:
    """Read a nodes file: its node specs and its ``[fleet]`` options.

    A nodes file lists the servers of a fleet and where their keys come
    from. Keys should not sit in the file itself: name environment
    variables instead (``admin_key_env = "NODE1_ADMIN"``; ``env`` replaces
    ``os.environ``); a key written inline works too. A ``[defaults]`` table
    gives every node the same key source, and a ``[fleet]`` table sets
    :class:`~tabby_async.fleet.TabbyFleet` options (``max_concurrency``,
    ``node_timeout``, ``load_timeout``, ``connection_limit``,
    ``limit_per_host``, ``max_retries``)::

        [defaults]
        api_key_env = "TABBY_API_KEY"
        admin_key_env = "TABBY_ADMIN_KEY"

        [fleet]
        max_concurrency = 32
        node_timeout = 30.0

        [[nodes]]
        name = "gpu-01"
        url = "http://10.0.0.1:5000"

        [[nodes]]
        name = "gpu-02"
        url = "http://10.0.0.2:5000"
        admin_key_env = "GPU02_ADMIN"     # overrides the default

    ``[nodes.gpu-01]`` tables (the name as the key) are accepted too. A
    node without a ``name`` is named by its URL without user info, query or
    fragment (``http://10.0.0.1:5000/?***``), since its name is shown in
    tables, logs and metric labels. A ``*_key_env`` value must be a
    variable's name (letters, digits and ``_``, not starting with a digit):
    anything else is refused without being shown, as it is most likely the
    key itself.

    A ``[desired]`` table declares the desired state of every node, for
    :meth:`TabbyFleet.apply <tabby_async.fleet.TabbyFleet.apply>` and
    ``tabby-async fleet apply``. It has four parts, each optional:
    ``model`` (a table of load request fields, or just the model's name),
    ``template`` (a prompt template name), ``sampling_preset`` (a sampler
    override preset name) and ``embedding`` (a table of embedding load
    fields, or just the name). A ``desired`` table in a node's own table
    overrides it part by part: a part it gives replaces the default's part
    whole (a model table is not merged field by field), the parts it leaves
    out keep the default's, and ``false`` leaves a part unmanaged on that
    node. A node with no part left declares no desired state. Each node's
    result is its spec's ``desired``::

        [desired]
        template = "chatml"
        sampling_preset = "precise"
        embedding = "bge-small-en"

        [desired.model]
        model_name = "Llama-3.1-70B-exl2"
        max_seq_len = 16384

        [nodes.gpu-03]
        url = "http://10.0.0.3:5000"
        desired.model = { model_name = "Llama-3.1-8B-exl2", max_seq_len = 8192 }
        desired.sampling_preset = false   # not managed on gpu-03

    A mistake (an unknown key, a variable that is not set, two nodes of one
    name, a bad desired part or field) raises
    :class:`~tabby_async.InvalidInputError` naming its key path (e.g.
    ``nodes.gpu-03.desired.model.max_seq_len``). A file that cannot be read,
    is not UTF-8 or is not TOML raises it naming the file and where (the
    byte offset, or the line and column), never quoting the file.
    """
    return parse_nodes(read_toml(path), env=env)


#: Where tomllib says a syntax error is: the end of its message.
_TOML_WHERE = re.compile(r"\(at (line \d+, column \d+|end of document)\)\Z")


def read_toml(path: str | os.PathLike[str], *, what: str = "nodes file") -> dict[str, Any]:
    """A TOML file, parsed; a failure is InvalidInputError naming the file, never its text.

    ``what`` is the error's field (``"nodes file"``, ``"catalog"``). The file
    may hold keys, so no message quotes it: a byte that is not
    UTF-8 is given by its offset, a TOML syntax error by its line and column
    (tomllib's own message may quote a character or a key of the file, and
    ``UnicodeDecodeError.object`` is the whole file). Each error is raised
    outside the handler, so none has the original as its context either.
    """
    shown = repr(str(path))
    problem = ""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        problem = f"cannot read {shown}: {exc.strerror}"
    if problem:
        raise InvalidInputError(what, problem)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problem = f"{shown} is not UTF-8 text (line {line}, byte offset {exc.start})"
    if problem:
        raise InvalidInputError(what, problem)
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        where = _TOML_WHERE.search(str(exc))
        problem = f"{shown} is not valid TOML" + (f" (at {where.group(1)})" if where else "")
    raise InvalidInputError(what, problem)
