"""Secrets, origins and TLS: keys and tokens never leak, and go only where set."""

from __future__ import annotations

import logging
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tabby_async import (
    APIStatusError,
    AsyncTabbyClient,
    DownloadRequest,
    TabbyConnectionError,
    TabbyError,
)
from tabby_async.testing import EmulatedModel, TabbyEmulator

API_KEY = "api-key-SECRET-aaaa"
ADMIN_KEY = "admin-key-SECRET-bbbb"
HF_TOKEN = "hf_SECRET_cccc"


async def test_no_secret_in_any_repr_error_log_or_recorded_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, not only ours
    texts: list[str] = []
    async with TabbyEmulator(
        models=["alpha", EmulatedModel(name="bad", fail_at=1)],
        embeddings=["e"],
        api_key=API_KEY,
        admin_key=ADMIN_KEY,
        downloadable={"org/tiny": 0.0},
    ) as server:
        admin = AsyncTabbyClient(server.url, api_key=API_KEY, admin_key=ADMIN_KEY)
        reader = AsyncTabbyClient(server.url, api_key=API_KEY)
        wrong = AsyncTabbyClient(server.url, api_key=API_KEY + "x", admin_key=ADMIN_KEY + "x")
        request = DownloadRequest(repo_id="org/tiny", token=HF_TOKEN)
        texts += [repr(admin), str(admin), repr(request), str(request)]
        texts.append(repr(request.__rich_repr__()))
        await admin.models.download(request)
        stream = admin.models.load_stream(model_name="alpha")
        texts.append(repr(stream))
        async with stream:
            texts += [repr(e) async for e in stream]
        calls = [
            reader.models.unload(),
            wrong.models.list(),
            wrong.models.unload(),
            wrong.models.download(request),
            reader.models.download(request),
            admin.models.download(DownloadRequest(repo_id="org/unknown", token=HF_TOKEN)),
            admin.models.load(model_name="bad"),
            admin.models.load(model_name="missing"),
        ]
        for call in calls:
            with pytest.raises(TabbyError) as info:
                await call
            err = info.value
            texts += [str(err), repr(err), repr(err.args), repr(getattr(err, "body", None))]
            texts.append(repr(err.__cause__) + repr(err.__context__))
        for client in (admin, reader, wrong):
            await client.aclose()
        for record in server.requests:
            texts += [repr(record), repr(record.headers), repr(record.body)]
    texts += [r.getMessage() for r in caplog.records]
    assert any("/v1/download" in t for t in texts)
    assert len(caplog.records) > 0
    leaks = [t for t in texts if "SECRET" in t]
    assert leaks == []


async def _redirecting_server(target: str) -> tuple[web.AppRunner, str, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        raise web.HTTPTemporaryRedirect(target + request.path)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", seen


async def test_keys_are_not_carried_across_a_redirect() -> None:
    other_runner, other_url, other_seen = await _redirecting_server("http://127.0.0.1:9")
    runner, url, seen = await _redirecting_server(other_url.replace("127.0.0.1", "localhost"))
    try:
        async with AsyncTabbyClient(url, api_key=API_KEY, admin_key=ADMIN_KEY) as client:
            with pytest.raises(APIStatusError) as info:
                await client.models.list()
            with pytest.raises(APIStatusError):
                await client.models.load(model_name="alpha")
        assert info.value.status == 307
        assert "redirect" in info.value.message
        assert len(seen) == 2
        assert other_seen == []  # the redirect was never followed
    finally:
        await runner.cleanup()
        await other_runner.cleanup()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_url(certificate: tuple[Path, Path]) -> AsyncIterator[str]:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "issues": []})

    app = web.Application()
    app.router.add_get("/health", health)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_tls_is_verified_by_default(tls_url: str, certificate: tuple[Path, Path]) -> None:
    async with AsyncTabbyClient(tls_url, max_retries=0) as client:
        with pytest.raises(TabbyConnectionError, match=r"(?i)certificate"):
            await client.health()
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    async with AsyncTabbyClient(tls_url, ssl=trusted) as client:
        assert (await client.health()).healthy


async def test_ssl_false_warns_and_skips_verification(tls_url: str) -> None:
    with pytest.warns(UserWarning, match="not verified"):
        client = AsyncTabbyClient(tls_url, ssl=False)
    async with client:
        assert (await client.health()).healthy


def test_keys_cannot_be_smuggled_in_headers() -> None:
    with pytest.raises(TabbyError, match=r"(?i)x-api-key") as info:
        AsyncTabbyClient(headers={"X-Api-Key": API_KEY})
    assert API_KEY not in str(info.value)
    with pytest.raises(TabbyError, match="api_key"):
        AsyncTabbyClient(api_key="two\nlines")
