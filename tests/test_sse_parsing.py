"""The load stream's SSE parsing: EventParser (pure) and EventReader over a body.

Property-based: the real frames, cut at arbitrary byte boundaries, with CRLF,
LF or CR line ends mixed line by line, comments, ignored fields, multi-line
data, a leading BOM and multi-byte UTF-8 split across chunks, give exactly
the events. Tables pin the cases that once failed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import attrs
import msgspec
import pytest
from aiohttp_sse_client.client import MessageEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from tabby_async import StreamError
from tabby_async._mapping import decode
from tabby_async._routes import GET
from tabby_async._sse import MAX_LINE, EventParser, EventReader
from tabby_async.errors import ResponseDecodeError
from tabby_async.types import (
    DownloadResponse,
    HealthResponse,
    ModelCard,
    ModelList,
    ModelLoadResponse,
    ModelPropsResponse,
    PermissionResponse,
)

BOM = b"\xef\xbb\xbf"


class _FakeContent:
    """A body as aiohttp's StreamReader hands it out: chunks, then b""."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def readany(self) -> bytes:
        await asyncio.sleep(0)
        return self._chunks.pop(0) if self._chunks else b""


async def _read(chunks: list[bytes]) -> list[str]:
    reader = EventReader(_FakeContent(chunks))
    out: list[str] = []
    while (message := await reader.next()) is not None:
        out.append(message.data)
    return out


def _parse(chunks: list[bytes], max_line: int = MAX_LINE) -> tuple[list[str], str | None]:
    """The events' data and the error (if any) of a body given as chunks."""
    parser = EventParser(max_line=max_line)
    for chunk in chunks:
        parser.feed(chunk)
    error = str(parser.error) if parser.error is not None else None
    return [m.data for m in parser.events], error


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
    events = [msgspec.json.decode(d, type=ModelLoadResponse) for d in await _read(chunks)]
    assert [(e.module, e.status) for e in events] == [
        (1, "processing"),
        (2, "processing"),
        (2, "finished"),
    ]


async def test_unfinished_last_event_is_dropped() -> None:
    complete = await _read([REAL])
    assert len(complete) == 3
    assert await _read([REAL[:-2]]) == complete[:2]


A = b'data: {"a":1}'
B = b'data: {"b":2}'


@pytest.mark.parametrize(
    ("chunks", "events"),
    [
        # A CR ending one chunk and an LF starting the next are ONE line end.
        ([A + b"\r", b"\n\r", b"\n" + B + b"\r\n\r\n"], ['{"a":1}', '{"b":2}']),
        ([A + b"\r\n\r", b"\n" + B + b"\r", b"\n\r", b"\n"], ['{"a":1}', '{"b":2}']),
        # ... also with an empty chunk between them.
        ([A + b"\r\n\r", b"", b"\n" + B + b"\r\n\r\n"], ['{"a":1}', '{"b":2}']),
        # A bare-CR line inside a chunk whose last line is unfinished: the LF
        # starting the next chunk ends that unfinished line (this merged two
        # events into one undecodable frame before).
        ([b"d", b'ata: {"a":1}\r\n\rdata: {"b":2}', b"\n\n"], ['{"a":1}', '{"b":2}']),
        ([A + b"\r\r" + B[:4], B[4:] + b"\n", b"\n"], ['{"a":1}', '{"b":2}']),
        # CR only, LF only.
        ([A + b"\r\r" + B + b"\r\r"], ['{"a":1}', '{"b":2}']),
        ([A + b"\n\n" + B + b"\n\n"], ['{"a":1}', '{"b":2}']),
        # A leading BOM is dropped, whole or cut anywhere; only at the very start.
        ([BOM + A + b"\r\n\r\n"], ['{"a":1}']),
        ([BOM[:1], BOM[1:2], BOM[2:] + A + b"\n\n"], ['{"a":1}']),
        ([BOM[:2], BOM[2:], A + b"\n\n"], ['{"a":1}']),
        ([BOM + BOM + A + b"\n\n" + B + b"\n\n"], ['{"b":2}']),  # 2nd BOM: unknown field
        ([A + b"\n\n" + BOM + B + b"\n\n"], ['{"a":1}']),
        ([b"\xef\xbb", b"data: x\n\n"], []),  # not a BOM: a field name "\xef\xbbdata"
        # retry, id and event fields and comments are ignored; data lines join with LF.
        ([b"retry: 20000\n", b"id: 7\nevent: progress\n" + A + b"\n\n"], ['{"a":1}']),
        ([b"retry: 99999999999999999999999999\n\n" + A + b"\n\n"], ['{"a":1}']),
        ([b": ping\n\n", b"data: 1\ndata:2\ndata\n\n"], ["1\n2\n"]),
        ([b"data:  two spaces\n\n"], [" two spaces"]),
        ([b"data: \xd0", b"\xbc\n\n"], ["м"]),  # UTF-8 cut between chunks
        ([b"data: x\n\n\n\n: c\n\n"], ["x"]),  # blank lines without data: no events
        ([A], []),  # no end of line at the end of the body: dropped
        ([], []),
    ],
)
def test_line_ends_bom_and_fields(chunks: list[bytes], events: list[str]) -> None:
    assert _parse(chunks) == (events, None)


