"""Mapping of the real server's error answers to typed errors."""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import multiprocessing
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
from aiohttp import web

from tabby_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DesiredState,
    LoadFailedError,
    ModelLoadRequest,
    ModelNotFoundError,
    ModelNotLoadedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StatePlan,
    StateResult,
    TabbyError,
    UnprocessableEntityError,
)
from tabby_async import _routes as R
from tabby_async._mapping import status_error
from tabby_async.cli import main as cli_main
from tabby_async.cli.common import ERROR_LINE_LIMIT, describe_error, one_line
from tabby_async.desired import FieldDiff, ModelPlan, ModelResult, PartPlan
from tabby_async.fleet import FleetResult, NodeResult
from tests.helpers import serve_app

ROPE_422 = (
    b'{"detail":[{"type":"float_parsing","loc":["body","rope_alpha","float"],'
    b'"msg":"Input should be a valid number, unable to parse string as a number",'
    b'"input":"fast"},{"type":"literal_error","loc":["body","rope_alpha","literal[\'auto\']"],'
    b'"msg":"Input should be \'auto\'","input":"fast","ctx":{"expected":"\'auto\'"}}]}'
)


@pytest.mark.parametrize(
    ("status", "body", "route", "cls", "code"),
    [
        (
            401,
            b'{"detail":"Please provide an API key"}',
            R.LIST,
            AuthenticationError,
            "authentication_error",
        ),
        (401, b'{"detail":"Invalid API key"}', R.GET, AuthenticationError, "authentication_error"),
        (
            401,
            b'{"detail":"Please provide an admin key"}',
            R.LOAD,
            PermissionDeniedError,
            "permission_error",
        ),
        (
            401,
            b'{"detail":"Invalid admin key"}',
            R.UNLOAD,
            PermissionDeniedError,
            "permission_error",
        ),
        (
            400,
            b'{"detail":"A model name was not provided for load."}',
            R.LOAD,
            BadRequestError,
            "invalid_request",
        ),
        (
            400,
            b'{"detail":"Could not find the model path for load. Check model name or config.yml?"}',
            R.LOAD,
            ModelNotFoundError,
            "not_found",
        ),
        (
            400,
            b'{"detail":"Could not find the embedding model path for load. Check model '
            b'name or config.yml?"}',
            R.LOAD_EMBEDDING,
            ModelNotFoundError,
            "not_found",
        ),
        (
            400,
            b'{"detail":"[Errno -2] Name or service not known"}',
            R.DOWNLOAD,
            BadRequestError,
            "invalid_request",
        ),
        (404, b'{"detail":"Not Found"}', R.PROPS, NotFoundError, "not_found"),
        (422, ROPE_422, R.LOAD, UnprocessableEntityError, "validation_error"),
        (429, b'{"detail":"slow down"}', R.LIST, RateLimitError, "rate_limited"),
        (
            503,
            b'{"detail":"No models are currently loaded."}',
            R.GET,
            ModelNotLoadedError,
            "model_not_loaded",
        ),
        (
            503,
            b'{"detail":"No embedding models are currently loaded."}',
            R.GET_EMBEDDING,
            ModelNotLoadedError,
            "model_not_loaded",
        ),
        (503, b'{"detail":"upstream down"}', R.GET, ServerError, "server_error"),
        (500, b"Internal Server Error", R.LIST, ServerError, "server_error"),
        (502, b"", R.LIST, ServerError, "server_error"),
        (418, b'{"detail":"teapot"}', R.LIST, APIStatusError, "http_error"),
    ],
)
def test_status_and_body_give_the_typed_error(
    status: int, body: bytes, route: R.Route, cls: type[APIStatusError], code: str
) -> None:
    err = status_error(status, body, route, has_admin_key=True)
    assert type(err) is cls
    assert err.code == code
    assert err.status == status
    assert isinstance(err, TabbyError)
    assert err.method == route.method and err.path == route.path


def test_validation_errors_are_listed_by_field() -> None:
    err = status_error(422, ROPE_422, R.LOAD, has_admin_key=True)
    assert isinstance(err, UnprocessableEntityError)
    assert [e["loc"][-1] for e in err.errors] == ["float", "literal['auto']"]
    assert "rope_alpha.float" in err.message


def test_permission_error_says_what_is_missing() -> None:
    err = status_error(
        401, b'{"detail":"Please provide an admin key"}', R.UNLOAD, has_admin_key=False
    )
    assert "unload needs the admin key" in err.message
    assert "no admin_key" in err.message


def test_redirect_is_not_followed_and_named() -> None:
    err = status_error(
        307, b"", R.LIST, has_admin_key=True, headers={"Location": "http://elsewhere/v1/model/list"}
    )
    assert "redirect to http://elsewhere" in err.message


# --- every error survives pickle and copy ------------------------------------------------


