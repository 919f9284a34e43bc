"""Secrets in the fleet's configuration: node names derived from URLs, nodes files that are
not UTF-8 or not TOML, and keys written where an environment variable's name belongs.

Each secret is a marker (``S3CRET...``) searched for in everything the user or an operator can
see: names, reprs, results, every text an error reaches, the CLI's output, the exporter's
exposition and the log records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tabby_async import AsyncTabbyClient, InvalidInputError
from tabby_async._env import check_env_name
from tabby_async.exporter import AsyncFleetCollector, FleetCollector
from tabby_async.fleet import NodeSpec, TabbyFleet, read_nodes_toml
from tabby_async.fleet._config import parse_nodes
from tabby_async.testing import TabbyEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.helpers import GUARD, CliResult, guarded, reachable_text, run_cli

SECRET = "S3CRET"


def _records_text(records: Iterable[logging.LogRecord]) -> str:
    """Every record's message and every attribute (``extra`` included), as text."""
    parts: list[str] = []
    for record in records:
        parts.append(record.getMessage())
        parts += [f"{key}={value!r}" for key, value in vars(record).items()]
    return "\n".join(parts)


def _one_error_line(result: CliResult) -> None:
    """A usage error: exit 2, one ``error:`` line on stderr, no traceback, no secret."""
    assert result.code == 2
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    assert SECRET not in result.out + result.err


# --- item 3: a node without a name is named by its URL, without its secrets ----------------


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://10.0.0.1:5000", "http://10.0.0.1:5000"),  # nothing to hide: unchanged
        ("http://10.0.0.1:5000/?api_key=S3CRET", "http://10.0.0.1:5000/?***"),
        ("http://10.0.0.1:5000/tabby?token=S3CRET&x=1", "http://10.0.0.1:5000/tabby?***"),
        ("http://10.0.0.1:5000#S3CRET", "http://10.0.0.1:5000?***"),
        ("  http://10.0.0.1:5000/?k=S3CRET  ", "http://10.0.0.1:5000/?***"),
    ],
)
def test_a_derived_name_has_no_query_or_fragment(url: str, name: str) -> None:
    specs, _ = parse_nodes({"nodes": [{"url": url}]})
    assert [spec.name for spec in specs] == [name]
    assert SECRET not in repr(specs)


@pytest.mark.parametrize(
    "url", ["http://admin:S3CRET@10.0.0.1:5000", "http://S3CRET@10.0.0.1:5000/?k=S3CRET"]
)
def test_a_url_with_user_info_is_refused_naming_the_node(url: str, tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    path.write_text(f'[[nodes]]\nurl = "http://10.0.0.9:1"\n[[nodes]]\nurl = "{url}"\n')
    with pytest.raises(InvalidInputError) as info:
        read_nodes_toml(path, env={})
    assert info.value.field == "nodes[1].url"
    assert "credentials" in str(info.value)
    assert SECRET not in reachable_text(info.value)


def test_two_nodes_whose_urls_differ_only_in_the_query_are_refused() -> None:
    tables = [{"url": "http://h:1/?k=S3CRET-1"}, {"url": "http://h:1/?k=S3CRET-2"}]
    with pytest.raises(InvalidInputError) as info:
        parse_nodes({"nodes": tables})
    assert info.value.field == "nodes[1].url"
    assert "'http://h:1/?***'" in str(info.value) and "give each node a name" in str(info.value)
    assert SECRET not in reachable_text(info.value)
    # Named, the same URLs are two nodes (the name is the user's choice).
    named = [{"name": f"n{i}", **table} for i, table in enumerate(tables)]
    assert [spec.name for spec in parse_nodes({"nodes": named})[0]] == ["n0", "n1"]


def test_clients_with_queries_are_named_by_their_url_without_it() -> None:
    fleet = TabbyFleet([AsyncTabbyClient("http://10.0.0.1:5000/?api_key=S3CRET#S3CRET")])
    assert fleet.nodes == ["http://10.0.0.1:5000/"]
    assert SECRET not in repr(fleet)
    with pytest.raises(InvalidInputError) as info:
        TabbyFleet([AsyncTabbyClient(f"http://h:1/?k={SECRET}-{i}") for i in (1, 2)])
    assert "two nodes are named 'http://h:1/'" in str(info.value)
    assert SECRET not in reachable_text(info.value)


@pytest.fixture
async def secret_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tabby_emulator_factory: EmulatorFactory
) -> tuple[Path, list[TabbyEmulator], list[str]]:
    """Two emulators in a nodes file, unnamed, their URLs carrying secrets; the names expected."""
    servers = [await tabby_emulator_factory(models=["alpha"]) for _ in range(2)]
    urls = [f"{servers[0].url}/?api_key={SECRET}-Q", f"{servers[1].url}#{SECRET}-F"]
    lines = []
    for i, (server, url) in enumerate(zip(servers, urls, strict=True)):
        monkeypatch.setenv(f"NODE{i}_ADMIN", server.admin_key)
        lines += ["[[nodes]]", f'url = "{url}"', f'admin_key_env = "NODE{i}_ADMIN"']
    path = tmp_path / "nodes.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, servers, [f"{servers[0].url}/?***", f"{servers[1].url}?***"]


