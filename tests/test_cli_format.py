"""The CLI's pure parts as tables: formatters (data -> text), argument types, error lines.

Nothing here talks to a server: each case is a value and the text (or exit
code) it must give. tests/test_cli.py runs the commands end to end.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from tabby_async import Timeout
from tabby_async import errors as E
from tabby_async._model_plan import plan_for, unchanged
from tabby_async._routes import GET, GET_EMBEDDING, LOAD, LOAD_EMBEDDING, UNLOAD
from tabby_async._timeouts import DEFAULT_STREAM_TIMEOUT, DEFAULT_TIMEOUT
from tabby_async.cli import _args, _format, _progress, _view, common
from tabby_async.desired import ModelResult
from tabby_async.types import (
    DownloadResponse,
    HealthIssue,
    HealthResponse,
    ModelCard,
    ModelCardParameters,
    ModelDefaultGenerationSettings,
    ModelList,
    ModelLoadRequest,
    ModelLoadResponse,
    ModelPropsResponse,
    PermissionResponse,
)


def card(name: str, **parameters: Any) -> ModelCard:
    return ModelCard(id=name, parameters=ModelCardParameters(**parameters) if parameters else None)


# --- layout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "limit", "text"),
    [
        (None, None, "-"),
        (True, None, "yes"),
        (False, None, "no"),
        (1.0, None, "1"),
        (2.5, None, "2.5"),
        (4096, None, "4096"),
        ([20.0, 24.5], None, "20,24.5"),
        ([], None, "-"),
        ("two\nlines  and   runs", None, "two lines and runs"),
        ("x" * 12, 5, "xxxx…"),
        ("short", 5, "short"),
    ],
)
def test_cell(value: object, limit: int | None, text: str) -> None:
    assert _format.cell(value, limit) == text


@pytest.mark.parametrize(
    ("headers", "rows", "options", "text"),
    [
        (("ID", "LOADED"), [("alpha", "*"), ("b", "")], {}, "ID     LOADED\nalpha  *\nb"),
        (("ID",), [], {}, "ID"),
        (
            ("node", "ctx", "ok"),
            [("n1", 4096, True), ("node-22", None, False)],
            {"rule": True},
            "node     ctx   ok\n-------  ----  ---\nn1       4096  yes\nnode-22  -     no",
        ),
        (("why",), [("a long reason here",)], {"cell_limit": 6}, "why\na lon…"),
    ],
)
def test_format_table(
    headers: tuple[str, ...], rows: list[tuple[object, ...]], options: dict[str, Any], text: str
) -> None:
    assert _format.format_table(headers, rows, **options) == text


def test_format_fields_aligns_the_values() -> None:
    assert _format.format_fields([("id", "m"), ("max_seq_len", 4096), ("draft", None)]) == (
        "id:           m\nmax_seq_len:  4096\ndraft:        -"
    )
    assert _format.format_fields([]) == ""


# --- one formatter per type -------------------------------------------------------------


def test_card_fields() -> None:
    assert _format.card_fields(card("m")) == "id:  m"
    text = _format.card_fields(
        card("m", max_seq_len=8192, cache_mode="Q8", use_vision=True, draft=card("d"))
    )
    fields = dict(line.split(":", 1) for line in text.splitlines())
    assert {k: v.strip() for k, v in fields.items()} == {
        "id": "m",
        "max_seq_len": "8192",
        "cache_size": "-",
        "cache_mode": "Q8",
        "rope_scale": "-",
        "rope_alpha": "-",
        "max_batch_size": "-",
        "chunk_size": "-",
        "prompt_template": "-",
        "use_vision": "yes",
        "draft": "d",
    }


@pytest.mark.parametrize(
    ("template", "shown"), [("{{ x }}", "7 characters"), ("", "-"), (None, "-")]
)
def test_props_fields(template: str | None, shown: str) -> None:
    props = ModelPropsResponse(
        total_slots=2,
        chat_template=template,
        default_generation_settings=ModelDefaultGenerationSettings(n_ctx=4096),
    )
    assert _format.props_fields(props) == (
        f"total_slots:    2\nn_ctx:          4096\nchat_template:  {shown}"
    )


@pytest.mark.parametrize(
    ("ids", "loaded", "limited", "text"),
    [
        (["beta", "Alpha", "gamma"], "beta", False, "ID     LOADED\nAlpha\nbeta   *\ngamma"),
        (
            ["beta"],
            "beta",
            True,
            "ID    LOADED\nbeta  *\n"
            "(an api key sees only the loaded one; list all models with the admin key)",
        ),
        ([], None, False, "no models to show"),
        (
            [],
            None,
            True,
            "no models to show\n"
            "(an api key sees only the loaded one; list all models with the admin key)",
        ),
    ],
)
def test_model_list_text(ids: list[str], loaded: str | None, limited: bool, text: str) -> None:
    listing = ModelList(data=[ModelCard(id=i) for i in ids])
    assert _format.model_list_text(listing, loaded, "models", limited=limited) == text


@pytest.mark.parametrize(
    ("loaded", "row"),
    [
        (None, ("load", "-", "model_name: wanted 'm', loaded None")),
        (card("other"), ("load", "other", "model_name: wanted 'm', loaded 'other'")),
        (
            card("m", max_seq_len=2048),
            ("reload", "m @2048", "max_seq_len: wanted 4096, loaded 2048"),
        ),
        (card("m", max_seq_len=4096), ("none", "m @4096", "")),
    ],
)
def test_plan_row(loaded: ModelCard | None, row: tuple[str, ...]) -> None:
    plan = plan_for(ModelLoadRequest(model_name="m", max_seq_len=4096), loaded)
    assert _format.plan_row(plan) == row
    assert len(_format.PLAN_COLUMNS) == len(row)


def test_ensure_row() -> None:
    request = ModelLoadRequest(model_name="m", max_seq_len=4096)
    done = unchanged(plan_for(request, card("m", max_seq_len=4096)))
    assert _format.ensure_row(done) == ("none", "m @4096", "as requested")
    assert len(_format.ENSURE_COLUMNS) == 3
    # A load: the row shows the card read after acting, not the planning one.
    plan = plan_for(request, card("m", max_seq_len=2048))
    reloaded = ModelResult("reload", plan.reasons, plan, card=card("m", max_seq_len=4096))
    assert _format.ensure_row(reloaded) == (
        "reload",
        "m @4096",
        "max_seq_len: wanted 4096, loaded 2048",
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (
            ModelLoadResponse(model_type="draft", module=2, modules=4, status="processing"),
            "draft 2/4 processing",
        ),
        (card("m"), "m"),
        (card("m", max_seq_len=4096), "m (max_seq_len 4096)"),
        (ModelList(data=[ModelCard(id="a"), ModelCard(id="b")]), "2 models"),
        (HealthResponse(status="healthy"), "healthy"),
        (
            HealthResponse(status="unhealthy", issues=[HealthIssue(description="GPU lost")]),
            "unhealthy: GPU lost",
        ),
        (PermissionResponse(permission="admin"), "admin"),
        (
            ModelPropsResponse(
                total_slots=3, default_generation_settings=ModelDefaultGenerationSettings(n_ctx=8)
            ),
            "n_ctx 8, 3 slots",
        ),
        (DownloadResponse(download_path="models/x"), "models/x"),
        (
            plan_for(ModelLoadRequest(model_name="m"), None),
            "load: model_name: wanted 'm', loaded None",
        ),
        (42, "42"),
    ],
)
def test_value_text(value: object, text: str) -> None:
    assert _format.value_text(value) == text


# --- argument types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("convert", "text", "value"),
    [
        (_args.positive_int, "3", 3),
        (_args.non_negative_int, "0", 0),
        (_args.positive_seconds, "0.5", 0.5),
        (_args.non_negative_seconds, "0", 0.0),
        (_args.number_list, "20, 24.5,", [20.0, 24.5]),
        (_args.number_or_auto, "AUTO", "auto"),
        (_args.number_or_auto, "2.5", 2.5),
        (_args.name_list, " a, b,,c ", ["a", "b", "c"]),
        (_args.name_list, "", []),
    ],
)
def test_argument_types_accept(convert: Callable[[str], object], text: str, value: object) -> None:
    assert convert(text) == value


@pytest.mark.parametrize(
    ("convert", "text", "message"),
    [
        (_args.positive_int, "0", "must be >= 1, got 0"),
        (_args.positive_int, "1.5", "not an integer: '1.5'"),
        (_args.non_negative_int, "-1", "must be >= 0, got -1"),
        (_args.positive_seconds, "0", "must be a number > 0, got '0'"),
        (_args.positive_seconds, "inf", "must be a finite number, got 'inf'"),
        (_args.positive_seconds, "nan", "must be a finite number, got 'nan'"),
        (_args.positive_seconds, "soon", "not a number: 'soon'"),
        (_args.non_negative_seconds, "-0.1", "must be a number >= 0, got '-0.1'"),
        (_args.number_list, "20,x", "expected numbers separated by commas"),
        (_args.number_list, ",", "expected at least one number"),
        (_args.number_list, "1,inf", "expected finite numbers"),
        (_args.number_or_auto, "fast", "expected a number or 'auto', got 'fast'"),
    ],
)
def test_argument_types_refuse(convert: Callable[[str], object], text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        convert(text)
    assert message in str(caught.value)


# --- error lines and exit codes -------------------------------------------------------------


def status_error(cls: type[E.APIStatusError], message: str, route: Any = GET, **extra: Any) -> Any:
    """An error as the SDK raises it for ``route`` (status 400 unless given)."""
    status = extra.pop("status", 400)
    # reason/kind: the structured fields the SDK sets from the server's words.
    return cls(message, status=status, method=route.method, path=route.path, **extra)


NAMED = argparse.Namespace(command_name="models load", name="m", server_url="http://h:5000")

# The server's wording never decides the line: each message below says the
# opposite of (or nothing about) the structured attribute, and the line
# follows the attribute. Before, the CLI searched the message for "Invalid",
# "embedding" and "Invalid admin key".
ERROR_LINES: list[tuple[BaseException, str, int]] = [
    (
        status_error(
            E.PermissionDeniedError, "Invalid admin key", UNLOAD, status=401, reason="missing"
        ),
        "models load needs the admin key (set --admin-key or TABBY_ADMIN_KEY)",
        common.EXIT_AUTH,
    ),
    (
        status_error(E.PermissionDeniedError, "some words", UNLOAD, status=401, reason="invalid"),
        "the server refused the admin key (models load needs a valid admin key; "
        "check --admin-key or TABBY_ADMIN_KEY)",
        common.EXIT_AUTH,
    ),
    (
        status_error(E.PermissionDeniedError, "Forbidden", UNLOAD, status=403),
        "the server refused models load (Forbidden); it needs the admin key "
        "(check --admin-key or TABBY_ADMIN_KEY)",
        common.EXIT_AUTH,
    ),
    (
        status_error(E.AuthenticationError, "Invalid API key", status=401, reason="missing"),
        "the server needs an api key (set --api-key or TABBY_API_KEY)",
        common.EXIT_AUTH,
    ),
    (
        status_error(E.AuthenticationError, "Please provide", status=401, reason="invalid"),
        "the server refused the api key (check --api-key or TABBY_API_KEY)",
        common.EXIT_AUTH,
    ),
    (
        status_error(E.ModelNotFoundError, "no such folder", LOAD),
        "model 'm' not found on the server (no such folder); see `tabby-async models list`",
        common.EXIT_NOT_FOUND,
    ),
    (
        # The path says "model"; the kind decides.
        status_error(E.ModelNotFoundError, "Could not find the model path", LOAD, kind="embedding"),
        "embedding model 'm' not found on the server (Could not find the model path); "
        "see `tabby-async models embedding list`",
        common.EXIT_NOT_FOUND,
    ),
    (
        status_error(E.AlreadyLoadedError, "whatever the server says", LOAD_EMBEDDING),
        "embedding model 'm' is already loaded; nothing changed "
        "(unload it first to load it again)",
        common.EXIT_ERROR,
    ),
    (
        status_error(E.ModelNotLoadedError, "No embedding models", GET, status=503, kind="model"),
        "no model is loaded (or a load is still running); "
        "load one with `tabby-async models load NAME`",
        common.EXIT_NOT_LOADED,
    ),
    (
        status_error(
            E.ModelNotLoadedError, "No models", GET_EMBEDDING, status=503, kind="embedding"
        ),
        "no embedding model is loaded (load one with `tabby-async models embedding load NAME`)",
        common.EXIT_NOT_LOADED,
    ),
    (
        status_error(E.NotFoundError, "Not Found", GET, status=404),
        "the server at http://h:5000 has no route /v1/model (is it a TabbyAPI server?)",
        common.EXIT_NOT_FOUND,
    ),
    (
        E.TabbyTimeoutError("the total timeout of 1 s passed", kind="total"),
        "timed out talking to http://h:5000: the total timeout of 1 s passed",
        common.EXIT_CONNECTION,
    ),
    (
        E.TabbyConnectionError("connection refused"),
        "cannot reach the server at http://h:5000: connection refused",
        common.EXIT_CONNECTION,
    ),
    (
        E.InvalidInputError("max_seq_len", "must be > 0"),
        "invalid input: max_seq_len: must be > 0",
        common.EXIT_USAGE,
    ),
    (
        E.LoadFailedError("CUDA out of memory"),
        "the load failed on the server: CUDA out of memory",
        common.EXIT_ERROR,
    ),
    (
        status_error(E.ServerError, "boom", GET, status=500),
        "server error: 500 boom (GET /v1/model)",
        common.EXIT_ERROR,
    ),
    (
        status_error(E.BadRequestError, "no", LOAD),
        "the server refused the request: 400 no (POST /v1/model/load)",
        common.EXIT_ERROR,
    ),
    (E.StreamError("the stream ended early"), "the stream ended early", common.EXIT_ERROR),
    (common.CliError("told by the CLI", 2), "told by the CLI", 2),
]


@pytest.mark.parametrize(("error", "line", "code"), ERROR_LINES)
def test_error_lines_come_from_types_and_attributes(
    error: BaseException, line: str, code: int
) -> None:
    assert common.describe_error(error, NAMED) == line
    assert common.exit_code_for(error) == code


def test_print_json_writes_one_line_and_errors_as_code_and_message() -> None:
    out = io.StringIO()
    common.print_json({"node": "n1", "error": E.LoadFailedError("CUDA out of memory")}, out)
    text = out.getvalue()
    assert text.count("\n") == 1
    assert json.loads(text) == {
        "node": "n1",
        "error": {"code": "load_failed", "message": "CUDA out of memory"},
    }
    with pytest.raises(TypeError):  # anything else is still refused, not guessed at
        common.print_json({"x": object()}, io.StringIO())


# --- which display ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("live", "json_output", "load", "download"),
    [
        (False, False, _progress.PlainLoadProgress, _progress.PlainDownloadProgress),
        (False, True, _view.NullView, _view.NullView),
    ],
)
def test_the_display_without_a_live_terminal(
    monkeypatch: pytest.MonkeyPatch,
    live: bool,
    json_output: bool,
    load: type,
    download: type,
) -> None:
    monkeypatch.setattr(_progress, "live_display", lambda **_: live)
    assert type(_progress.load_progress(json_output=json_output)) is load
    assert type(_progress.download_progress("o/r", json_output=json_output)) is download


def test_the_null_view_shows_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    event = ModelLoadResponse(module=1, modules=2, status="processing")
    with _view.NullView() as view:
        view.update(event)
        view.set_total(3)
        view.event("n1", event)
        view.done(object())
        view.note("a plan")
    assert capsys.readouterr() == ("", "")


# --- the connection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "environ", "keys"),
    [
        ({}, {}, (False, False)),
        ({}, {"TABBY_API_KEY": "k", "TABBY_ADMIN_KEY": "a"}, (True, True)),
        ({"api_key": ""}, {"TABBY_API_KEY": "k"}, (False, False)),  # empty flag: no key
        ({"admin_key": "a"}, {"TABBY_API_KEY": ""}, (False, True)),  # empty variable: unset
    ],
)
def test_the_client_reads_what_the_flags_leave_out(
    monkeypatch: pytest.MonkeyPatch,
    flags: dict[str, str],
    environ: dict[str, str],
    keys: tuple[bool, bool],
) -> None:
    for name in ("TABBY_URL", "TABBY_API_KEY", "TABBY_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TABBY_URL", "http://from-env:5000/v1")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    args = argparse.Namespace(timeout=None, **flags)
    client = common.client_from_args(args)
    assert (client.has_api_key, client.has_admin_key) == keys
    assert args.server_url == "http://from-env:5000"  # as the client reads it, for error lines


@pytest.mark.parametrize(
    ("flag", "control"),
    [
        (None, DEFAULT_TIMEOUT),  # no --timeout: the client's default, never "no bound"
        (2.5, Timeout(total=2.5, connect=10.0)),
    ],
)
def test_the_timeout_flag_bounds_control_calls_only(flag: float | None, control: Timeout) -> None:
    args = argparse.Namespace(url="http://h:5000", api_key=None, admin_key=None, timeout=flag)
    client = common.client_from_args(args)
    assert client.timeout == control
    assert client.stream_timeout == DEFAULT_STREAM_TIMEOUT  # loads and downloads: no total
