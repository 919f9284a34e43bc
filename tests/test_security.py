"""Secrets, origins and TLS: keys and tokens never leak, and go only where set."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from tabby_async import (
    APIStatusError,
    AsyncTabbyClient,
    DownloadRequest,
    InvalidInputError,
    TabbyConnectionError,
    TabbyError,
    Timeout,
    UnprocessableEntityError,
)
from tabby_async import _routes as R
from tabby_async._checks import redact_url
from tabby_async._mapping import status_error, translate_exception
from tabby_async.cli import main as cli_main
from tabby_async.fleet import NodeSpec, read_nodes_toml
from tabby_async.fleet._config import parse_nodes
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tests.helpers import reachable_text, serve_app

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


def _redirecting_app(target: str, seen: list[dict[str, str]]) -> web.Application:
    """An app that answers every request with a redirect to ``target``, noting its headers."""

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        raise web.HTTPTemporaryRedirect(target + request.path)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


async def test_keys_are_not_carried_across_a_redirect() -> None:
    seen: list[dict[str, str]] = []
    other_seen: list[dict[str, str]] = []
    async with serve_app(_redirecting_app("http://127.0.0.1:9", other_seen)) as other_url:
        target = other_url.replace("127.0.0.1", "localhost")
        async with (
            serve_app(_redirecting_app(target, seen)) as url,
            AsyncTabbyClient(url, api_key=API_KEY, admin_key=ADMIN_KEY) as client,
        ):
            with pytest.raises(APIStatusError) as info:
                await client.models.list()
            with pytest.raises(APIStatusError):
                await client.models.load(model_name="alpha")
        assert info.value.status == 307
        assert "redirect" in info.value.message
        assert len(seen) == 2
        assert other_seen == []  # the redirect was never followed


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
    async with serve_app(app, ssl_context=context) as url:
        yield url


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


# --- what an error lets reach -------------------------------------------------------


def _aiohttp_error_with_keys() -> aiohttp.ClientResponseError:
    headers = CIMultiDictProxy(CIMultiDict({"x-admin-key": ADMIN_KEY, "x-api-key": API_KEY}))
    url = URL("http://127.0.0.1:5000/v1/model/load")
    info = aiohttp.RequestInfo(url, "POST", headers, url)
    return aiohttp.ClientResponseError(info, (), status=400, message="Bad status line")


def test_the_chain_walk_finds_a_key_held_by_a_cause_or_context() -> None:
    # The helper the leak tests rely on must see what the original bug exposed:
    # aiohttp's error, with the request headers, as the cause or context.
    raw = _aiohttp_error_with_keys()
    for link in ("__cause__", "__context__"):
        err = TabbyConnectionError("POST /v1/model/load: bad HTTP answer")
        setattr(err, link, raw)
        assert ADMIN_KEY in reachable_text(err) and API_KEY in reachable_text(err)
    wrapped = TabbyError("x")
    wrapped.detail = {"nested": [raw]}  # type: ignore[attr-defined]
    assert ADMIN_KEY in reachable_text(wrapped)


def test_translate_exception_scrubs_the_request_headers() -> None:
    raw = _aiohttp_error_with_keys()
    mapped = translate_exception(raw, R.LOAD, Timeout(total=1), got_head=False)
    assert isinstance(mapped, TabbyConnectionError)
    assert mapped.__cause__ is None and mapped.__context__ is None
    # Even a caller that keeps aiohttp's error (as a cause of its own) holds no key.
    assert ADMIN_KEY not in reachable_text(raw) and API_KEY not in reachable_text(raw)
    assert raw.request_info.url.path == "/v1/model/load"  # the rest stays


# --- secrets in URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("http://10.0.0.1:5000", "http://10.0.0.1:5000"),
        ("http://admin:S3CRET-PW@10.0.0.1:5000/x", "http://***@10.0.0.1:5000/x"),
        ("admin:S3CRET-PW@10.0.0.1:5000", "***@10.0.0.1:5000"),
        ("http://h:5000/?token=S3CRET", "http://h:5000/?***"),
        ("http://h:5000/#S3CRET", "http://h:5000/?***"),
        ("http://u:pa?S3CRET@h:5000", "http://***"),
        ("http://h/?mail=a@b&key=S3CRET", "http://***"),
        ("http://u:a://S3CRET@h", "http://***@h"),
        ("", ""),
    ],
)
def test_redact_url(given: str, shown: str) -> None:
    assert redact_url(given) == shown


BAD_URLS = [
    "admin:S3CRET-PW@10.0.0.1:5000",
    "http://admin:S3CRET-PW@10.0.0.1:5000",
    "http://10.0.0.1:5000/?token=S3CRET",
    "http://u:S3CRET@[::1",
    "http://u:S3CRET@host:abc",
    "ftp://10.0.0.1/?k=S3CRET",
    "http://u:pa?S3CRET@host:5000",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_no_url_secret_in_any_message(url: str) -> None:
    texts: list[str] = []
    for make in (
        lambda: AsyncTabbyClient(url),
        lambda: NodeSpec(name="n", url=url),
        lambda: parse_nodes({"nodes": [{"name": "n", "url": url}]}),
    ):
        try:
            texts.append(repr(make()))
        except InvalidInputError as err:
            assert err.field in ("base_url", "nodes[0].url")
            texts.append(reachable_text(err))
    assert not [t for t in texts if "S3CRET" in t]


def test_a_redirect_target_is_shown_without_its_query() -> None:
    err = status_error(
        302,
        b"",
        R.LIST,
        has_admin_key=True,
        headers={"Location": "https://sso.example/login?ticket=S3CRET"},
    )
    assert "https://sso.example/login" in str(err)
    assert "S3CRET" not in str(err)


MALFORMED = ["http://host:abc", "http://[::1", "http://host:99999", "http://host:0", "http://"]


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_url_is_invalid_input_naming_base_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        AsyncTabbyClient(url)
    assert info.value.field == "base_url"
    with pytest.raises(InvalidInputError):
        NodeSpec(name="n", url=url)
    nodes = tmp_path / "nodes.toml"
    nodes.write_text(f'[[nodes]]\nname = "n"\nurl = "{url}"\n')
    with pytest.raises(InvalidInputError):
        read_nodes_toml(nodes)


@pytest.mark.parametrize("url", MALFORMED)
def test_the_cli_says_a_malformed_url_on_one_line(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = tmp_path / "nodes.toml"
    nodes.write_text(f'[[nodes]]\nname = "n"\nurl = "{url}"\n')
    for argv in (["--url", url, "models", "list"], ["fleet", "status", "--nodes", str(nodes)]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: invalid input: ") and err.count("\n") == 1
        assert "Traceback" not in err


# --- keys, headers and limits: refused when the client is built --------------------------

CONTROL_CHARS = ["\x01", "\x7f", "\r\n", "\n", "\x00", "\x1b"]


@pytest.mark.parametrize("char", CONTROL_CHARS)
def test_keys_with_control_characters_are_refused_without_echo(char: str) -> None:
    for name in ("api_key", "admin_key"):
        with pytest.raises(InvalidInputError) as info:
            AsyncTabbyClient(**{name: f"SECRET{char}tail"})  # type: ignore[arg-type]
        assert info.value.field == name
        assert "SECRET" not in reachable_text(info.value)
    with pytest.raises(InvalidInputError):
        NodeSpec(name="n", url="http://h:1", admin_key=f"SECRET{char}tail")


@pytest.mark.parametrize("char", CONTROL_CHARS)
def test_header_values_with_control_characters_are_refused_without_echo(char: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        AsyncTabbyClient(headers={"X-Team": f"SECRET{char}tail"})
    assert info.value.field == "headers['X-Team']"
    assert "SECRET" not in reachable_text(info.value)


def test_header_names_and_value_types_are_checked() -> None:
    for headers in ({"Bad Name": "v"}, {"X:Y": "v"}, {"": "v"}, {"X-N": 1}):
        with pytest.raises(InvalidInputError, match="headers"):
            AsyncTabbyClient(headers=headers)  # type: ignore[arg-type]
    client = AsyncTabbyClient(headers={"X-Trace": "a\tb"})  # a tab is a valid value
    assert "<set>" not in repr(client)


@pytest.mark.parametrize("limit", [-1, -100, "2", 2.0, True, None])
def test_a_bad_connection_limit_is_refused(limit: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        AsyncTabbyClient(connection_limit=limit)  # type: ignore[arg-type]
    assert info.value.field == "connection_limit"


async def test_connection_limit_zero_means_no_limit() -> None:
    async with TabbyEmulator(models=["alpha"]) as server:
        async with AsyncTabbyClient(server.url, connection_limit=0) as client:
            results = await asyncio.gather(*(client.health() for _ in range(20)))
        assert all(r.healthy for r in results)


def test_a_validation_answer_does_not_keep_the_echoed_token() -> None:
    # The server's 422 entries echo the input; for a download that is the token.
    body = (
        b'{"detail":[{"type":"missing","loc":["body","revision"],"msg":"Field required",'
        b'"input":{"repo_id":"org/x","token":"' + HF_TOKEN.encode() + b'"}}]}'
    )
    err = status_error(422, body, R.DOWNLOAD, has_admin_key=True)
    assert isinstance(err, UnprocessableEntityError)
    assert err.errors == [{"type": "missing", "loc": ["body", "revision"], "msg": "Field required"}]
    assert "revision: Field required" in err.message
    assert HF_TOKEN not in reachable_text(err)