async def test_no_secret_of_a_url_reaches_names_results_or_logs(
    secret_nodes: tuple[Path, list[TabbyEmulator], list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    path, servers, names = secret_nodes
    with caplog.at_level(logging.DEBUG, logger="tabby_async"):
        async with TabbyFleet.from_toml(path) as fleet:
            assert fleet.nodes == names
            shown = [repr(fleet)]
            for result in (await guarded(fleet.status()), await guarded(fleet.health())):
                assert result.ok, result
                shown += [repr(result), str(result)]
                shown += [f"{r.node} {r!r} {r.value!r}" for r in result]
            shown.append(repr(await guarded(fleet.models.list())))
    assert caplog.records  # the fleet logged each node's operation
    shown.append(_records_text(caplog.records))
    assert SECRET not in "\n".join(shown)
    assert names[0] in _records_text(caplog.records)  # the node is named, without its query
    assert all(server.count("GET", "/health") == 2 for server in servers)


async def test_the_status_command_shows_no_secret_of_a_url(
    secret_nodes: tuple[Path, list[TabbyEmulator], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, names = secret_nodes
    table = await run_cli(capsys, "fleet", "status", "--nodes", str(path))
    assert table.code == 0, table.err
    assert all(name in table.out for name in names)
    as_json = await run_cli(capsys, "fleet", "status", "--nodes", str(path), "--json")
    assert as_json.code == 0, as_json.err
    document = json.loads(as_json.out)
    assert [node["node"] for node in document["nodes"]] == names
    assert SECRET not in table.out + table.err + as_json.out + as_json.err


async def test_the_exporter_labels_carry_no_secret_of_a_url(
    secret_nodes: tuple[Path, list[TabbyEmulator], list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    path, _, names = secret_nodes
    with caplog.at_level(logging.DEBUG, logger="tabby_async"):
        async with AsyncFleetCollector.from_toml(path, node_timeout=GUARD) as collector:
            assert collector.nodes == names
            await guarded(collector.refresh())
            registry = CollectorRegistry()
            registry.register(collector)
            exposition = generate_latest(registry).decode()
    up = {
        sample.labels["node"]: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "tabby_up"
    }
    assert up == {name: 1.0 for name in names}
    assert SECRET not in exposition
    assert SECRET not in _records_text(caplog.records)


# --- item 4: a nodes file that is not UTF-8, or not TOML ------------------------------------

NOT_UTF8 = b'[[nodes]]\nurl = "http://h:1"\nadmin_key = "S3CRET-\xff-KEY"\n'
#: Files whose tomllib message would quote them: a key's character, a table or key name.
NOT_TOML = [
    ('[[nodes]]\nurl = "http://h:1"\nadmin_key = "S3CRET\x01"\n', "line 3, column 20"),
    ("[S3CRET]\n[S3CRET]\n", "line 2, column 8"),
    ("x = {S3CRET = 1, S3CRET = 2}\n", "line 1, column 28"),
    ('[[nodes]]\nadmin_key = "S3CRET', "end of document"),
]


def _loaders(path: Path) -> list[object]:
    """Every way the Python API reads a nodes file, as calls to run."""
    return [
        lambda: read_nodes_toml(path, env={}),
        lambda: TabbyFleet.from_toml(path, env={}),
        lambda: FleetCollector.from_toml(path, env={}),
        lambda: AsyncFleetCollector.from_toml(path, env={}),
    ]


def _refusal(load: object) -> InvalidInputError:
    assert callable(load)
    with pytest.raises(InvalidInputError) as info:
        load()
    err = info.value
    assert err.field == "nodes file"
    assert err.__cause__ is None and err.__context__ is None  # nothing chained holds the text
    assert SECRET not in reachable_text(err)
    return err


def test_a_file_that_is_not_utf8_is_invalid_input_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nodes.toml"
    path.write_bytes(NOT_UTF8)
    offset = NOT_UTF8.index(b"\xff")
    for load in _loaders(path):
        err = _refusal(load)
        assert str(err) == (
            f"nodes file: {str(path)!r} is not UTF-8 text (line 3, byte offset {offset})"
        )


@pytest.mark.parametrize(("text", "where"), NOT_TOML)
def test_a_toml_error_says_where_without_quoting_the_file(
    text: str, where: str, tmp_path: Path
) -> None:
    path = tmp_path / "nodes.toml"
    path.write_text(text)
    for load in _loaders(path):
        err = _refusal(load)
        assert str(err) == f"nodes file: {str(path)!r} is not valid TOML (at {where})"


def test_an_unreadable_file_names_it_with_nothing_chained(tmp_path: Path) -> None:
    err = _refusal(lambda: read_nodes_toml(tmp_path / "missing.toml"))
    assert "cannot read" in str(err) and "missing.toml" in str(err)


@pytest.mark.parametrize(
    "command",
    [
        ["fleet", "status"],
        ["fleet", "apply"],
        ["fleet", "apply", "--dry-run"],
        ["fleet", "exporter", "--port", "0"],
    ],
)
@pytest.mark.parametrize("content", [NOT_UTF8, *(text.encode() for text, _ in NOT_TOML)])
async def test_the_fleet_commands_say_a_bad_file_on_one_line(
    command: list[str], content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nodes.toml"
    path.write_bytes(content)
    result = await run_cli(capsys, *command, "--nodes", str(path))
    _one_error_line(result)
    assert str(path) in result.err
    assert "not UTF-8 text" in result.err or "not valid TOML (at " in result.err


# --- item 5: a key written where a variable's name belongs ----------------------------------

BAD_NAMES = [
    "sk-S3CRET-0123456789abcdef",  # a key
    "S3CRET key",  # spaces
    "S3CRET=1",  # an assignment
    "9S3CRET",  # a leading digit
    " S3CRET",  # a leading space
    "S3CRET\n",  # a line break
    "",  # empty
]


@pytest.mark.parametrize("value", BAD_NAMES)
@pytest.mark.parametrize("name", ["api_key_env", "admin_key_env"])
def test_a_bad_variable_name_is_refused_naming_the_field_not_the_value(
    value: str, name: str
) -> None:
    documents = [
        ({"nodes": [{"url": "http://h:1", name: value}]}, f"nodes[0].{name}"),
        ({"nodes": {"gpu": {"url": "http://h:1", name: value}}}, f"nodes.gpu.{name}"),
        ({"defaults": {name: value}, "nodes": [{"url": "http://h:1"}]}, f"defaults.{name}"),
        # The default is checked even when every node names its own variable.
        (
            {"defaults": {name: value}, "nodes": [{"url": "http://h:1", name: "MINE"}]},
            f"defaults.{name}",
        ),
    ]
    for document, field in documents:
        with pytest.raises(InvalidInputError) as info:
            parse_nodes(document, env={"MINE": "k"})
        err = info.value
        assert err.field == field
        assert "must be the name of an environment variable" in str(err)
        if value:  # (the empty string is in every text)
            texts = (str(err), repr(err), *map(str, err.args), reachable_text(err))
            assert all(value not in text for text in texts)


@pytest.mark.parametrize("value", [None, 5, ["A"], "A-B", "Ä"])
def test_check_env_name_takes_only_a_portable_name(value: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_env_name("field", value)
    assert info.value.field == "field"
    for good in ("TABBY_ADMIN_KEY", "_x", "n0_admin", "A"):
        assert check_env_name("field", good) == good


def test_a_key_that_passes_as_a_name_is_not_echoed_when_unset() -> None:
    # TabbyAPI's generated keys are 32 hex digits: one that starts with a letter is a valid name.
    key = "abcdef0123456789" + SECRET.lower() + "0123456789"
    with pytest.raises(InvalidInputError) as info:
        parse_nodes({"nodes": [{"url": "http://h:1", "admin_key_env": key}]}, env={})
    assert info.value.field == "nodes[0].admin_key_env"
    assert "not set" in str(info.value)
    assert key not in reachable_text(info.value)


@pytest.mark.parametrize("value", BAD_NAMES[:4])
async def test_the_cli_refuses_a_bad_variable_name_on_one_line(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nodes.toml"
    path.write_text(f'[[nodes]]\nurl = "http://h:1"\nadmin_key_env = "{value}"\n')
    for command in (["fleet", "status"], ["fleet", "apply"], ["fleet", "exporter"]):
        result = await run_cli(capsys, *command, "--nodes", str(path))
        _one_error_line(result)
        assert "nodes[0].admin_key_env: must be the name of an environment variable" in result.err


def test_node_specs_keep_refusing_the_same_things() -> None:
    # The constructor path: a spec names its node; its URL is checked as the client's.
    with pytest.raises(InvalidInputError) as info:
        NodeSpec("n", f"http://u:{SECRET}@h:1")
    assert info.value.field == "base_url"
    assert SECRET not in reachable_text(info.value)
