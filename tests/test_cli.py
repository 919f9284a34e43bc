"""End-to-end tests of the ``tabby-async`` command line against the emulator.

Most tests run ``main([...])`` in a worker thread (it runs its own event loop
there) while the emulator serves from the test's loop, and read what it
printed with ``capsys``. The tests that need a real process (signals, a
terminal, the console entry point) run ``python -m tabby_async``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import pathlib
import select
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator

import msgspec
import pytest

from tabby_async import cli
from tabby_async.cli import common
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.types import ModelCard, ModelList, ModelLoadResponse, ModelPropsResponse
from tests.helpers import export_variables, point_env_at, raw_server

ENV_NAMES = ("TABBY_URL", "TABBY_API_KEY", "TABBY_ADMIN_KEY", "HF_TOKEN")
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals and ptys")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TABBY_*/HF_TOKEN from the machine running the tests."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def server() -> AsyncIterator[TabbyEmulator]:
    async with TabbyEmulator(
        models=[
            "alpha",
            EmulatedModel("beta", modules=3, vision_modules=2, chat_template="{{ x }}"),
            EmulatedModel("broken", modules=4, fail_at=2, fail_message="CUDA out of memory"),
        ],
        drafts=[EmulatedModel("draft-small", modules=2)],
        embeddings=["embed-a"],
        downloadable={"org/new-model": 0.05},
        templates={"chatml": "{{ x }}"},  # the text a load naming "chatml" puts in use
    ) as emulator:
        yield emulator


@pytest.fixture
def env(server: TabbyEmulator, monkeypatch: pytest.MonkeyPatch) -> TabbyEmulator:
    """The server's URL and both keys in TABBY_URL/TABBY_API_KEY/TABBY_ADMIN_KEY."""
    monkeypatch.setenv("TABBY_URL", server.url)
    monkeypatch.setenv("TABBY_API_KEY", server.api_key)
    monkeypatch.setenv("TABBY_ADMIN_KEY", server.admin_key)
    return server


