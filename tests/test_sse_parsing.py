"""The load stream's SSE parsing: aiohttp-sse-client fed by our line splitter.

Property-based: the real frames, cut at arbitrary byte boundaries, with CRLF,
LF or CR line ends, comments, multi-line data and multi-byte UTF-8 split
across chunks, give exactly the events.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from tabby_async import (
    DownloadResponse,
    HealthResponse,
    ModelCard,
    ModelList,
    ModelLoadResponse,
    ModelPropsResponse,
    PermissionResponse,
)
from tabby_async._routes import GET
from tabby_async._stream import _EndOfBody, _OneShotEventSource
from tabby_async._transport import decode
from tabby_async.errors import ResponseDecodeError


class _FakeContent:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def readany(self) -> bytes:
        await asyncio.sleep(0)
        return self._chunks.pop(0) if self._chunks else b""


class _FakeResponse:
    """The few attributes of aiohttp.ClientResponse that the stream reads."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.status = 200
        self.url = URL("http://127.0.0.1:5000/v1/model/load")
        self.content = _FakeContent(chunks)
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def _parse(chunks: list[bytes]) -> list[str]:
    source = _OneShotEventSource(object(), _FakeResponse(chunks))  # type: ignore[arg-type]
    out: list[str] = []
    while True:
        try:
            message = await source.__anext__()
        except _EndOfBody:
            return out
        out.append(message.data)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


REAL = (
    b'data: {"model_type":"model","module":1,"modules":2,"status":"processing"}\r\n\r\n'
    b": ping - 2026-11-23 19:50:23.862459+00:00\r\n\r\n"
    b'data: {"model_type":"model","module":2,"modules":2,"status":"processing"}\r\n\r\n'
    b'data: {"model_type":"model","module":2,"modules":2,"status":"finished"}\r\n\r\n'
)


async def test_real_frames_one_chunk_each() -> None:
    chunks = [part + b"\r\n\r\n" for part in REAL.split(b"\r\n\r\n") if part]
    events = [msgspec.json.decode(d, type=ModelLoadResponse) for d in await _parse(chunks)]
    assert [(e.module, e.status) for e in events] == [
        (1, "processing"),
        (2, "processing"),
        (2, "finished"),
    ]


async def test_unfinished_last_event_is_dropped() -> None:
    complete = await _parse([REAL])
    assert len(complete) == 3
    assert await _parse([REAL[:-2]]) == complete[:2]


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=20,
)
_event = st.one_of(
    st.builds(
        lambda t, m, n, s: {"model_type": t, "module": m, "modules": n, "status": s},
        st.sampled_from(["vision", "draft", "model", "модель-✓"]),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
        st.sampled_from(["processing", "finished"]),
    ),
    st.builds(lambda m: {"error": {"message": m, "trace": None}}, _text),
)
_frame = st.one_of(
    st.tuples(st.just("event"), _event, st.integers(1, 3)),  # data split over n lines
    st.tuples(st.just("comment"), _text, st.just(0)),
)


def _encode(frames: list[tuple[str, Any, int]], eol: bytes) -> tuple[bytes, list[str]]:
    out = bytearray()
    expected: list[str] = []
    for kind, value, lines in frames:
        if kind == "comment":
            out += b": " + value.encode() + eol + eol
            continue
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        # Split the JSON into `lines` pieces at commas; SSE joins them with LF.
        pieces = text.split(",", lines - 1)
        out += b"".join(b"data: " + p.encode() + eol for p in pieces) + eol
        expected.append("\n".join(pieces))
    return bytes(out), expected


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(_frame, max_size=12),
    eol=st.sampled_from([b"\r\n", b"\n", b"\r"]),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_any_split_any_line_end_gives_exactly_the_events(
    frames: list[tuple[str, Any, int]], eol: bytes, cuts: list[int]
) -> None:
    data, expected = _encode(frames, eol)
    got = asyncio.run(_parse(_split(data, cuts)))
    assert got == expected
    for text in got:  # and each is decodable back to what was sent
        json.loads(text.replace("\n", ","))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize(
    "kind",
    [
        ModelList,
        ModelCard,
        ModelPropsResponse,
        ModelLoadResponse,
        DownloadResponse,
        HealthResponse,
        PermissionResponse,
    ],
)
def test_arbitrary_json_gives_a_struct_or_a_typed_error(
    kind: type[Any], data: st.DataObject
) -> None:
    # Any JSON at all, or objects made of the type's own field names (so that
    # some decode and the rest fail deep inside) with arbitrary values.
    names = st.sampled_from([*kind.__struct_fields__, "unknown_field"])
    value = data.draw(_json | st.dictionaries(names, _json, max_size=8))
    decoder = msgspec.json.Decoder(kind)
    body = msgspec.json.encode(value)
    try:
        result = decode(GET, decoder, body)
    except ResponseDecodeError as err:
        assert "GET /v1/model" in str(err)
    else:
        assert isinstance(result, kind)
