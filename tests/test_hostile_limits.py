"""Hostile servers against the client's limits: answer sizes, and keys echoed back.

Raw asyncio servers on 127.0.0.1 send what no real server does: a body without
end (plain, chunked, or behind a Content-Length of a terabyte), a gzip bomb, an
endless error body, an endless SSE line; and answers that echo the request,
keys included, into a plain-text 502, a JSON detail, a 422, a WAF page, a
redirect, a broken header and a load stream's error frame. Memory is measured
with tracemalloc (the peak, never the time taken).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import msgspec
import pytest

from tabby_async import (
    AsyncTabbyClient,
    DownloadRequest,
    InvalidInputError,
    ResponseDecodeError,
    ResponseTooLargeError,
    ServerError,
    StreamError,
    TabbyError,
)
from tabby_async._mapping import Redactor, decode, status_error
from tabby_async._routes import LIST, PERMISSION
from tests.helpers import (
    ConnectionCounter,
    RawHandler,
    guarded,
    raw_server,
    reachable_text,
    run_cli,
)

API_KEY = "api-key-SECRET-aaaa"
ADMIN_KEY = "admin-key-SECRET-bbbb"
HF_TOKEN = "hf_SECRET_cccc"
SECRETS = (API_KEY, ADMIN_KEY, HF_TOKEN)
DEFAULT_CAP = 16 << 20
LINE_CAP = 1 << 20
PIECE = b"x" * 65536
PERMISSION_ANSWER = b'{"permission":"admin"}'


class Request:
    """One request a raw server read: its method, path, head and body."""

    def __init__(self, head: bytes, body: bytes) -> None:
        self.head = head
        self.body = body
        self.method, self.path, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)

    def header(self, name: str) -> str:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.encode():
                return value.strip().decode()
        return ""

    @property
    def echo(self) -> str:
        """The whole request, as a server that reflects it would show it."""
        return (self.head + self.body).decode()


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on a connection; None once the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request = Request(head, b"")
    length = request.header("content-length")
    if length:
        request.body = await reader.readexactly(int(length))
    return request


def answer(status: int, body: bytes, content_type: str = "application/json", *extra: str) -> bytes:
    """A whole HTTP/1.1 answer with its Content-Length (the connection stays open)."""
    head = [f"HTTP/1.1 {status} Whatever", f"Content-Type: {content_type}", *extra]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


Route = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


def serving(route: Route) -> RawHandler:
    """A raw handler answering each request of a connection with ``route``.

    ``route`` writes the answer and says whether the connection may serve
    another request; ``/v1/auth/permission`` always gets a plain good answer,
    to show the client is still usable after a hostile one.
    """

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            if request.path == "/v1/auth/permission":
                writer.write(answer(200, PERMISSION_ANSWER))
                await writer.drain()
            elif not await route(request, writer):
                return

    return handler


async def send_forever(writer: asyncio.StreamWriter, piece: bytes) -> bool:
    """Write ``piece`` until the client hangs up (the write then raises)."""
    while True:
        writer.write(piece)
        await writer.drain()


@functools.cache
def gzip_bomb() -> bytes:
    """256 MiB of zeros, gzip-compressed to about 256 KiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join([*(packer.compress(zeros) for _ in range(256)), packer.flush()])


async def send_in_pieces(writer: asyncio.StreamWriter, data: bytes) -> None:
    for start in range(0, len(data), 16384):
        writer.write(data[start : start + 16384])
        await writer.drain()


async def hostile(request: Request, writer: asyncio.StreamWriter) -> bool:
    """The oversized answers, by path (and, for /health, by a header that picks the framing)."""
    if request.path == "/health":  # (a) an endless body
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        framing = request.header("x-framing")
        if framing == "chunked":
            writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
            return await send_forever(writer, b"%x\r\n%s\r\n" % (len(PIECE), PIECE))
        if framing == "lying-length":  # a terabyte, said up front
            writer.write(b"Content-Length: 1099511627776\r\n\r\n")
        else:
            writer.write(b"Connection: close\r\n\r\n")
        return await send_forever(writer, PIECE)
    if request.path == "/v1/model/list":  # (b) a gzip bomb
        bomb = gzip_bomb()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n" % len(bomb)
        )
        await send_in_pieces(writer, bomb)
        return True
    if request.path == "/v1/model":  # (c) an endless error body
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n")
        return await send_forever(writer, PIECE)
    if request.path == "/v1/model/load":  # (d) one endless SSE line
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: ")
        return await send_forever(writer, PIECE)
    writer.write(answer(404, b'{"detail":"Not Found"}'))
    return True