class Result(msgspec.Struct):
    code: int
    out: str
    err: str


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """``main(argv)`` in a thread; its exit code and what it printed."""
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out, err = capsys.readouterr()
    return Result(code, out, err)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def assert_no_secrets(result: Result, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.out
        assert secret not in result.err


# --- listings -----------------------------------------------------------------------


async def test_models_list_human_marks_the_loaded_model(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "models", "list")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["ID", "LOADED"]
    assert [line.split()[0] for line in lines[1:]] == ["alpha", "beta", "broken"]
    assert "*" not in result.out

    env.preload("beta")
    result = await run(capsys, "models", "list")
    rows = {line.split()[0]: line.split()[1:] for line in result.out.splitlines()[1:]}
    assert rows == {"alpha": [], "beta": ["*"], "broken": []}


async def test_models_list_json_is_the_model_list(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "models", "list", "--json")
    assert result.code == 0
    listing = msgspec.json.decode(result.out, type=ModelList)
    assert listing.ids == env.models
    assert result.out.count("\n") == 1


async def test_draft_and_embedding_lists(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "models", "draft", "list")
    assert result.code == 0
    assert result.out.split() == ["ID", "LOADED", "draft-small"]
    result = await run(capsys, "models", "draft", "list", "--json")
    assert msgspec.json.decode(result.out, type=ModelList).ids == ["draft-small"]

    # The server's card never says which draft is loaded (its draft is always
    # null); the draft listing read with the plain api key does.
    env.preload("alpha", draft_model={"draft_model_name": "draft-small"})
    assert env.loaded_draft == "draft-small"
    result = await run(capsys, "models", "draft", "list")
    assert result.out.split() == ["ID", "LOADED", "draft-small", "*"]
    # With the admin key alone nothing can say which draft is loaded.
    result = await run(capsys, "models", "draft", "list", "--api-key", "")
    assert result.out.split() == ["ID", "LOADED", "draft-small"]

    result = await run(capsys, "models", "embedding", "list", "--json")
    assert msgspec.json.decode(result.out, type=ModelList).ids == ["embed-a"]


async def test_draft_list_with_an_api_key_marks_the_loaded_draft(
    server: TabbyEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An api key is shown only the loaded draft, so that one row is the loaded one.
    point_env_at(server, monkeypatch, admin_key=False)
    result = await run(capsys, "models", "draft", "list")
    assert result.out.splitlines()[0] == "no draft models to show"
    server.preload("alpha", draft_model={"draft_model_name": "draft-small"})
    result = await run(capsys, "models", "draft", "list")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "ID           LOADED",
        "draft-small  *",
        "(an api key sees only the loaded one; list all draft models with the admin key)",
    ]


# --- get / props / not loaded ---------------------------------------------------------


async def test_get_and_props_without_a_model_exit_5(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["models", "get"], ["models", "props"], ["models", "unload"]):
        result = await run(capsys, *command)
        assert result.code == common.EXIT_NOT_LOADED, command
        assert result.out == ""
        assert result.err.startswith("error: no model is loaded")
        assert result.err.count("\n") == 1


async def test_get_and_props_human_and_json(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    env.preload("beta", max_seq_len=2048, cache_mode="Q8", prompt_template="chatml")
    result = await run(capsys, "models", "get")
    assert result.code == 0
    fields = {k: v.strip() for k, v in (line.split(":", 1) for line in result.out.splitlines())}
    assert fields["id"] == "beta"
    assert fields["max_seq_len"] == "2048"
    assert fields["cache_mode"] == "Q8"
    assert fields["prompt_template"] == "chatml"
    assert fields["use_vision"] == "no"
    assert fields["draft"] == "-"

    card = msgspec.json.decode((await run(capsys, "models", "get", "--json")).out, type=ModelCard)
    assert card.id == "beta"
    assert card.parameters is not None and card.parameters.max_seq_len == 2048

    result = await run(capsys, "models", "props")
    assert "n_ctx:" in result.out and "2048" in result.out
    assert "chat_template:  7 characters" in result.out
    props = msgspec.json.decode(
        (await run(capsys, "models", "props", "--json")).out, type=ModelPropsResponse
    )
    assert props.default_generation_settings.n_ctx == 2048
    assert props.chat_template == "{{ x }}"


# --- load -----------------------------------------------------------------------------


async def test_load_prints_one_plain_line_per_event_when_not_a_terminal(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "models", "load", "beta", "--vision", "--draft-model", "draft-small")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    events = [line.split()[:4] for line in lines[:-1]]
    assert events == [
        ["vision", "1/2", "modules", "processing"],
        ["vision", "2/2", "modules", "processing"],
        ["vision", "2/2", "modules", "finished"],
        ["draft", "1/2", "modules", "processing"],
        ["draft", "2/2", "modules", "processing"],
        ["draft", "2/2", "modules", "finished"],
        ["model", "1/3", "modules", "processing"],
        ["model", "2/3", "modules", "processing"],
        ["model", "3/3", "modules", "processing"],
        ["model", "3/3", "modules", "finished"],
    ]
    assert lines[-1].startswith("loaded 'beta' with draft 'draft-small' in ")
    assert env.loaded == "beta" and env.loaded_draft == "draft-small"


async def test_load_sends_every_option_as_the_request_field(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(
        capsys,
        "models",
        "load",
        "alpha",
        "--max-seq-len",
        "8192",
        "--cache-size",
        "4096",
        "--cache-mode",
        "Q4",
        "--rope-scale",
        "1.5",
        "--rope-alpha",
        "auto",
        "--gpu-split",
        "20,24",
        "--no-gpu-split-auto",
        "--autosplit-reserve",
        "512",
        "--chunk-size",
        "1024",
        "--prompt-template",
        "chatml",
        "--backend",
        "exllamav2",
        "--tensor-parallel",
        "--tensor-parallel-backend",
        "native",
        "--no-vision",
        "--output-chunking",
        "--skip-queue",
        "--draft-model",
        "draft-small",
        "--draft-rope-scale",
        "2",
        "--draft-rope-alpha",
        "1.25",
        "--draft-gpu-split",
        "4",
        "--draft-cache-mode",
        "Q8",
    )
    assert result.code == 0, result.err
    [load] = [r for r in env.requests if r.path == "/v1/model/load"]
    assert load.json() == {
        "model_name": "alpha",
        "backend": "exllamav2",
        "max_seq_len": 8192,
        "cache_size": 4096,
        "cache_mode": "Q4",
        "tensor_parallel": True,
        "tensor_parallel_backend": "native",
        "gpu_split_auto": False,
        "autosplit_reserve": [512.0],
        "gpu_split": [20.0, 24.0],
        "rope_scale": 1.5,
        "rope_alpha": "auto",
        "chunk_size": 1024,
        "output_chunking": True,
        "prompt_template": "chatml",
        "vision": False,
        "draft_model": {
            "draft_model_name": "draft-small",
            "draft_rope_scale": 2.0,
            "draft_rope_alpha": 1.25,
            "draft_gpu_split": [4.0],
            "draft_cache_mode": "Q8",
        },
        "skip_queue": True,
    }


async def test_load_of_the_loaded_model_says_new_parameters_are_ignored(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    env.preload("alpha", max_seq_len=1024)
    result = await run(capsys, "models", "load", "alpha", "--max-seq-len", "4096")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == (
        "note: 'alpha' is already loaded; the server keeps its current parameters "
        "(unload first to change them)"
    )
    card = msgspec.json.decode((await run(capsys, "models", "get", "--json")).out, type=ModelCard)
    assert card.parameters is not None and card.parameters.max_seq_len == 1024


async def test_load_with_vision_of_a_model_without_it_warns(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "models", "load", "alpha", "--vision")
    assert result.code == 0, result.err
    assert result.err.splitlines() == [
        "warning: the server loaded 'alpha' without vision, though --vision was given "
        "(the model has no vision component)"
    ]
    json_output = await run(capsys, "models", "load", "beta", "--vision", "--json")
    assert (json_output.code, json_output.err) == (0, "")  # beta has a vision component


async def test_the_loaded_note_knows_a_nested_name(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # The card of org/nested/4.0bpw has the id "4.0bpw", which another folder
    # of that name shows too: the note comes only once the server's answer
    # (its "already loaded" no-op) proved it.
    env.add_model("org/nested/4.0bpw")
    env.add_model("other/nested/4.0bpw")
    env.preload("org/nested/4.0bpw")
    result = await run(capsys, "models", "load", "org/nested/4.0bpw", "--max-seq-len", "4096")
    assert result.code == 0, result.err
    assert result.out.splitlines()[-2].startswith("note: 'org/nested/4.0bpw' is already loaded;")
    other = await run(capsys, "models", "load", "other/nested/4.0bpw")
    assert other.code == 0, other.err
    assert "already loaded" not in other.out
    assert env.loaded == "other/nested/4.0bpw"


async def test_load_unset_options_are_not_sent(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await run(capsys, "models", "load", "alpha")).code == 0
    [load] = [r for r in env.requests if r.path == "/v1/model/load"]
    assert load.json() == {"model_name": "alpha"}


async def test_load_json_prints_only_the_finished_event(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "models", "load", "alpha", "--json")
    assert result.code == 0
    event = msgspec.json.decode(result.out, type=ModelLoadResponse)
    assert (event.model_type, event.status, event.module, event.modules) == (
        "model",
        "finished",
        4,
        4,
    )
    assert result.err == ""


async def test_load_failure_inside_the_stream_exits_1(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "models", "load", "broken")
    assert result.code == common.EXIT_ERROR
    assert result.err == "error: the load failed on the server: CUDA out of memory\n"
    assert "model  2/4 modules  processing" in result.out
    assert env.loaded is None


async def test_load_of_a_missing_model_exits_4(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "models", "load", "nope")
    assert result.code == common.EXIT_NOT_FOUND
    assert result.err.startswith("error: model 'nope' not found on the server")
    result = await run(capsys, "models", "embedding", "load", "nope")
    assert result.code == common.EXIT_NOT_FOUND
    assert result.err.startswith("error: embedding model 'nope' not found on the server")


# --- auth, keys and connection ----------------------------------------------------------


async def test_admin_commands_with_only_the_api_key_exit_3(
    server: TabbyEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TABBY_URL", server.url)
    monkeypatch.setenv("TABBY_API_KEY", server.api_key)
    server.preload("alpha")
    result = await run(capsys, "models", "unload")
    assert result.code == common.EXIT_AUTH
    assert result.err == (
        "error: models unload needs the admin key (set --admin-key or TABBY_ADMIN_KEY)\n"
    )
    result = await run(capsys, "models", "load", "beta")
    assert result.code == common.EXIT_AUTH
    assert "models load needs the admin key" in result.err
    assert server.loaded == "alpha"
    assert_no_secrets(result, server.api_key, server.admin_key)


async def test_wrong_or_missing_keys_exit_3_and_are_never_printed(
    server: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "--url", server.url, "models", "list")
    assert result.code == common.EXIT_AUTH
    assert result.err == "error: the server needs an api key (set --api-key or TABBY_API_KEY)\n"

    bad = "not-the-key-0123456789"
    result = await run(capsys, "models", "list", "--url", server.url, "--api-key", bad)
    assert result.code == common.EXIT_AUTH
    assert "refused the api key" in result.err
    assert_no_secrets(result, bad)

    result = await run(
        capsys, "models", "unload", "--url", server.url, "--admin-key", bad, "--json"
    )
    assert result.code == common.EXIT_AUTH
    assert "refused the admin key" in result.err
    assert_no_secrets(result, bad, server.admin_key)


async def test_flags_win_over_the_environment(
    server: TabbyEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TABBY_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("TABBY_ADMIN_KEY", "wrong-key")
    # Connection flags work before and after the subcommand.
    result = await run(
        capsys, "--url", server.url, "models", "list", "--admin-key", server.admin_key, "--json"
    )
    assert result.code == 0, result.err
    assert msgspec.json.decode(result.out, type=ModelList).ids == server.models


SECRET = "sk-not-to-be-printed-0123456789"


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("TABBY_API_KEY", f"{SECRET}\r\nX-Evil: 1", "error: invalid input: TABBY_API_KEY: "),
        ("TABBY_ADMIN_KEY", f" {SECRET} ", "error: invalid input: TABBY_ADMIN_KEY: "),
        ("TABBY_URL", f"http://user:{SECRET}@h:5000", "error: invalid input: TABBY_URL: "),
        ("TABBY_URL", "not a url", "error: invalid input: TABBY_URL: "),
    ],
)
async def test_a_bad_variable_is_named_and_never_shown(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    line: str,
) -> None:
    # The client reads the variables (the CLI passes FROM_ENV), so the line
    # names the variable to fix, not the SDK's parameter.
    monkeypatch.setenv(variable, value)
    result = await run(capsys, "models", "list")
    assert result.code == common.EXIT_USAGE
    assert result.err.startswith(line)
    assert result.err.count("\n") == 1
    assert_no_secrets(result, SECRET)


async def test_an_empty_key_flag_sends_no_key_and_an_empty_variable_is_unset(
    server: TabbyEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TABBY_URL", server.url)
    monkeypatch.setenv("TABBY_API_KEY", server.api_key)
    result = await run(capsys, "models", "list", "--api-key", "")
    assert (result.code, result.err) == (
        common.EXIT_AUTH,
        "error: the server needs an api key (set --api-key or TABBY_API_KEY)\n",
    )
    monkeypatch.setenv("TABBY_API_KEY", "")
    result = await run(capsys, "models", "list", "--json")
    assert result.code == common.EXIT_AUTH


async def test_an_unreachable_server_from_the_environment_is_named_as_the_client_reads_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("TABBY_URL", f"{root}/v1/?token={SECRET}")  # the client drops both
    result = await run(capsys, "models", "list")
    assert result.code == common.EXIT_CONNECTION
    assert result.err.startswith(f"error: cannot reach the server at {root}: ")
    assert_no_secrets(result, SECRET)


async def test_listing_with_only_an_api_key_shows_the_loaded_model_and_says_so(
    server: TabbyEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # TabbyAPI lists every folder to the admin key, only the loaded model to an api key.
    monkeypatch.setenv("TABBY_URL", server.url)
    monkeypatch.setenv("TABBY_API_KEY", server.api_key)
    server.preload("beta")
    result = await run(capsys, "models", "list")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "ID    LOADED",
        "beta  *",
        "(an api key sees only the loaded one; list all models with the admin key)",
    ]
    result = await run(capsys, "models", "list", "--json")
    assert msgspec.json.decode(result.out, type=ModelList).ids == ["beta"]
    # With the admin key as well, the CLI lists with it and sees every folder.
    result = await run(capsys, "models", "list", "--json", "--admin-key", server.admin_key)
    assert msgspec.json.decode(result.out, type=ModelList).ids == server.models
    result = await run(capsys, "models", "list", "--admin-key", "bad-admin-key")
    assert result.code == common.EXIT_AUTH
    assert result.err.startswith("error: the server refused the admin key")


#: Terminal controls a hostile server puts in ids and error details: an OSC 52
#: clipboard write ended by BEL, a screen clear, NUL, a C1 CSI and DEL.
HOSTILE = "evil\x1b]52;c;aGVsbG8=\x07\x1b[2J\x00\x9b\x7f"
RAW_CONTROLS = ("\x1b", "\x07", "\x00", "\x9b", "\x7f")


async def hostile_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP server whose every id, name and error detail holds terminal controls."""
    head = await reader.readuntil(b"\r\n\r\n")
    path = head.split(b" ")[1].decode()
    card = {"id": HOSTILE, "object": "model", "created": 1, "owned_by": HOSTILE}
    status, body = 200, {"object": "list", "data": [card]}
    if path == "/v1/model":
        body = card
    elif path == "/v1/template/list":
        body = {"object": "list", "data": [HOSTILE]}
    elif path == "/v1/model/unload":
        status, body = 500, {"detail": HOSTILE}
    data = json.dumps(body).encode()
    writer.write(
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )
    await writer.drain()


async def test_control_characters_from_a_server_never_reach_the_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with raw_server(hostile_answers) as url:
        keys = ("--url", url, "--api-key", "k" * 16, "--admin-key", "a" * 16)
        outputs: list[Result] = []
        for argv in (["models", "list"], ["models", "get"], ["templates", "list"]):
            result = await run(capsys, *argv, *keys)
            assert result.code == 0, result.err
            assert "\\x1b]52;c;aGVsbG8=\\x07\\x1b[2J\\x00\\x9b\\x7f" in result.out
            outputs.append(result)
        error = await run(capsys, "models", "unload", *keys)
        assert error.code == common.EXIT_ERROR
        assert "\\x1b]52" in error.err
        outputs.append(error)
        # JSON escapes them: the document decodes to exactly the server's text.
        listing = await run(capsys, "models", "list", "--json", *keys)
        assert json.loads(listing.out)["data"][0]["id"] == HOSTILE
        failure = await run(capsys, "models", "unload", "--json", *keys)
        assert HOSTILE in json.loads(failure.out)["error"]["message"]
        outputs += [listing, failure]
    for output in outputs:
        for control in RAW_CONTROLS:
            assert control not in output.out + output.err


@pytest.mark.parametrize(
    ("argv", "code", "exit_code"),
    [
        (["models", "get"], "model_not_loaded", common.EXIT_NOT_LOADED),
        (["models", "props"], "model_not_loaded", common.EXIT_NOT_LOADED),
        (["models", "load", "nope"], "not_found", common.EXIT_NOT_FOUND),
        (["templates", "switch", "chatml"], "model_not_loaded", common.EXIT_NOT_LOADED),
        (["tokens", "decode", "1"], "model_not_loaded", common.EXIT_NOT_LOADED),
        (["lora", "active"], "model_not_loaded", common.EXIT_NOT_LOADED),
        (["models", "list", "--admin-key", "wrong-admin-key"], "authentication_error", 3),
        (["fleet", "status"], "usage_error", common.EXIT_USAGE),
    ],
)
async def test_json_failures_are_a_json_document_with_the_same_exit_code(
    env: TabbyEmulator,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: str,
    exit_code: int,
) -> None:
    result = await run(capsys, *argv, "--json")
    error = json.loads(result.out)["error"]
    assert result.err.startswith("error: ")
    assert error["message"] == result.err.removeprefix("error: ").strip()
    assert (result.code, error["code"]) == (exit_code, code)
    assert_no_secrets(result, env.api_key, env.admin_key, "wrong-admin-key")


async def test_unreachable_server_exits_6(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await run(capsys, "models", "list", "--url", url)
    assert result.code == common.EXIT_CONNECTION
    assert result.err.startswith(f"error: cannot reach the server at {url}: ")
    assert result.err.count("\n") == 1


async def test_timeout_exits_6(server: TabbyEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    server.faults.delay_head(2.0, path="/v1/model/list")
    result = await run(
        capsys,
        "models",
        "list",
        "--url",
        server.url,
        "--api-key",
        server.api_key,
        "--timeout",
        "0.3",
    )
    assert result.code == common.EXIT_CONNECTION
    assert result.err.startswith(f"error: timed out talking to {server.url}")


async def test_a_server_without_the_routes_exits_4(
    server: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{server.url}/not-tabby"
    result = await run(capsys, "models", "get", "--url", url, "--api-key", server.api_key)
    assert result.code == common.EXIT_NOT_FOUND
    assert result.err == (
        f"error: the server at {url} has no route /v1/model (is it a TabbyAPI server?)\n"
    )


async def test_server_error_exits_1(env: TabbyEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    env.faults.fail_next(5, status=500, detail="boom", path="/v1/model/draft/list")
    result = await run(capsys, "models", "draft", "list")
    assert result.code == common.EXIT_ERROR
    assert result.err.startswith("error: server error: 500 boom")


# --- usage errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "a command is required"),
        (["models"], "a command is required"),
        (["models", "embedding"], "a command is required"),
        (["models", "load"], "the following arguments are required: name"),
        (["models", "load", "a", "--rope-alpha", "fast"], "expected a number or 'auto'"),
        (["models", "load", "a", "--gpu-split", "20,x"], "expected numbers separated by commas"),
        (["models", "frobnicate"], "invalid choice"),
        (["models", "list", "--timeout", "-1"], "must be a number > 0"),
    ],
)
async def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    result = await run(capsys, *argv)
    assert result.code == common.EXIT_USAGE
    assert message in result.err


async def test_invalid_input_exits_2_before_sending(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(capsys, "models", "load", "alpha", "--cache-size", "1000")
    assert result.code == common.EXIT_USAGE
    assert result.err == (
        "error: invalid input: cache_size: must be a multiple of 256 tokens, got 1000\n"
    )
    result = await run(capsys, "models", "load", "alpha", "--draft-rope-scale", "2")
    assert result.code == common.EXIT_USAGE
    assert result.err == "error: --draft-rope-scale need --draft-model NAME\n"
    result = await run(capsys, "models", "load", "../etc")
    assert result.code == common.EXIT_USAGE
    result = await run(capsys, "models", "list", "--url", "ftp://example.org")
    assert result.code == common.EXIT_USAGE
    assert not any(r.path == "/v1/model/load" for r in env.requests)


async def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    result = await run(capsys, "--help")
    assert result.code == 0
    assert "exit codes:" in result.out
    for code in ("0", "1", "2", "3", "4", "5", "6", "130"):
        assert f"\n  {code} " in result.out


# --- unload, download, embeddings --------------------------------------------------------


async def test_unload(env: TabbyEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    env.preload("alpha")
    result = await run(capsys, "models", "unload")
    assert (result.code, result.out) == (0, "unloaded the model\n")
    assert env.loaded is None
    env.preload("alpha")
    result = await run(capsys, "models", "unload", "--json")
    assert (result.code, result.out) == (0, "null\n")


async def test_download_with_token_from_the_environment(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "hf_secret_token_123456"
    monkeypatch.setenv("HF_TOKEN", token)
    result = await run(
        capsys,
        "models",
        "download",
        "org/new-model",
        "--include",
        "*.json",
        "--include",
        "*.safetensors",
        "--exclude",
        "*.bin",
        "--revision",
        "main",
    )
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].startswith("downloading org/new-model")
    assert result.out.splitlines()[-1].startswith("downloaded org/new-model to models/new-model")
    assert_no_secrets(result, token)
    [request] = [r for r in env.requests if r.path == "/v1/download"]
    assert request.json() == {
        "repo_id": "org/new-model",
        "revision": "main",
        "token": "<redacted>",  # the emulator redacts what it records: a token was sent
        "include": ["*.json", "*.safetensors"],
        "exclude": ["*.bin"],
    }
    assert "new-model" in env.models


async def test_download_json_and_failure(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run(
        capsys, "models", "download", "org/new-model", "--folder-name", "nm", "--json"
    )
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"download_path": "models/nm"}
    assert result.err == ""
    [request] = [r for r in env.requests if r.path == "/v1/download"]
    assert "token" not in request.json()

    result = await run(capsys, "models", "download", "org/unknown", "--hf-token", "hf_zzz")
    assert result.code == common.EXIT_ERROR
    assert "Name or service not known" in result.err
    assert_no_secrets(result, "hf_zzz")


async def test_embedding_workflow(env: TabbyEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    result = await run(capsys, "models", "embedding", "get")
    assert result.code == common.EXIT_NOT_LOADED
    assert result.err.startswith("error: no embedding model is loaded")

    result = await run(capsys, "models", "embedding", "load", "embed-a", "--device", "cpu")
    assert result.code == 0, result.err
    assert result.out.startswith("loaded embedding model 'embed-a' (1/1 modules)")
    [request] = [r for r in env.requests if r.path == "/v1/model/embedding/load"]
    assert request.json() == {"embedding_model_name": "embed-a", "embeddings_device": "cpu"}

    result = await run(capsys, "models", "embedding", "list")
    assert result.out.split() == ["ID", "LOADED", "embed-a", "*"]
    result = await run(capsys, "models", "embedding", "get")
    assert result.out == "id:  embed-a\n"
    card = msgspec.json.decode(
        (await run(capsys, "models", "embedding", "get", "--json")).out, type=ModelCard
    )
    assert card.id == "embed-a"
    # The server refuses to load the loaded embedding model again: one clear line.
    result = await run(capsys, "models", "embedding", "load", "embed-a")
    assert result.code == common.EXIT_ERROR
    assert result.err == (
        "error: embedding model 'embed-a' is already loaded; nothing changed "
        "(unload it first to load it again)\n"
    )

    result = await run(capsys, "models", "embedding", "unload")
    assert (result.code, result.out) == (0, "unloaded the embedding model\n")
    assert env.loaded_embedding is None
    result = await run(capsys, "models", "embedding", "unload")
    assert result.code == common.EXIT_NOT_LOADED


# --- demo ------------------------------------------------------------------------------


async def test_demo_walks_the_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    result = await run(capsys, "demo")
    assert result.code == 0, result.err
    out = result.out
    for expected in (
        "await client.models.list()",
        "model  12/12 modules  finished",
        "loaded in ",
        "use_vision:       yes",
        "draft  4/4 modules  finished",  # the card never shows the draft: the stream does
        "n_ctx:          8192",
        "load_embedding: finished (1/1)",
        "ModelNotFoundError (code 'not_found')",
        "PermissionDeniedError (code 'permission_error')",
        "models.get() now raises ModelNotLoadedError",
        "done: the emulator is stopped.",
    ):
        assert expected in out
    assert result.err == ""


# --- command groups: an explicit list, each module imported only when chosen -------------


def fake_group(name: str, *, module: str | None = None, help_text: str = "a test group"):
    """A :data:`cli.GROUPS` entry for ``name`` (module ``fake_groups.<name>`` by default)."""
    return cli.CommandGroup(name, help_text, module or f"fake_groups.{name}")


async def test_a_group_from_the_list_adds_commands_and_shares_exit_codes(
    env: TabbyEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    async def status(args: argparse.Namespace) -> int:
        async with common.client_from_args(args) as client:
            print(len((await client.models.list()).ids))
            await client.models.get()  # nothing loaded: ModelNotLoadedError
        return 0

    def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        group = subparsers.add_parser("fleetish")
        group.set_defaults(group_parser=group)
        sub = group.add_subparsers()
        leaf = sub.add_parser("status", parents=[common.connection_options()])
        leaf.set_defaults(handler=status, command_name="fleetish status")

    module = types.ModuleType("fake_groups.fleetish")
    module.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_groups.fleetish", module)
    monkeypatch.setattr(cli, "GROUPS", (*cli.GROUPS, fake_group("fleetish")))
    result = await run(capsys, "fleetish", "status", "--url", env.url)
    assert result.out == "3\n"
    assert result.code == common.EXIT_NOT_LOADED


BROKEN_MODULES = {
    "raises": "raise RuntimeError('this group is broken on purpose')\n",
    "needs_k8s": "import kubernetes_is_not_installed_here\n",
    "no_register": "X = 1\n",
}


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("raises", RuntimeError),
        ("needs_k8s", ModuleNotFoundError),
        ("no_register", AttributeError),
    ],
)
async def test_a_broken_group_fails_loudly_and_the_others_still_work(
    name: str,
    error: type[Exception],
    env: TabbyEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
) -> None:
    # Before, a group module that failed to import became a warning and its
    # command vanished: `tabby-async fleet` then said "invalid choice".
    package = tmp_path / f"broken_{name}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / f"{name}.py").write_text(BROKEN_MODULES[name])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        cli, "GROUPS", (*cli.GROUPS, fake_group(name, module=f"broken_{name}.{name}"))
    )
    # Not imported for another command, and listed by --help all the same.
    result = await run(capsys, "models", "list", "--json")
    assert (result.code, result.err) == (0, "")
    result = await run(capsys, "--help")
    assert result.code == 0
    assert name in result.out.split() and "a test group" in result.out
    assert f"broken_{name}.{name}" not in sys.modules
    try:
        with pytest.raises(error):
            cli.main([name, "status"])
    finally:
        sys.modules.pop(f"broken_{name}.{name}", None)
        sys.modules.pop(f"broken_{name}", None)


def test_every_group_module_registers_exactly_the_commands_the_list_names() -> None:
    import argparse

    modules = {group.module for group in cli.GROUPS}
    assert len({group.name for group in cli.GROUPS}) == len(cli.GROUPS)
    for module in modules:
        parser = argparse.ArgumentParser()
        subparsers = parser.add_subparsers()
        importlib.import_module(module).register(subparsers)
        named = {group.name for group in cli.GROUPS if group.module == module}
        assert set(subparsers.choices) == named, module


def test_a_group_module_is_imported_only_when_its_command_runs() -> None:
    code = (
        "import sys\n"
        "from tabby_async import cli\n"
        "modules = {g.module for g in cli.GROUPS}\n"
        "assert cli.main(['--help']) == 0\n"
        "sys.stderr.write(f'{sorted(m for m in modules if m in sys.modules)}\\n')\n"
        "assert cli.main(['demo', '--help']) == 0\n"
        "sys.stderr.write(f'{sorted(m for m in modules if m in sys.modules)}\\n')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert proc.returncode == 0, proc.stderr
    # The top-level --help lists every group without importing one; a group's
    # own --help imports its module (the demo's uses the model commands' load).
    assert proc.stderr.splitlines() == [
        "[]",
        "['tabby_async.cli._emulator', 'tabby_async.cli._models']",
    ]
    assert "models" in proc.stdout and "usage: tabby-async demo" in proc.stdout


def modules_after(argv_list: list[list[str]], env: dict[str, str], prelude: str = "") -> str:
    """Run each ``main(argv)`` in a new interpreter; their exit codes and the fleet's modules."""
    code = (
        f"{prelude}\n"
        "import sys\n"
        "from tabby_async.cli import main\n"
        f"codes = [main(argv) for argv in {argv_list!r}]\n"
        "fleet = sorted(m for m in sys.modules if m.startswith(('tabby_async.fleet', "
        "'tabby_async.cli.fleet')))\n"
        "sys.stderr.write(f'RESULT {codes} {fleet}\\n')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    return proc.stderr.rsplit("RESULT ", 1)[-1].strip()


async def test_the_model_commands_never_import_the_fleet(server: TabbyEmulator) -> None:
    env = subprocess_env(server)
    commands = [["models", "list"], ["models", "load", "alpha"], ["models", "get", "--json"]]
    assert await asyncio.to_thread(modules_after, commands, env) == "[0, 0, 0] []"
    # The live display (rich) too: it once imported the fleet for a type name.
    live = "import tabby_async.cli._progress as p; p.live_display = lambda **_: True"
    commands = [["models", "load", "beta", "--json"]]
    assert await asyncio.to_thread(modules_after, commands, env, live) == "[0] []"


# --- real processes: entry point, signals, terminal --------------------------------------


def subprocess_env(server: TabbyEmulator | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["PYTHONUNBUFFERED"] = "1"
    if server is not None:
        env.update(
            TABBY_URL=server.url, TABBY_API_KEY=server.api_key, TABBY_ADMIN_KEY=server.admin_key
        )
    env.update(extra)
    return env


async def test_python_m_and_import_isolation() -> None:
    code = (
        "import sys, tabby_async\n"
        "heavy = ('tabby_async.cli', 'tabby_async.testing', 'rich')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(bad)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=subprocess.PIPE, env=subprocess_env()
    )
    out, _ = await proc.communicate()
    assert out.decode().strip() == "[]"

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tabby_async", "--version", stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out.decode().startswith("tabby-async ")


async def read_until(stream: asyncio.StreamReader, marker: str, timeout: float = 15.0) -> str:
    """Read lines until one contains ``marker``; everything read so far."""
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        line = await asyncio.wait_for(stream.readline(), deadline - time.monotonic())
        if not line:
            break
        seen += line.decode()
    assert marker in seen, f"{marker!r} never came; got {seen!r}"
    return seen


@posix_only
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_emulator_subcommand_serves_until_stopped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stop: signal.Signals
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tabby_async",
        "emulator",
        "--port",
        "0",
        "--models",
        "m1,m2",
        "--drafts",
        "d1",
        "--embeddings",
        "e1",
        "--modules",
        "2",
        "--delay",
        "0",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        banner = await read_until(proc.stdout, "tabby-async models list")
        info = dict(
            line.split(":", 1) for line in banner.splitlines() if line[:1].isalpha() and ":" in line
        )
        api_key, admin_key = info["api key"].strip(), info["admin key"].strip()
        assert info["models"].strip() == "m1, m2"
        (export,) = [line.strip() for line in banner.splitlines() if "export " in line]
        variables = export_variables(export)
        assert variables["TABBY_API_KEY"] == api_key
        assert variables["TABBY_ADMIN_KEY"] == admin_key
        url = variables["TABBY_URL"]

        monkeypatch.setenv("TABBY_URL", url)
        monkeypatch.setenv("TABBY_API_KEY", api_key)
        result = await run(capsys, "models", "list", "--json", "--admin-key", admin_key)
        assert msgspec.json.decode(result.out, type=ModelList).ids == ["m1", "m2"]
        result = await run(capsys, "models", "load", "m2", "--admin-key", admin_key)
        assert result.code == 0, result.err
        result = await run(capsys, "models", "get", "--json")  # the api key is enough
        assert msgspec.json.decode(result.out, type=ModelCard).id == "m2"
    finally:
        proc.send_signal(stop)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err
    assert out.decode().strip().endswith("emulator stopped")


@posix_only
async def test_ctrl_c_during_a_load_exits_130_and_the_server_finishes(
    server: TabbyEmulator,
) -> None:
    server.add_model(EmulatedModel("slow", modules=15, delay=0.1))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tabby_async",
        "models",
        "load",
        "slow",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(server),
    )
    assert proc.stdout is not None
    seen = await read_until(proc.stdout, " 2/15 modules")
    assert "processing" in seen
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == common.EXIT_INTERRUPTED
    assert err.decode().strip().splitlines() == [
        "interrupted: stopped following the load of 'slow'; the server may finish the load "
        "on its own (check with `tabby-async models get`)"
    ]
    assert "finished" not in (seen + out.decode())
    # The SDK closed the stream; the load goes on on the server and completes.
    for _ in range(100):
        if server.loaded == "slow":
            break
        await asyncio.sleep(0.05)
    assert server.loaded == "slow"


#: Variables that change how rich treats a terminal; the terminal tests drop them.
RICH_ENV = ("TTY_INTERACTIVE", "TTY_COMPATIBLE", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")


def run_in_terminal(argv: list[str], env: dict[str, str], prelude: str = "") -> str:
    """Run the CLI with a pseudo-terminal as stdout; everything it wrote there."""
    import pty  # POSIX only

    master, slave = pty.openpty()
    code = f"{prelude}\nimport sys\nfrom tabby_async.cli import main\nsys.exit(main({argv!r}))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=slave,
        stderr=subprocess.PIPE,
        env={
            **{k: v for k, v in env.items() if k not in RICH_ENV},
            "TERM": "xterm-256color",
            "COLUMNS": "120",
        },
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(10) == 0, proc.stderr.read() if proc.stderr else ""
    if proc.stderr is not None:
        proc.stderr.close()
    return b"".join(chunks).decode(errors="replace")


@posix_only
async def test_load_on_a_terminal_shows_live_bars(server: TabbyEmulator) -> None:
    server.add_model(EmulatedModel("bars", modules=6, delay=0.05, vision_modules=2))
    output = await asyncio.to_thread(
        run_in_terminal, ["models", "load", "bars", "--vision"], subprocess_env(server)
    )
    assert "\x1b[" in output  # live redrawing
    assert "6/6" in output and "2/2" in output
    assert "modules/s" in output
    assert "loaded 'bars' in " in output
    assert "processing" not in output  # not the plain lines


@posix_only
async def test_download_on_a_terminal_shows_a_spinner_with_the_elapsed_time() -> None:
    async with TabbyEmulator(downloadable={"org/slow-repo": 0.6}) as server:
        output = await asyncio.to_thread(
            run_in_terminal, ["models", "download", "org/slow-repo"], subprocess_env(server)
        )
    assert "downloading org/slow-repo (the server reports no progress)" in output
    assert "0:00:00" in output  # rich's elapsed-time column
    assert "\x1b[" in output
    assert "downloaded org/slow-repo to models/slow-repo in " in output


@posix_only
async def test_without_rich_a_terminal_gets_plain_lines(server: TabbyEmulator) -> None:
    server.add_model(EmulatedModel("plain", modules=2))
    output = await asyncio.to_thread(
        run_in_terminal,
        ["models", "load", "plain"],
        subprocess_env(server),
        "import sys; sys.modules['rich'] = None",
    )
    lines = [line.split()[:4] for line in output.replace("\r", "").splitlines()]
    assert lines[:3] == [
        ["model", "1/2", "modules", "processing"],
        ["model", "2/2", "modules", "processing"],
        ["model", "2/2", "modules", "finished"],
    ]
