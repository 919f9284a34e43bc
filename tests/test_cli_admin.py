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

import pytest

from tabby_async import (
    ChatMessage,
    ChatMessagePart,
    LoraCard,
    LoraList,
    LoraLoadItem,
    LoraLoadResponse,
    SamplerOverrides,
    TemplateList,
    TokenEncodeResponse,
)
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
