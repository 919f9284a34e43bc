"""Every script in ``examples/`` runs against the emulator and prints what it should.

The scripts run as subprocesses with ``TABBY_URL``/``TABBY_API_KEY``/
``TABBY_ADMIN_KEY`` set, exactly as a user would run them. The two web apps
are imported and served in-process: FastAPI through httpx's ASGI transport
(with its lifespan entered by hand), aiohttp through its test server on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tabby_async.testing import EmulatedModel, TabbyEmulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV_NAMES = ("TABBY_URL", "TABBY_API_KEY", "TABBY_ADMIN_KEY", "HF_TOKEN")


pytestmark = pytest.mark.emulator(
    models=[
        EmulatedModel("alpha", modules=3, delay=0.05),
        EmulatedModel("beta", modules=2),
        EmulatedModel("broken", modules=3, fail_at=1, fail_message="no config.json"),
    ],
    drafts=[EmulatedModel("tiny-draft", modules=2)],
    embeddings=["embed-a", "embed-b"],
    downloadable={"org/fresh-model": 0.05},
)


@pytest.fixture
def tabby_env(server: TabbyEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """TABBY_* for the emulator, in this process (for the web apps) and for subprocesses."""
    values = {
        "TABBY_URL": server.url,
        "TABBY_API_KEY": server.api_key,
        "TABBY_ADMIN_KEY": server.admin_key,
    }
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


class Run(msgspec.Struct):
    code: int
    out: str
    err: str


async def run_example(script: str, *args: str, env: dict[str, str]) -> Run:
    base = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**base, **env, "PYTHONUNBUFFERED": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


# --- the scripts --------------------------------------------------------------------


async def test_list_models(server: TabbyEmulator, tabby_env: dict[str, str]) -> None:
    result = await run_example("list_models.py", env=tabby_env)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "3 models:",
        "  alpha",
        "  beta",
        "  broken",
        "1 draft models:",
        "  tiny-draft",
    ]


async def test_current_model(server: TabbyEmulator, tabby_env: dict[str, str]) -> None:
    api_only = {k: v for k, v in tabby_env.items() if k != "TABBY_ADMIN_KEY"}
    result = await run_example("current_model.py", env=api_only)
    assert (result.code, result.out) == (1, "no model is loaded\n")

    server.preload("alpha", max_seq_len=2048, draft_model={"draft_model_name": "tiny-draft"})
    result = await run_example("current_model.py", env=api_only)
    assert result.code == 0, result.err
    lines = dict(line.split(":", 1) for line in result.out.splitlines())
    assert {k: v.strip() for k, v in lines.items()} == {
        "model": "alpha",
        "max_seq_len": "2048",
        "cache_mode": "FP16",
        "rope_alpha": "1.0",
        "total_slots": "1",
        "context (n_ctx)": "2048",
    }


async def test_load_model(server: TabbyEmulator, tabby_env: dict[str, str]) -> None:
    result = await run_example("load_model.py", "beta", "1024", env=tabby_env)
    assert result.code == 0, result.err
    first, second = result.out.splitlines()
    assert first.startswith("model finished (2/2 modules, ")
    assert second == "loaded beta: max_seq_len=1024 cache_mode=Q8"
    assert server.loaded == "beta"

    result = await run_example("load_model.py", env=tabby_env)
    assert result.code == 1
    assert "usage: load_model.py MODEL_NAME" in result.err


async def test_load_progress_with_a_draft(server: TabbyEmulator, tabby_env: dict[str, str]) -> None:
    result = await run_example("load_progress.py", "alpha", "tiny-draft", env=tabby_env)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "draft  [##########          ] 1/2 processing",
        "draft  [####################] 2/2 processing",
        "draft  [####################] 2/2 finished",
        "model  [######              ] 1/3 processing",
        "model  [#############       ] 2/3 processing",
        "model  [####################] 3/3 processing",
        "model  [####################] 3/3 finished",
        "ready",
    ]
    assert (server.loaded, server.loaded_draft) == ("alpha", "tiny-draft")


async def test_load_progress_reports_a_failed_load(
    server: TabbyEmulator, tabby_env: dict[str, str]
) -> None:
    result = await run_example("load_progress.py", "broken", env=tabby_env)
    assert result.code == 1
    assert result.out.splitlines() == [
        "model  [######              ] 1/3 processing",
        "load failed: no config.json",
    ]


async def test_download(server: TabbyEmulator, tabby_env: dict[str, str]) -> None:
    token = "hf_example_secret_42"
    env = {**tabby_env, "HF_TOKEN": token}
    result = await run_example("download.py", "org/fresh-model", "fresh", env=env)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "downloading org/fresh-model ..."
    assert lines[-1].startswith("saved to models/fresh in ")
    assert token not in result.out + result.err
    [request] = [r for r in server.requests if r.path == "/v1/download"]
    body = request.json()
    assert body["repo_id"] == "org/fresh-model"
    assert body["folder_name"] == "fresh"
    assert body["token"] == "<redacted>"  # sent (the emulator hides it in its record)
    assert "fresh" in server.models

    result = await run_example("download.py", "org/not-there", env=tabby_env)
    assert result.code == 1
    assert "download failed: 400 [Errno -2] Name or service not known" in result.out


async def test_embeddings(server: TabbyEmulator, tabby_env: dict[str, str]) -> None:
    result = await run_example("embeddings.py", "embed-b", env=tabby_env)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "embedding models: embed-a, embed-b",
        "loaded before: (none)",
        "load embed-b: finished (1/1)",
        "loaded now: embed-b",
        "after unload: No embedding models are currently loaded.",
    ]
    [load] = [r for r in server.requests if r.path == "/v1/model/embedding/load"]
    assert load.json() == {"embedding_model_name": "embed-b", "embeddings_device": "cpu"}
    assert server.loaded_embedding is None


async def test_error_handling_switch(server: TabbyEmulator, tabby_env: dict[str, str]) -> None:
    result = await run_example("error_handling.py", env=tabby_env)
    assert result.code == 0, result.err
    codes = {
        line.split("->")[0].strip(): line.split("->")[1].split()[0]
        for line in result.out.splitlines()
    }
    assert codes == {
        "unload with only the api key": "permission_error",
        "load a model that does not exist": "not_found",
        "download a repo that does not exist": "invalid_request",
        "load with a bad cache size": "invalid_input",
        "get the loaded model": "model_not_loaded",
    }
    assert "needs the admin key" in result.out
    assert "refused before sending: cache_size" in result.out
    # None of the provoked errors changed the server.
    assert not any(r.path == "/v1/model/load" and b'"m"' in r.body for r in server.requests)
    assert server.loaded is None


async def test_demo_script() -> None:
    result = await run_example("demo.py", env={})
    assert result.code == 0, result.err
    assert "ModelNotFoundError" in result.out
    assert result.out.rstrip().endswith("done: the emulator is stopped.")


# --- the web apps ---------------------------------------------------------------------


def load_module(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a private module name."""
    module_name = f"_tabby_example_{name}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pydantic resolves annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fastapi_module() -> Iterator[ModuleType]:
    module = load_module("fastapi_app")
    yield module
    sys.modules.pop(module.__name__, None)