def _all_error_classes() -> list[type[TabbyError]]:
    """Every TabbyError subclass the package defines (its modules imported first)."""
    for module in ("tabby_async.fleet", "tabby_async._model_ensure", "tabby_async.testing"):
        importlib.import_module(module)
    found: list[type[TabbyError]] = []
    todo: list[type[TabbyError]] = [TabbyError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("tabby_async") and cls not in found:
            found.append(cls)
        todo += cls.__subclasses__()
    return sorted(found, key=lambda c: c.__qualname__)


def _ensure_result() -> ModelResult:
    request = ModelLoadRequest(model_name="m", max_seq_len=4096)
    plan = ModelPlan(action="load", reasons=(), request=request, loaded=None)
    diff = FieldDiff(field="max_seq_len", wanted=4096, loaded=2048)
    return ModelResult(action="load", reasons=(diff,), plan=plan, mismatches=(diff,))


def _state_result() -> StateResult:
    part = PartPlan(part="template", action="switch", wanted="chatml", current="llama3", reason="")
    plan = StatePlan(state=DesiredState(template="chatml"), parts=(part,))
    return StateResult(plan=plan, done=(part,), after=plan)


def _fleet_result() -> FleetResult[None]:
    failed = NodeResult[None](node="gpu-01", error=ServerError("down", status=502))
    return FleetResult([failed, NodeResult[None](node="gpu-02")], operation="load")


#: A value for each constructor parameter, by name; ``result`` depends on the class.
SAMPLES: dict[str, Any] = {
    "message": "the message",
    "field": "base_url",
    "problem": "is not a valid URL",
    "status": 503,
    "body": {"detail": "upstream down", "n": [1, 2]},
    "method": "GET",
    "path": "/v1/model",
    "headers": {"Retry-After": "1"},
    "kind": "read",
    "sent": False,
    "trace": ["frame 1", "frame 2"],
    "reason": "invalid",
    "limit": 16 << 20,
}
RESULTS: dict[str, Callable[[], Any]] = {
    "ModelMismatchError": _ensure_result,
    "FleetError": _fleet_result,
    "StateMismatchError": _state_result,
}
FIELDS = ("code", "message", "field", "status", "body", "method", "path", "headers", "kind")
FIELDS += ("sent", "trace", "reason", "limit")


def _make(cls: type[TabbyError]) -> TabbyError:
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(cls).parameters.items():
        if name == "result" and cls.__name__ in RESULTS:
            kwargs[name] = RESULTS[cls.__name__]()
        elif name in SAMPLES:
            kwargs[name] = SAMPLES[name]
        elif param.default is inspect.Parameter.empty:
            pytest.fail(f"{cls.__qualname__}({name}=...): add a sample value to SAMPLES")
    positional = [kwargs.pop(n) for n in ("message", "field", "problem", "result") if n in kwargs]
    return cls(*positional, **kwargs)


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda c: c.__qualname__)
def test_every_error_survives_pickle_and_copy(cls: type[TabbyError]) -> None:
    err = _make(cls)
    err.add_note("a note")
    for again in (
        pickle.loads(pickle.dumps(err)),
        copy.copy(err),
        copy.deepcopy(err),
    ):
        assert type(again) is cls
        assert str(again) == str(err) and repr(again) == repr(err)
        assert again.args == err.args
        for name in FIELDS:
            assert getattr(again, name, None) == getattr(err, name, None), name
        assert getattr(again, "__notes__", None) == ["a note"]
        assert _plain(again) == _plain(err)  # every other attribute too, all the way down


def _plain(value: object) -> object:
    """``value`` as nested plain data, to compare objects that lack ``==`` (errors)."""
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, *(_plain(v) for v in value)]
    state: dict[str, object] = dict(getattr(value, "__dict__", {}))
    for klass in type(value).__mro__:
        for name in getattr(klass, "__slots__", ()):
            if hasattr(value, name):
                state[name] = getattr(value, name)
    if isinstance(value, BaseException):
        state["args"] = value.args
    return (type(value).__qualname__, _plain(state))


def test_the_table_covers_the_known_classes() -> None:
    names = {c.__name__ for c in _all_error_classes()}
    assert {"InvalidInputError", "TabbyTimeoutError", "ServerError", "LoadFailedError"} <= names
    assert {"ModelMismatchError", "FleetError", "VerificationError"} <= names


def raise_in_worker() -> None:
    """Raised in a worker process; the parent must get it back whole."""
    raise ModelNotLoadedError(
        "No models are currently loaded.", status=503, method="GET", path="/v1/model"
    )


def test_an_error_crosses_a_process_pool() -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(raise_in_worker)
        with pytest.raises(ModelNotLoadedError) as info:
            future.result(timeout=120)
    assert info.value.status == 503 and info.value.path == "/v1/model"
    assert info.value.code == "model_not_loaded"