@pytest.fixture
async def hostile_url() -> AsyncIterator[str]:
    async with raw_server(serving(hostile)) as url:
        yield url


Call = Callable[[AsyncTabbyClient], Awaitable[object]]

#: Each oversized answer: the call that meets it, the cap it passes, the framing asked for.
OVERSIZED: dict[str, tuple[Call, int, str]] = {
    "(a) endless body": (lambda c: c.health(), DEFAULT_CAP, "until-close"),
    "(a) endless chunked body": (lambda c: c.health(), DEFAULT_CAP, "chunked"),
    "(b) gzip bomb": (lambda c: c.models.list(), DEFAULT_CAP, ""),
    "(c) endless 500 body": (lambda c: c.models.get(), DEFAULT_CAP, ""),
    "(d) endless SSE line": (lambda c: c.models.load(model_name="m"), LINE_CAP, ""),
}


@pytest.mark.parametrize("kind", list(OVERSIZED))
async def test_an_oversized_answer_stops_at_the_cap_in_bounded_memory(
    kind: str, hostile_url: str, connections: ConnectionCounter
) -> None:
    call, cap, framing = OVERSIZED[kind]
    gzip_bomb()  # made before measuring: the server's bytes are not the client's
    headers = {"x-framing": framing}
    async with AsyncTabbyClient(hostile_url, admin_key=ADMIN_KEY, headers=headers) as client:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            with pytest.raises(ResponseTooLargeError) as info:
                await guarded(call(client))
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        err = info.value
        assert err.code == "response_too_large" and err.limit == cap
        assert isinstance(err, ResponseDecodeError) and isinstance(err, StreamError)
        assert "cap" in str(err)
        assert peak < 4 * cap, f"{peak} bytes at the peak for a {cap} bytes cap"
        assert connections.held == 0
        assert (await guarded(client.permission())).permission == "admin"  # still usable
    assert connections.held == 0


async def test_a_content_length_over_the_cap_is_refused_unread(
    hostile_url: str, connections: ConnectionCounter
) -> None:
    headers = {"x-framing": "lying-length"}
    async with AsyncTabbyClient(hostile_url, headers=headers, max_response_bytes=1 << 20) as client:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            with pytest.raises(ResponseTooLargeError, match="1 MiB cap") as info:
                await guarded(client.health())
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        assert info.value.limit == 1 << 20
        assert peak < 1 << 20  # not even the cap's worth was read
        assert connections.held == 0


async def test_a_smaller_cap_bounds_each_load_event_too(hostile_url: str) -> None:
    async with AsyncTabbyClient(hostile_url, admin_key=ADMIN_KEY, max_response_bytes=65536) as c:
        with pytest.raises(ResponseTooLargeError, match="longer than the 65536 bytes cap") as info:
            await guarded(c.models.load(model_name="m"))
    assert info.value.limit == 65536


# --- answers at the cap, and no cap at all ----------------------------------------------

CAP = 65536
#: The bytes of a model list around its one id.
LIST_FRAME = len(b'{"object":"list","data":[{"id":""}]}')


def model_list(size: int) -> bytes:
    """A model list answer of exactly ``size`` bytes."""
    empty = b'{"object":"list","data":[{"id":""}]}'
    return empty[:-4] + b"m" * (size - len(empty)) + empty[-4:]


def load_events(size: int) -> bytes:
    """A load stream whose one (finished) event has ``size`` bytes of data."""
    empty = b'{"model_type":"model","module":1,"modules":1,"status":"finished","pad":""}'
    data = empty[:-2] + b"x" * (size - len(empty)) + empty[-2:]
    return b"data: " + data + b"\r\n\r\n"


