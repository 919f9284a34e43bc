"""The admin command groups of ``tabby-async``: lora, templates, sampling, tokens.

The pure parts (argument types, input files, formatters) are tested as
tables; the commands run ``main([...])`` against the emulator, as
``tests/test_cli.py`` does, for their output, ``--json`` and exit codes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tabby_async._compare import reported_template as reported_name
from tabby_async.cli import common
from tabby_async.cli._admin_format import (
    lora_active_text,
    lora_list_text,
    lora_load_text,
    sampling_text,
    template_list_text,
    tokens_text,
)
from tabby_async.cli._commands import read_document
from tabby_async.cli._lora import lora_item
from tabby_async.cli._sampling import read_overrides
from tabby_async.cli._tokens import read_messages, template_var
from tabby_async.testing import TabbyEmulator
from tabby_async.types import (
    ChatMessage,
    ChatMessagePart,
    LoraCard,
    LoraList,
    LoraLoadItem,
    LoraLoadResponse,
    SamplerOverrides,
    TemplateList,
    TokenDecodeResponse,
    TokenEncodeResponse,
)
from tests.helpers import CliResult, point_env_at, run_cli

TEMPLATES = {"chatml": "{{ chatml }}", "alpaca": "{{ alpaca }}"}
PRESETS = {"precise": {"temperature": {"override": 0.2, "force": True}}}
LORAS = ["lora-a", "lora-b"]

# --- argument types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "item"),
    [
        ("style", LoraLoadItem(name="style")),
        ("style:0.5", LoraLoadItem(name="style", scaling=0.5)),
        ("style:1", LoraLoadItem(name="style", scaling=1.0)),
        ("org/style:-0.25", LoraLoadItem(name="org/style", scaling=-0.25)),
        ("my:lora:2", LoraLoadItem(name="my:lora", scaling=2.0)),
    ],
)
def test_lora_item_reads_name_and_scaling(text: str, item: LoraLoadItem) -> None:
    assert lora_item(text) == item


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("style:lots", "number after the colon"),
        ("my:lora", "number after the colon"),
        ("style:nan", "finite"),
        ("style:inf", "finite"),
        (":0.5", "must not be empty"),
        ("../escape", "'..'"),
    ],
)
def test_lora_item_refuses(text: str, problem: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=problem):
        lora_item(text)


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("name=Ada", ("name", "Ada")),
        ("think=true", ("think", True)),
        ("n=3", ("n", 3)),
        ("tools=[\"a\"]", ("tools", ["a"])),
        ("empty=", ("empty", "")),
        ("eq=a=b", ("eq", "a=b")),
        (" spaced =x", ("spaced", "x")),
    ],
)
def test_template_var(text: str, pair: tuple[str, Any]) -> None:
    assert template_var(text) == pair


@pytest.mark.parametrize("text", ["novalue", "=x", " =x"])
def test_template_var_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        template_var(text)


# --- input files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "document"),
    [
        ("o.json", '{"temperature": {"override": 0.7}}', {"temperature": {"override": 0.7}}),
        ("o.JSON", "[1, 2]", [1, 2]),
        ("o.yml", "temperature:\n  override: 0.7\n  force: true\n", {
            "temperature": {"override": 0.7, "force": True}
        }),
        ("o.yaml", "- role: user\n  content: hi\n", [{"role": "user", "content": "hi"}]),
    ],
)
def test_read_document(tmp_path: Path, name: str, content: str, document: object) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert read_document("--x", str(path)) == document


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("o.txt", "{}", "expected a .json, .yml or .yaml file"),
        ("o.json", "{nope", "not valid JSON"),
        ("o.yml", "a: [1,\n", "not valid YAML"),
        ("missing.json", None, "cannot read it"),
        ("o.json", b"\xff\xfe{", "cannot read it"),
    ],
)
def test_read_document_refuses_with_a_usage_error(
    tmp_path: Path, name: str, content: str | bytes | None, problem: str
) -> None:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(common.CliError) as caught:
        read_document("--overrides", str(path))
    assert caught.value.exit_code == common.EXIT_USAGE
    assert caught.value.message.startswith(f"--overrides {path}: ")
    assert problem in caught.value.message
    assert "\n" not in caught.value.message


def test_yaml_without_pyyaml_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "o.yml"
    path.write_text("temperature: {override: 0.7}\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "yaml", None)  # an import of it now fails
    with pytest.raises(common.CliError) as caught:
        read_document("--overrides", str(path))
    assert caught.value.exit_code == common.EXIT_USAGE
    assert "needs PyYAML" in caught.value.message
    assert "tabby-async[cli]" in caught.value.message
    # JSON needs nothing more.
    path = tmp_path / "o.json"
    path.write_text('{"temperature": {"override": 0.7}}', encoding="utf-8")
    assert read_overrides(str(path)) == {"temperature": {"override": 0.7}}


@pytest.mark.parametrize("content", ["[]", '"temperature"', "3"])
def test_overrides_must_be_a_mapping(tmp_path: Path, content: str) -> None:
    path = tmp_path / "o.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(common.CliError, match="expected a mapping") as caught:
        read_overrides(str(path))
    assert caught.value.exit_code == common.EXIT_USAGE


def test_read_messages(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    messages = [
        {"role": "system", "content": "Be brief."},
        {"content": [{"type": "text", "text": "hi"}]},
    ]
    path.write_text(json.dumps(messages), encoding="utf-8")
    assert read_messages(str(path)) == [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content=[ChatMessagePart(type="text", text="hi")]),
    ]


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"role": "user"}, "expected a list of messages"),
        ([{"role": ""}], "role"),
        ([{"content": 5}], "content"),
        ([{"content": [{"type": "text"}]}], "needs its text"),
        ([{"content": [{"type": "video"}]}], "type"),
    ],
)
def test_read_messages_refuses(tmp_path: Path, document: object, problem: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(common.CliError) as caught:
        read_messages(str(path))
    assert caught.value.exit_code == common.EXIT_USAGE
    assert problem in caught.value.message


# --- formatters ---------------------------------------------------------------------------------


def loras(*names: str, scaling: float | None = None) -> LoraList:
    return LoraList(data=[LoraCard(id=name, scaling=scaling) for name in names])


@pytest.mark.parametrize(
    ("listing", "active", "limited", "text"),
    [
        (loras(), set(), False, "no LoRA adapters to show"),
        (
            loras(),
            set(),
            True,
            "no LoRA adapters to show\n"
            "(an api key sees only the active ones; list every adapter with the admin key)",
        ),
        (loras("zeta", "Alpha", "beta"), set(), False, "ID     ACTIVE\nAlpha\nbeta\nzeta"),
        (loras("b", "a"), {"b"}, False, "ID  ACTIVE\na\nb   *"),
    ],
)
def test_lora_list_text(listing: LoraList, active: set[str], limited: bool, text: str) -> None:
    assert lora_list_text(listing, active, limited=limited) == text


@pytest.mark.parametrize(
    ("listing", "text"),
    [
        (loras(), "no LoRA adapter is active"),
        (loras("b", "a", scaling=0.5), "ID  SCALING\na   0.5\nb   0.5"),
        (loras("a"), "ID  SCALING\na   -"),
    ],
)
def test_lora_active_text(listing: LoraList, text: str) -> None:
    assert lora_active_text(listing) == text


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (LoraLoadResponse(success=["a", "b"]), "applied LoRA adapter(s): a, b"),
        (LoraLoadResponse(), "applied LoRA adapter(s): none"),
    ],
)
def test_lora_load_text(answer: LoraLoadResponse, text: str) -> None:
    assert lora_load_text(answer) == text


@pytest.mark.parametrize(
    ("names", "current", "limited", "text"),
    [
        ([], None, False, "no prompt templates to show"),
        (
            [],
            None,
            True,
            "no prompt templates to show\n"
            "(an api key sees only the one in use; list every template with the admin key)",
        ),
        (["mistral", "chatml", "Alpaca"], None, False, "NAME     IN USE\nAlpaca\nchatml\nmistral"),
        (["mistral", "chatml"], "chatml", False, "NAME     IN USE\nchatml   *\nmistral"),
        # The card may say it with or without .jinja.
        (["chatml"], "chatml.jinja", False, "NAME    IN USE\nchatml  *"),
    ],
)
def test_template_list_text(
    names: list[str], current: str | None, limited: bool, text: str
) -> None:
    assert template_list_text(TemplateList(data=names), current, limited=limited) == text


@pytest.mark.parametrize(
    ("state", "limited", "text"),
    [
        (
            SamplerOverrides(),
            False,
            "overrides:           none in force\nlast preset loaded:  -\npresets:             -",
        ),
        (
            SamplerOverrides(
                selected_preset="creative",
                overrides={"top_k": {"force": True}, "temperature": {"override": 0.7}},
                presets=["safe", "creative"],
            ),
            False,
            'overrides:           temperature={"override":0.7}; top_k={"force":true}\n'
            "last preset loaded:  creative (not necessarily in force)\n"
            "presets:             creative,safe",
        ),
        (
            # The stale preset after an unload: labelled, the overrides say what is in force.
            SamplerOverrides(selected_preset="creative", presets=None),
            True,
            "overrides:           none in force\n"
            "last preset loaded:  creative (not necessarily in force)\n"
            "presets:             -\n"
            "(an api key sees no presets; list every preset with the admin key)",
        ),
    ],
)
def test_sampling_text(state: SamplerOverrides, limited: bool, text: str) -> None:
    assert sampling_text(state, limited=limited) == text


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (TokenEncodeResponse(tokens=[1, 22, 333], length=3), "length:  3\ntokens:  1 22 333"),
        (TokenEncodeResponse(tokens=[], length=0), "length:  0\ntokens:  -"),
    ],
)
def test_tokens_text(answer: TokenEncodeResponse, text: str) -> None:
    assert tokens_text(answer) == text


# --- the commands against the emulator ------------------------------------------------------


pytestmark = pytest.mark.emulator(models=["m"], templates=TEMPLATES, presets=PRESETS, loras=LORAS)


@pytest.fixture
def env(server: TabbyEmulator, monkeypatch: pytest.MonkeyPatch) -> TabbyEmulator:
    """The server's URL and both keys in TABBY_URL/TABBY_API_KEY/TABBY_ADMIN_KEY."""
    return point_env_at(server, monkeypatch)