@pytest.mark.parametrize(
    ("chunks", "events", "error"),
    [
        ([b"data: " + b"x" * 10 + b"\n\n"], ["x" * 10], None),  # 16 bytes: at the cap
        ([b"data: " + b"x" * 11 + b"\n\n"], [], "an SSE line is longer than the 16 bytes cap"),
        ([A + b"\n\n", b"data: ", b"x" * 6, b"y" * 6], ['{"a":1}'], "line is longer"),
        ([b": " + b"c" * 20 + b"\n" + A + b"\n\n"], [], "line is longer"),  # comments too
        ([b"data: 12345678\n" * 2 + b"\n"], [], "an SSE event is larger than the 16 bytes cap"),
        ([A + b"\n\ndata: \xff\n\n" + B + b"\n\n"], ['{"a":1}'], "not valid UTF-8"),
    ],
)
def test_caps_and_bad_bytes_are_errors_after_the_events_before(
    chunks: list[bytes], events: list[str], error: str | None
) -> None:
    got, problem = _parse(chunks, max_line=16)
    assert got == events
    if error is None:
        assert problem is None
    else:
        assert problem is not None and error in problem


async def test_the_reader_raises_the_error_after_the_events_before_it() -> None:
    reader = EventReader(_FakeContent([A + b"\n\n" + b"data: " + b"x" * MAX_LINE + b"\n\n"]))
    first = await reader.next()
    assert first is not None and first.data == '{"a":1}'
    with pytest.raises(StreamError, match="longer than the 1 MiB cap"):
        await reader.next()


def test_a_long_line_is_buffered_in_linear_time() -> None:
    # 32 MiB in 2 KiB pieces. Re-joining the buffer on every chunk (as before)
    # copies ~256 GiB here, minutes of work; appending and joining once is
    # a few tens of milliseconds. The bound is only a guard far below the
    # quadratic time and far above the linear one.
    size, piece = 32 << 20, 2048
    parser = EventParser(max_line=size + 16)
    started = time.process_time()
    parser.feed(b"data: ")
    block = b"x" * piece
    for _ in range(size // piece):
        parser.feed(block)
    parser.feed(b"\n\n")
    spent = time.process_time() - started
    assert parser.error is None
    assert len(parser.events.popleft().data) == size
    assert spent < 30, f"{spent:.1f} s of CPU: the buffer is copied again on every chunk"


def test_message_event_is_the_type_we_build() -> None:
    # aiohttp-sse-client's MessageEvent is the one piece of that library the
    # SDK uses: fail loudly if a new version changes it.
    assert attrs.has(MessageEvent)
    names = [field.name for field in attrs.fields(MessageEvent)]
    assert names == ["type", "message", "data", "origin", "last_event_id"]
    event = MessageEvent(type=None, message="", data="d", origin="o", last_event_id="")
    assert (event.data, event.origin) == ("d", "o")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.data = "x"  # type: ignore[misc]


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
_eol = st.sampled_from([b"\r\n", b"\n", b"\r"])
_frame = st.one_of(
    st.tuples(st.just("event"), _event, st.integers(1, 3)),  # data split over n lines
    st.tuples(st.just("comment"), _text, st.just(0)),
    st.tuples(st.just("field"), st.sampled_from(["retry: 3000", "id: 1", "event: x"]), st.just(0)),
)


def _encode(
    frames: list[tuple[str, Any, int]], eols: st.DataObject
) -> tuple[bytes, list[str]]:
    out = bytearray()
    expected: list[str] = []
    previous = b""

    def eol() -> bytes:
        # Any line end, line by line; but after a bare CR an LF would make
        # the two one CRLF (the SSE rules say so), so a CR follows a CR there.
        nonlocal previous
        end: bytes = eols.draw(_eol)
        if previous == b"\r" and end.startswith(b"\n"):
            end = b"\r"
        previous = end
        return end

    for kind, value, lines in frames:
        if kind in ("comment", "field"):
            prefix = ": " if kind == "comment" else ""
            out += prefix.encode() + value.encode() + eol()
            continue
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        # Split the JSON into `lines` pieces at commas; SSE joins them with LF.
        pieces = text.split(",", lines - 1)
        for piece in pieces:
            out += b"data: " + piece.encode() + eol()
        out += eol()
        expected.append("\n".join(pieces))
    return bytes(out), expected


@settings(max_examples=400, deadline=None)
@given(
    frames=st.lists(_frame, max_size=12),
    eols=st.data(),
    bom=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_any_split_any_line_ends_gives_exactly_the_events(
    frames: list[tuple[str, Any, int]], eols: st.DataObject, bom: bool, cuts: list[int]
) -> None:
    data, expected = _encode(frames, eols)
    if bom:
        data = BOM + data
    got = asyncio.run(_read(_split(data, cuts)))
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