# --- answers that are not TabbyAPI's ------------------------------------------------------

NGINX = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
CLOUDFLARE = (
    b"<!DOCTYPE html>\n<!--[if lt IE 7]> <html class=\"no-js ie6 oldie\" lang=\"en-US\"> "
    b"<![endif]-->\n<head>\n<title>example.com | 502: Bad gateway</title>\n"
    + b"<style>body{margin:0}</style>\n" * 40
    + b"</head><body><h1>Bad gateway</h1></body></html>"
)


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (
            502,
            NGINX,
            {"Content-Type": "text/html"},
            f"Bad Gateway: an HTML page '502 Bad Gateway' ({len(NGINX)} bytes), "
            "not TabbyAPI's answer",
        ),
        (
            502,
            CLOUDFLARE,
            {},
            f"Bad Gateway: an HTML page 'example.com | 502: Bad gateway' ({len(CLOUDFLARE)} "
            "bytes), not TabbyAPI's answer",
        ),
        (
            504,
            b"<body>upstream timed out</body>",
            {"Content-Type": "text/html; charset=utf-8"},
            "Gateway Timeout: an HTML page (31 bytes), not TabbyAPI's answer",
        ),
        (503, b'{"message":"no healthy upstream"}', {}, "no healthy upstream"),
        (502, b'{"error":"bad gateway"}', {}, "bad gateway"),
        (502, b"", {}, "Bad Gateway"),
        (599, b"", {}, "HTTP 599"),
        (500, b"Internal Server Error", {"Content-Type": "text/plain"}, "Internal Server Error"),
    ],
)
def test_foreign_error_answers_get_a_short_message(
    status: int, body: bytes, headers: dict[str, str], expected: str
) -> None:
    err = status_error(status, body, R.LIST, has_admin_key=True, headers=headers)
    assert err.message == expected
    assert str(err) == f"{status} {expected} (GET /v1/model/list)"
    if body and not body.startswith(b"{"):
        assert err.body == body.decode()  # the whole page stays available to code


# --- the CLI's error line ---------------------------------------------------------------

IMPORT_ERROR = (
    "Skipping embeddings because infinity-emb is not installed.\n"
    "Please run the following command in your environment to install extra packages:\n"
    "    pip install -U .[extras]\n\n"
    "Traceback (most recent call last):\n" + "  File \"x.py\", line 1, in <module>\n" * 30
)


@pytest.mark.parametrize(
    "err",
    [
        BadRequestError(IMPORT_ERROR, status=400, method="POST", path="/v1/model/embedding/load"),
        status_error(502, CLOUDFLARE, R.LIST, has_admin_key=True),
        ServerError("line one\r\nline two\tand\x0bmore", status=500),
        LoadFailedError("CUDA\nout of memory " * 50),
    ],
    ids=["multi-line 400", "HTML page", "CR LF and tabs", "long load failure"],
)
def test_cli_error_lines_are_one_line(err: TabbyError) -> None:
    line = describe_error(err)
    assert "\n" not in line and "\r" not in line and "\t" not in line
    assert "  " not in line
    assert len(line) <= ERROR_LINE_LIMIT
    assert "<html" not in line.lower() and "<title" not in line.lower()


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 20, "short"),
        ("a\n  b\r\n\tc", 20, "a b c"),
        ("word " * 10, 20, "word word word..."),
        ("x" * 30, 20, "x" * 17 + "..."),
        ("one two, three four five", 18, "one two, three..."),
    ],
)
def test_one_line(text: str, limit: int, expected: str) -> None:
    assert one_line(text, limit) == expected
    assert len(one_line(text, limit)) <= limit


async def test_the_cli_prints_a_multi_line_server_text_on_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def load(request: web.Request) -> web.Response:
        return web.json_response({"detail": IMPORT_ERROR}, status=400)

    app = web.Application()
    app.router.add_post("/v1/model/embedding/load", load)
    async with serve_app(app) as url:
        argv = ["--url", url, "--admin-key", "k", "models", "embedding", "load", "e"]
        code = await asyncio.to_thread(cli_main, argv)
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "infinity-emb is not installed. Please run" in err


@pytest.mark.parametrize(
    "name", ["VerificationError", "NodeSkippedError", "NodeCancelledError", "FleetError"]
)
def test_the_fleet_errors_old_homes_still_work_and_warn(name: str) -> None:
    import tabby_async
    import tabby_async.errors
    import tabby_async.fleet

    home = getattr(tabby_async.fleet, name)
    assert issubclass(home, tabby_async.errors.TabbyError)
    assert name not in tabby_async.errors.__all__ and name not in tabby_async.__all__
    said = rf"is deprecated: use tabby_async\.fleet\.{name}"
    for old in (tabby_async.errors, tabby_async):
        with pytest.warns(DeprecationWarning, match=said):
            assert getattr(old, name) is home