@pytest.fixture
def api_only(server: TabbyEmulator, monkeypatch: pytest.MonkeyPatch) -> TabbyEmulator:
    """The server's URL and its api key only."""
    return point_env_at(server, monkeypatch, admin_key=False)


def posts(server: TabbyEmulator) -> list[str]:
    return [r.path for r in server.requests if r.method == "POST"]


def one_error_line(result: CliResult) -> str:
    """The error line, checked to be the only thing on stderr."""
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    return result.err[len("error: ") : -1]


async def test_lora_list_and_active(env: TabbyEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_cli(capsys, "lora", "list")
    assert (result.code, result.out) == (0, "ID      ACTIVE\nlora-a\nlora-b\n")
    result = await run_cli(capsys, "lora", "list", "--json")
    assert sorted(msgspec.json.decode(result.out, type=LoraList).ids) == LORAS
    result = await run_cli(capsys, "lora", "active")
    assert result.code == common.EXIT_NOT_LOADED
    assert one_error_line(result).startswith("no model is loaded")
    env.preload("m")
    result = await run_cli(capsys, "lora", "active")
    assert (result.code, result.out) == (0, "no LoRA adapter is active\n")


async def test_lora_list_with_an_api_key_says_what_it_cannot_see(
    api_only: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run_cli(capsys, "lora", "list")
    assert result.code == 0
    assert result.out.splitlines() == [
        "no LoRA adapters to show",
        "(an api key sees only the active ones; list every adapter with the admin key)",
    ]


async def test_lora_load_that_the_server_did_not_apply_exits_1_with_one_line(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    env.preload("m")
    result = await run_cli(capsys, "lora", "load", "lora-a:0.5", "lora-b", "--skip-queue")
    assert result.code == common.EXIT_ERROR
    assert result.out == ""
    assert one_error_line(result) == (
        "LoRA load failed: the server did not apply 2 of 2 LoRA adapter(s): lora-a, lora-b"
    )
    (sent,) = [r.body for r in env.requests if r.path == "/v1/lora/load"]
    assert sent == {
        "loras": [{"name": "lora-a", "scaling": 0.5}, {"name": "lora-b"}],
        "skip_queue": True,
    }
    # --json: one document on stdout with the server's answer and the error, for
    # scripts; the error line all the same.
    result = await run_cli(capsys, "lora", "load", "lora-a", "--json")
    assert result.code == common.EXIT_ERROR
    document = json.loads(result.out)
    assert document.pop("error")["code"] == "lora_load_failed"
    assert document == {"success": [], "failure": ["lora-a"]}
    assert one_error_line(result).startswith("LoRA load failed")


async def test_lora_load_applied_in_full_exits_0(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    env.preload("m")
    answer = b'{"success": ["lora-a"], "failure": []}'
    env.faults.fail_next(status=200, body=answer, path="/v1/lora/load")
    result = await run_cli(capsys, "lora", "load", "lora-a")
    assert (result.code, result.out, result.err) == (0, "applied LoRA adapter(s): lora-a\n", "")


async def test_lora_load_and_unload_need_the_admin_key_and_a_model(
    server: TabbyEmulator, api_only: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    server.preload("m")
    result = await run_cli(capsys, "lora", "load", "lora-a")
    assert result.code == common.EXIT_AUTH
    assert one_error_line(result) == (
        "lora load needs the admin key (set --admin-key or TABBY_ADMIN_KEY)"
    )
    result = await run_cli(capsys, "lora", "unload", "--admin-key", server.admin_key)
    assert (result.code, result.out) == (0, "unloaded every LoRA adapter\n")
    unloaded = await run_cli(capsys, "models", "unload", "--admin-key", server.admin_key)
    assert unloaded.code == 0
    result = await run_cli(capsys, "lora", "unload", "--admin-key", server.admin_key)
    assert result.code == common.EXIT_NOT_LOADED


async def test_lora_load_bad_items_are_usage_errors(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["lora-a:much"], ["../up"], []):
        result = await run_cli(capsys, "lora", "load", *argv)
        assert result.code == common.EXIT_USAGE, argv
    assert env.requests == []


async def test_a_refused_admin_key_on_a_listing_names_the_admin_key(
    server: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "not-the-admin-key-0123"
    for group in ("lora", "templates", "sampling"):
        result = await run_cli(capsys, group, "list", "--url", server.url, "--admin-key", bad)
        assert result.code == common.EXIT_AUTH
        assert one_error_line(result).startswith("the server refused the admin key")
        assert bad not in result.out + result.err


async def test_templates(env: TabbyEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_cli(capsys, "templates", "list")
    assert (result.code, result.out) == (0, "NAME    IN USE\nalpaca\nchatml\n")
    result = await run_cli(capsys, "templates", "switch", "chatml")
    assert result.code == common.EXIT_NOT_LOADED
    env.preload("m")
    result = await run_cli(capsys, "templates", "switch", "chatml.jinja")
    assert result.code == 0, result.err
    assert result.out == "the loaded model now uses the prompt template 'chatml'\n"
    result = await run_cli(capsys, "templates", "list")
    assert result.out == "NAME    IN USE\nalpaca\nchatml  *\n"
    result = await run_cli(capsys, "templates", "list", "--json")
    assert sorted(msgspec.json.decode(result.out, type=TemplateList).names) == ["alpaca", "chatml"]
    result = await run_cli(capsys, "templates", "unload")
    assert (result.code, result.out) == (0, "the loaded model no longer uses a prompt template\n")
    result = await run_cli(capsys, "templates", "list")
    assert "*" not in result.out


async def test_template_switch_prints_the_name_the_model_card_reports(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # "alpaca.txt" opens alpaca.jinja, and the card reports it as given.
    env.preload("m")
    result = await run_cli(capsys, "templates", "switch", "alpaca.txt")
    assert result.code == 0, result.err
    assert result.out == "the loaded model now uses the prompt template 'alpaca.txt'\n"
    card = await run_cli(capsys, "models", "get", "--json")
    assert json.loads(card.out)["parameters"]["prompt_template"] == "alpaca.txt"
    result = await run_cli(capsys, "templates", "switch", "alpaca.txt", "--json")
    assert (result.code, result.out) == (0, "null\n")


@pytest.mark.parametrize(
    ("name", "reported"),
    [("chatml", "chatml"), ("chatml.jinja", "chatml"), ("alpaca.txt", "alpaca.txt")],
)
def test_reported_template_name(name: str, reported: str) -> None:
    assert reported_name(name) == reported


async def test_an_unknown_template_exits_4(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    env.preload("m")
    result = await run_cli(capsys, "templates", "switch", "nope")
    assert result.code == common.EXIT_NOT_FOUND
    assert one_error_line(result) == (
        "prompt template 'nope' not found on the server; see `tabby-async templates list`"
    )
    result = await run_cli(capsys, "templates", "switch", "")
    assert result.code == common.EXIT_USAGE


async def test_sampling(env: TabbyEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_cli(capsys, "sampling", "switch", "precise")
    assert (result.code, result.out) == (0, "applied the sampler preset 'precise'\n")
    result = await run_cli(capsys, "sampling", "list")
    assert result.out.splitlines() == [
        'overrides:           temperature={"force":true,"override":0.2}',
        "last preset loaded:  precise (not necessarily in force)",
        "presets:             precise",
    ]
    result = await run_cli(capsys, "sampling", "unload")
    assert (result.code, result.out) == (0, "cleared the sampler overrides\n")
    result = await run_cli(capsys, "sampling", "list", "--json")
    state = msgspec.json.decode(result.out, type=SamplerOverrides)
    assert (state.selected_preset, state.overrides) == ("precise", {})


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("o.json", '{"top_k": {"override": 40, "force": null}}'),
        ("o.yml", "top_k:\n  override: 40\n  force: null\n"),
    ],
)
async def test_sampling_switch_overrides_from_a_file(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    result = await run_cli(capsys, "sampling", "switch", "--overrides", str(path))
    assert result.code == 0, result.err
    assert result.out == f"applied 1 sampler override(s) from {path}\n"
    result = await run_cli(capsys, "sampling", "list", "--json")
    # The server drops the null.
    assert msgspec.json.decode(result.out, type=SamplerOverrides).overrides == {
        "top_k": {"override": 40}
    }


async def test_sampling_switch_errors(
    server: TabbyEmulator, env: TabbyEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "o.json"
    path.write_text('{"top_k": {"override": 40}}', encoding="utf-8")
    for argv, problem in (
        ([], "one of the arguments PRESET --overrides is required"),
        (["precise", "--overrides", str(path)], "argument --overrides: not allowed with"),
    ):
        result = await run_cli(capsys, "sampling", "switch", *argv)
        assert result.code == common.EXIT_USAGE, argv
        assert problem in result.err  # argparse's usage error
    result = await run_cli(capsys, "sampling", "switch", "--overrides", str(tmp_path / "x"))
    assert result.code == common.EXIT_USAGE
    assert "expected a .json, .yml or .yaml file" in one_error_line(result)
    assert server.requests == []
    result = await run_cli(capsys, "sampling", "switch", "nope")
    assert result.code == common.EXIT_NOT_FOUND
    assert one_error_line(result) == (
        "sampler preset 'nope' not found on the server; see `tabby-async sampling list`"
    )
    result = await run_cli(capsys, "sampling", "switch", "precise", "--admin-key", "")
    assert result.code == common.EXIT_AUTH
    assert one_error_line(result).startswith("sampling switch needs the admin key")


async def test_tokens(env: TabbyEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_cli(capsys, "tokens", "encode", "Hello")
    assert result.code == common.EXIT_NOT_LOADED
    env.preload("m")
    result = await run_cli(capsys, "tokens", "encode", "Hello", "--no-add-bos-token", "--json")
    assert result.code == 0, result.err
    encoded = msgspec.json.decode(result.out, type=TokenEncodeResponse)
    assert encoded.length == len(encoded.tokens) > 0
    result = await run_cli(capsys, "tokens", "encode", "Hello", "--no-add-bos-token")
    assert result.out.splitlines() == [
        f"length:  {encoded.length}",
        "tokens:  " + " ".join(str(t) for t in encoded.tokens),
    ]
    ids = [str(t) for t in encoded.tokens]
    result = await run_cli(capsys, "tokens", "decode", *ids)
    assert (result.code, result.out) == (0, "Hello\n")
    result = await run_cli(capsys, "tokens", "decode", *ids, "--json")
    assert msgspec.json.decode(result.out, type=TokenDecodeResponse).text == "Hello"
    sent = [r.body for r in env.requests if r.path == "/v1/token/encode"]
    assert sent[-1] == {"add_bos_token": False, "text": "Hello"}


async def test_tokens_encode_messages(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env.preload("m")
    path = tmp_path / "chat.json"
    chat = '[{"role": "system", "content": "Be brief."}, {"content": "Hi"}]'
    path.write_text(chat, encoding="utf-8")
    await run_cli(capsys, "templates", "unload")
    result = await run_cli(capsys, "tokens", "encode", "--messages", str(path))
    assert result.code == common.EXIT_ERROR
    assert one_error_line(result) == (
        "chat messages need a prompt template and the loaded model has none; "
        "switch one in with `tabby-async templates switch NAME`"
    )
    await run_cli(capsys, "templates", "switch", "chatml")
    result = await run_cli(
        capsys, "tokens", "encode", "--messages", str(path), "--template-var", "tools=[]"
    )
    assert result.code == 0, result.err
    assert result.out.startswith("length:  ")
    sent = [r.body for r in env.requests if r.path == "/v1/token/encode"]
    assert sent[-1] == {
        "text": [{"role": "system", "content": "Be brief."}, {"content": "Hi"}],
        "template_vars": {"tools": []},
    }


async def test_tokens_usage_errors_send_nothing(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "chat.json"
    path.write_text("[]", encoding="utf-8")
    for argv in (
        ["encode"],  # neither
        ["encode", "hi", "--messages", str(path)],  # both
        ["encode", "hi", "--template-var", "novalue"],
        ["decode"],
        ["decode", "-1"],
        ["decode", "x"],
    ):
        result = await run_cli(capsys, "tokens", *argv)
        assert result.code == common.EXIT_USAGE, argv
    assert env.requests == []