def parse_sse(text: str) -> list[tuple[str, object]]:
    """``[(event, data), ...]`` of a ``text/event-stream`` body."""
    frames = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        frames.append((fields["event"], json.loads(fields["data"])))
    return frames


EXPECTED_ALPHA_LOAD = [
    ("progress", {"model_type": "model", "module": 1, "modules": 3, "status": "processing"}),
    ("progress", {"model_type": "model", "module": 2, "modules": 3, "status": "processing"}),
    ("progress", {"model_type": "model", "module": 3, "modules": 3, "status": "processing"}),
    ("progress", {"model_type": "model", "module": 3, "modules": 3, "status": "finished"}),
    ("done", {"model_name": "alpha"}),
]


async def test_fastapi_app(
    server: TabbyEmulator, tabby_env: dict[str, str], fastapi_module: ModuleType
) -> None:
    app = fastapi_module.app
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://example"
        ) as http,
    ):
        response = await http.get("/models")
        assert response.status_code == 200
        assert response.json() == {"models": ["alpha", "beta", "broken"], "loaded": None}

        response = await http.post("/models/load", json={"model_name": "alpha", "max_seq_len": 512})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert parse_sse(response.text) == EXPECTED_ALPHA_LOAD
        assert server.loaded == "alpha"
        response = await http.get("/models")
        assert response.json()["loaded"] == "alpha"

        # Failures inside the stream arrive as an error event.
        response = await http.post("/models/load", json={"model_name": "broken"})
        frames = parse_sse(response.text)
        assert frames[-1] == ("error", {"code": "load_failed", "message": "no config.json"})

        # Failures before the stream are HTTP errors.
        response = await http.post("/models/load", json={"model_name": "nope"})
        assert response.status_code == 404
        assert "Could not find the model path" in response.json()["detail"]
        response = await http.post("/models/load", json={"model_name": "../etc"})
        assert response.status_code == 422

    loads = [r for r in server.requests if r.path == "/v1/model/load"]
    assert loads[0].json() == {"model_name": "alpha", "max_seq_len": 512}
    # The lifespan closed the app's client.
    assert fastapi_module.app.state.tabby.closed


async def test_aiohttp_app(server: TabbyEmulator, tabby_env: dict[str, str]) -> None:
    module = load_module("aiohttp_app")
    try:
        app = module.make_app()
        async with (
            TestServer(app, host="127.0.0.1") as test_server,
            TestClient(test_server) as http,
        ):
            response = await http.get("/models")
            assert response.status == 200
            assert await response.json() == {"models": ["alpha", "beta", "broken"], "loaded": None}

            response = await http.post("/models/load", json={"model_name": "alpha"})
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            # Read it as it streams: the first event comes before the load ends.
            first = await response.content.readuntil(b"\n\n")
            assert first.startswith(b"event: progress\n")
            assert server.is_loading  # relayed live, not buffered until the end
            rest = await response.content.read()
            assert parse_sse((first + rest).decode()) == EXPECTED_ALPHA_LOAD

            response = await http.post("/models/load", json={"model_name": "broken"})
            frames = parse_sse(await response.text())
            assert frames[-1] == ("error", {"code": "load_failed", "message": "no config.json"})

            response = await http.post("/models/load", json={"model_name": "nope"})
            assert response.status == 404
            assert (await response.json())["code"] == "not_found"
            response = await http.post("/models/load", data=b"not json")
            assert response.status == 422
            client = app[module.TABBY]
        assert client.closed  # cleanup_ctx closed it at shutdown
    finally:
        sys.modules.pop(module.__name__, None)
    assert server.loaded is None  # "broken" unloaded alpha, then failed