async def write_framed(writer: asyncio.StreamWriter, framing: str, body: bytes) -> bool:
    """Send a 200 ``body`` with the framing named; False when the connection then ends."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    if framing == "content-length":
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    elif framing == "chunked":
        writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(body), 10000):
            piece = body[start : start + 10000]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        writer.write(b"0\r\n\r\n")
    elif framing == "gzip":
        packed = gzip.compress(body)
        writer.write(head + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed))
        await send_in_pieces(writer, packed)
    else:  # until the connection closes
        writer.write(head + b"Connection: close\r\n\r\n")
        await send_in_pieces(writer, body)
        return False
    await writer.drain()
    return True


def sized_server(size: int, framing: str) -> Route:
    async def route(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.path == "/v1/model/load":
            body = load_events(size)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
            writer.write(b"Connection: close\r\n\r\n")
            await send_in_pieces(writer, body)
            return False
        return await write_framed(writer, framing, model_list(size))

    return route


FRAMINGS = ["content-length", "chunked", "gzip", "until-close"]


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_an_answer_at_the_cap_is_decoded_and_one_byte_more_is_not(
    framing: str, connections: ConnectionCounter
) -> None:
    for size, fits in ((CAP, True), (CAP + 1, False)):
        async with (
            raw_server(serving(sized_server(size, framing))) as url,
            AsyncTabbyClient(url, api_key=API_KEY, max_response_bytes=CAP) as client,
        ):
            if fits:
                models = await guarded(client.models.list())
                assert models.ids == ["m" * (CAP - LIST_FRAME)]
            else:
                with pytest.raises(ResponseTooLargeError, match="65536 bytes cap"):
                    await guarded(client.models.list())
            assert connections.held == 0
            assert (await guarded(client.permission())).permission == "admin"


@pytest.mark.parametrize("framing", ["content-length", "gzip", "until-close"])
async def test_no_cap_reads_an_answer_over_the_default(framing: str) -> None:
    size = DEFAULT_CAP + 4096
    async with (
        raw_server(serving(sized_server(size, framing))) as url,
        AsyncTabbyClient(url, api_key=API_KEY) as capped,
        AsyncTabbyClient(url, api_key=API_KEY, max_response_bytes=None) as unbounded,
    ):
        with pytest.raises(ResponseTooLargeError):
            await guarded(capped.models.list())
        models = await guarded(unbounded.models.list())
    assert len(models.ids[0]) == size - LIST_FRAME


async def test_no_cap_reads_a_load_event_over_a_mebibyte() -> None:
    size = LINE_CAP + 4096
    async with (
        raw_server(serving(sized_server(size, "content-length"))) as url,
        AsyncTabbyClient(url, admin_key=ADMIN_KEY) as capped,
        AsyncTabbyClient(url, admin_key=ADMIN_KEY, max_response_bytes=None) as unbounded,
    ):
        with pytest.raises(ResponseTooLargeError, match="longer than the 1 MiB cap"):
            await guarded(capped.models.load(model_name="m"))
        event = await guarded(unbounded.models.load(model_name="m"))
    assert event.status == "finished"


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "16", 2**20 * 1.0])
def test_a_bad_cap_is_refused_by_name(value: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        AsyncTabbyClient("http://127.0.0.1:1", max_response_bytes=value)  # type: ignore[arg-type]
    assert info.value.field == "max_response_bytes"
    assert "None for no bound" in str(info.value)


# --- keys echoed back ---------------------------------------------------------------


def _key_of(request: Request) -> str:
    return request.header("x-admin-key") or request.header("x-api-key")


async def echo(request: Request, writer: asyncio.StreamWriter) -> bool:
    """Error answers that reflect the request, keys and body included."""
    text = request.echo
    path = request.path
    if path == "/v1/model/list":  # a plain-text 502 from a proxy that shows the request
        writer.write(answer(502, ("upstream failed for:\n" + text).encode(), "text/plain"))
    elif path == "/v1/model":  # a debug endpoint's 400 JSON detail
        writer.write(answer(400, json.dumps({"detail": "bad request: " + text}).encode()))
    elif path == "/props":  # a WAF page, the key HTML-escaped in its title, raw in its body
        escaped = "".join(f"&#{ord(c)};" for c in _key_of(request))
        page = f"<html><head><title>Blocked: {escaped}</title></head><body><pre>{text}</pre>"
        writer.write(answer(403, page.encode(), "text/html"))
    elif path == "/v1/model/embedding/list":  # the key only as JSON \\u escapes
        spelled = "".join(f"\\u{ord(c):04x}" for c in _key_of(request))
        writer.write(answer(400, b'{"detail": "bad key: ' + spelled.encode() + b'"}'))
    elif path == "/v1/template/list":  # the key only as HTML entities, in a page's title
        escaped = "".join(f"&#{ord(c)};" for c in _key_of(request))
        page = f"<html><head><title>Blocked: {escaped}</title></head></html>"
        writer.write(answer(403, page.encode(), "text/html"))
    elif path == "/v1/model/draft/list":  # a redirect that carries the key in its path
        writer.write(answer(302, b"", "text/plain", f"Location: /login/{_key_of(request)}"))
    elif path == "/v1/model/embedding":  # a header the parser refuses, quoting it
        writer.write(b"HTTP/1.1 200 OK\r\nX-Echo " + _key_of(request).encode() + b"\r\n\r\n")
        return False
    elif path == "/v1/download":  # a 422 whose detail quotes the body (the HF token)
        detail = [
            {
                "type": "value_error",
                "loc": ["body", "repo_id"],
                "msg": f"bad request {text}",
                "input": request.body.decode(),
                "ctx": {"request": text, text: "as a key too"},
            }
        ]
        writer.write(answer(422, json.dumps({"detail": detail}).encode()))
    elif path == "/v1/model/load":
        model = json.loads(request.body)["model_name"]
        if model == "refuse":  # a 422 with a string detail
            writer.write(answer(422, json.dumps({"detail": text}).encode()))
        else:
            if model == "fail":  # the server's error frame, reflecting the request
                error = {"message": f"failed: {text}", "trace": [text, {"request": text}]}
                frame = json.dumps({"error": error})
            else:  # junk that is no frame at all
                frame = f"junk {_key_of(request)} " + text.replace("\r\n", " ")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
            writer.write(b"Connection: close\r\n\r\ndata: " + frame.encode() + b"\r\n\r\n")
            await writer.drain()
            return False
    elif path == "/v1/lora/load":  # a 200 whose failure names carry the key
        failure = [f"adapter-{_key_of(request)}", text]
        writer.write(answer(200, json.dumps({"success": [], "failure": failure}).encode()))
    else:
        writer.write(answer(404, b'{"detail":"Not Found"}'))
    await writer.drain()
    return True


ECHOED: dict[str, Call] = {
    "a LoRA answer's failure names": lambda c: c.lora.load(loras=[{"name": "x"}]),
    "a 502 text body": lambda c: c.models.list(max_retries=0),
    "a 400 JSON detail": lambda c: c.models.get(),
    "a WAF page": lambda c: c.models.get_props(),
    "a redirect": lambda c: c.models.list_draft(),
    "a broken header": lambda c: c.models.get_embedding(max_retries=0),
    "a key spelled in JSON escapes": lambda c: c.models.list_embedding(max_retries=0),
    "a key spelled in HTML entities": lambda c: c.templates.list(max_retries=0),
    "a 422 detail list": lambda c: c.models.download(
        DownloadRequest(repo_id="org/x", token=HF_TOKEN)
    ),
    "a 422 string detail": lambda c: c.models.load(model_name="refuse"),
    "a load stream's error frame": lambda c: c.models.load(model_name="fail"),
    "a junk frame": lambda c: c.models.load(model_name="junk"),
}
#: The calls whose route takes the api key: an api-key-only client sends it there.
API_ROUTES = ["a 502 text body", "a 400 JSON detail", "a WAF page", "a redirect", "a broken header"]


def assert_no_secret(err: BaseException) -> None:
    text = reachable_text(err)
    assert str(err) in text and repr(err) in text  # the walk did reach the error itself
    for part in (str(err), repr(err), repr(err.args), repr(getattr(err, "body", None))):
        assert not [s for s in SECRETS if s in part], part
    leaked = [s for s in SECRETS if s in text]
    assert leaked == [], f"{type(err).__name__} lets {leaked} be reached: {text[:2000]}"
    assert "<redacted>" in text  # the echo did reach the error, scrubbed


@pytest.mark.parametrize(
    ("kind", "keys"),
    [*((kind, "admin and api key") for kind in ECHOED), *((k, "api key only") for k in API_ROUTES)],
)
async def test_a_key_echoed_by_the_server_reaches_no_error(kind: str, keys: str) -> None:
    admin_key = ADMIN_KEY if keys == "admin and api key" else None
    async with (
        raw_server(serving(echo)) as url,
        AsyncTabbyClient(url, api_key=API_KEY, admin_key=admin_key) as client,
    ):
        with pytest.raises(TabbyError) as info:
            await guarded(ECHOED[kind](client))
    assert_no_secret(info.value)


async def test_the_servers_failed_load_keeps_its_reason_and_trace_redacted() -> None:
    async with (
        raw_server(serving(echo)) as url,
        AsyncTabbyClient(url, admin_key=ADMIN_KEY) as client,
    ):
        with pytest.raises(TabbyError) as info:
            await guarded(client.models.load(model_name="fail"))
    err = info.value
    assert err.code == "load_failed"
    assert err.message.startswith("failed: POST /v1/model/load HTTP/1.1")
    assert "x-admin-key: <redacted>" in err.message.lower()
    trace = getattr(err, "trace", None)
    assert isinstance(trace, list) and "<redacted>" in trace[1]["request"]


@pytest.mark.parametrize(
    "argv",
    [
        ["models", "list"],
        ["--json", "models", "list"],
        ["models", "get"],
        ["models", "load", "fail"],
        ["models", "download", "org/x", "--hf-token", HF_TOKEN],
    ],
    ids=" ".join,
)
async def test_the_cli_prints_no_echoed_key(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    async with raw_server(serving(echo)) as url:
        argv = ["--url", url, "--api-key", API_KEY, "--admin-key", ADMIN_KEY, *argv]
        result = await guarded(run_cli(capsys, *argv))
    assert result.code != 0
    printed = result.out + result.err
    assert printed.strip(), "the CLI said nothing"
    assert [s for s in SECRETS if s in printed] == [], printed


def test_a_decoded_value_quoted_by_msgspec_is_redacted() -> None:
    # msgspec quotes the value an enum refuses: a 2xx answer echoing the key into one.
    decoder = msgspec.json.Decoder(Literal["api", "admin"])
    with pytest.raises(ResponseDecodeError) as info:
        decode(PERMISSION, decoder, json.dumps(API_KEY).encode(), Redactor([API_KEY]))
    assert API_KEY not in reachable_text(info.value)
    assert "Invalid enum value '<redacted>'" in str(info.value)


# --- answers nested past the decoder's depth ---------------------------------------

# Deeper than any Python's limit: 3.13 decodes 5000 levels (its C recursion limit
# is higher than 3.11's), and 3.14 checks the C stack itself.
DEPTH = 100_000
DEEP = b"[" * DEPTH + b"]" * DEPTH


def test_a_deeply_nested_error_body_is_still_a_typed_error() -> None:
    err = status_error(502, DEEP, LIST, has_admin_key=False, redact=Redactor([API_KEY]))
    assert err.status == 502


async def deep_answers(request: Request, writer: asyncio.StreamWriter) -> bool:
    """A 503 on /health and a 200 model list, each with a field nested DEPTH deep."""
    if request.path == "/health":
        writer.write(answer(503, b'{"status":"unhealthy","x":' + DEEP + b"}"))
    else:
        writer.write(answer(200, b'{"object":"list","data":[],"x":' + DEEP + b"}"))
    await writer.drain()
    return True


async def test_a_deeply_nested_answer_is_a_typed_error() -> None:
    async with (
        raw_server(serving(deep_answers)) as url,
        AsyncTabbyClient(url, api_key=API_KEY, max_retries=0) as client,
    ):
        with pytest.raises(ServerError):
            await guarded(client.health())
        with pytest.raises(ResponseDecodeError, match="nested too deeply"):
            await guarded(client.models.list())
