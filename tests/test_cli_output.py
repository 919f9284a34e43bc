"""The CLI's output boundary as tables: control characters made visible, JSON kept exact,
failures as JSON documents. tests/test_cli.py runs a hostile server end to end."""

from __future__ import annotations

import argparse
import io
import json
import logging

import pytest

from tabby_async import errors as E
from tabby_async.cli import _fleet_output, _format, _output, common
from tabby_async.fleet import NodeResult
from tabby_async.types import ModelLoadResponse

#: An OSC 52 clipboard write, a screen clear, NUL, a tab, a C1 CSI, DEL.
HOSTILE = "a\x1b]52;c;aGk=\x07b\x1b[2J\x00\t\x9b\x7fz"
SHOWN = "a\\x1b]52;c;aGk=\\x07b\\x1b[2J\\x00\\x09\\x9b\\x7fz"
RAW = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)] if c != 0x0A]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (HOSTILE, SHOWN),
        ("two\nlines\n", "two\nlines\n"),  # the CLI's own line breaks stay
        ("\r\x0b\x0c\x85", "\\x0d\\x0b\\x0c\\x85"),
        ("plain ü → 日本", "plain ü → 日本"),  # printable text is untouched
    ],
)
def test_visible(text: str, shown: str) -> None:
    assert _output.visible(text) == shown


def test_every_control_but_the_newline_is_escaped() -> None:
    assert not any(c in _output.visible("".join(RAW)) for c in RAW)


def test_visible_output_filters_stdout_and_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with _output.visible_output():
        print(HOSTILE)
        print(HOSTILE, file=__import__("sys").stderr)
    assert capsys.readouterr() == (SHOWN + "\n", SHOWN + "\n")
    print("\x07")  # restored afterwards
    assert capsys.readouterr().out == "\x07\n"


def test_json_text_escapes_every_control_and_decodes_to_the_same_string() -> None:
    text = _output.json_text({"id": HOSTILE})
    assert not any(c in text for c in RAW)
    assert json.loads(text) == {"id": HOSTILE}


def test_rich_views_show_control_characters_as_escapes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tabby_async.cli._rich import RichFleetView

    with _output.visible_output():
        with RichFleetView(1, HOSTILE) as view:
            view.event(HOSTILE, ModelLoadResponse(module=1, modules=2, status="processing"))
            view.note(HOSTILE)
            view.done(NodeResult(HOSTILE, None, E.LoadFailedError(HOSTILE), 0.1))
        monkeypatch.setattr(_fleet_output, "live_display", lambda **_: True)
        _fleet_output.print_table([NodeResult(HOSTILE + "[bold]", HOSTILE, None, 0.1)])
    out = capsys.readouterr().out
    assert not any(c in out for c in RAW if c != "\r")  # rich's own line ends may hold \r
    assert "\x1b" not in out
    assert "\\x1b]52" in out
    assert "[bold]" in out  # shown, not read as rich markup


@pytest.mark.parametrize(
    ("sdk", "cli"),
    [
        (
            "m was already loaded: the server ignored this load's parameters "
            "(unload first, or use reload=True or ensure_loaded)",
            "m was already loaded: the server ignored this load's parameters "
            "(unload first, or use `tabby-async fleet ensure`, which reloads when they differ)",
        ),
        (
            "n2: cancelled because n1 failed (fail_fast)",
            "n2: cancelled because n1 failed (--fail-fast)",
        ),
        (
            "n4: not touched: the rollout halted after 1 failure (max_failures=0)",
            "n4: not touched: the rollout halted after 1 failure (--max-failures 0)",
        ),
        ("nothing of the SDK's API here", "nothing of the SDK's API here"),
    ],
)
def test_cli_words(sdk: str, cli: str) -> None:
    assert _format.cli_words(sdk) == cli


def test_sdk_warnings_are_lines_naming_the_node(capsys: pytest.CaptureFixture[str]) -> None:
    # The SDK's records inside a fleet operation carry their node as the
    # ``tabby_node`` extra field (its documented logging contract).
    logger = logging.getLogger("tabby_async")
    with _output.sdk_warnings():
        logger.warning("%s: degraded", "n1", extra={"tabby_node": "n1"})  # already named
        logger.warning(
            "m was already loaded (use reload=True or ensure_loaded)", extra={"tabby_node": "n2"}
        )
        logger.warning("outside a fleet", extra={"tabby_node": None})
        logger.info("not shown", extra={"tabby_node": "n2"})
    assert capsys.readouterr().err.splitlines() == [
        "warning: n1: degraded",
        "warning: n2: m was already loaded "
        "(use `tabby-async fleet ensure`, which reloads when they differ)",
        "warning: outside a fleet",
    ]


# --- failures as JSON --------------------------------------------------------------------


def namespace(**values: object) -> argparse.Namespace:
    return argparse.Namespace(url="http://u:p@h:5000/?key=s3cret", json=True, **values)


@pytest.mark.parametrize(
    ("error", "document"),
    [
        (
            E.ModelNotLoadedError("no model", status=503),
            {
                "code": "model_not_loaded",
                "type": "ModelNotLoadedError",
                "message": "no model is loaded (or a load is still running); "
                "load one with `tabby-async models load NAME`",
            },
        ),
        (
            common.CliError("give --nodes nodes.toml", common.EXIT_USAGE),
            {"code": "usage_error", "type": "CliError", "message": "give --nodes nodes.toml"},
        ),
        (
            common.CliError("x", common.EXIT_ERROR, code="not_converged"),
            {"code": "not_converged", "type": "CliError", "message": "x"},
        ),
    ],
)
def test_error_document(error: BaseException, document: dict[str, str]) -> None:
    assert common.error_document(error, namespace()) == {"error": document}


def test_an_error_document_keeps_secrets_out() -> None:
    error = E.TabbyConnectionError("refused")
    text = _output.json_text(common.error_document(error, namespace()))
    assert "s3cret" not in text and "u:p" not in text
    assert json.loads(text)["error"]["code"] == "connection_error"


def test_print_json_to_a_file() -> None:
    out = io.StringIO()
    common.print_json({"x": "\x7f"}, out)
    assert out.getvalue() == '{"x":"\\u007f"}\n'
