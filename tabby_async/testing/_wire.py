"""What the emulated server puts on the wire: message texts, headers, bodies and frames.

Every text here is the real server's own wording, byte for byte, so that a client
matching on it (or showing it) behaves as it would against TabbyAPI. Also how a
request comes off the wire: with a body of any size, as the server takes it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

__all__ = [
    "BODY_EMBEDDING_DONE",
    "BODY_HEALTHY",
    "BODY_NOT_ALLOWED",
    "BODY_NOT_FOUND",
    "BODY_NULL",
    "BODY_SERVICE_INFO",
    "BOM",
    "FRAME_END",
    "JSON_HEADERS",
    "MSG_INVALID_ADMIN",
    "MSG_INVALID_API",
    "MSG_KEY_INVALID",
    "MSG_KEY_MISSING",
    "MSG_MISSING_DRAFT",
    "MSG_NO_EMBEDDING",
    "MSG_NO_EMBEDDING_PACKAGES",
    "MSG_NO_EMBEDDING_PATH",
    "MSG_NO_LORAS",
    "MSG_NO_LORA_DIR",
    "MSG_NO_MODEL",
    "MSG_NO_NAME",
    "MSG_NO_OVERRIDES",
    "MSG_NO_PATH",
    "MSG_NO_TEMPLATE_NAME",
    "MSG_OFFLINE",
    "MSG_PROVIDE_ADMIN",
    "MSG_PROVIDE_API",
    "MSG_TOKENIZE_NO_TEMPLATE",
    "SSE_HEADERS",
    "any_size_request",
    "detail",
    "encode",
    "error_frame",
    "internal_error",
    "json_response",
    "model_card",
    "model_list",
    "msg_no_preset",
    "ping_frame",
    "progress_frame",
    "reason_phrase",
    "redirect",
    "unprocessable",
]

#: msgspec's JSON encoder: compact, like the server's own JSON responses.
encode = msgspec.json.encode

# ----------------------------------------------------------------------------- texts

MSG_PROVIDE_API = "Please provide an API key"
MSG_INVALID_API = "Invalid API key"
MSG_PROVIDE_ADMIN = "Please provide an admin key"
MSG_INVALID_ADMIN = "Invalid admin key"
MSG_NO_MODEL = "No models are currently loaded."
MSG_NO_EMBEDDING = "No embedding models are currently loaded."
MSG_NO_NAME = "A model name was not provided for load."
MSG_NO_PATH = "Could not find the model path for load. Check model name or config.yml?"
MSG_NO_EMBEDDING_PATH = (
    "Could not find the embedding model path for load. Check model name or config.yml?"
)
MSG_KEY_MISSING = "The provided authentication key is missing."
MSG_KEY_INVALID = "The provided authentication key is invalid."
MSG_OFFLINE = "[Errno -2] Name or service not known"
MSG_NO_EMBEDDING_PACKAGES = (
    "Skipping embeddings because infinity-emb is not installed.\n"
    "Please run the following command in your environment to install extra packages:\n"
    "pip install -U .[extras]"
)
MSG_MISSING_DRAFT = (
    "Could not find the draft model path for load. Check draft model name or config.yml?"
)

MSG_NO_LORAS = "List of loras to load is not found."
MSG_NO_LORA_DIR = "A parent lora directory does not exist for load. Check your config.yml?"
MSG_NO_TEMPLATE_NAME = "New template name not found."
MSG_NO_OVERRIDES = "A sampler override preset or dictionary wasn't provided."
MSG_TOKENIZE_NO_TEMPLATE = (
    "Cannot tokenize chat completion message because a prompt template is not set."
)


def msg_no_preset(name: str) -> str:
    """The 400 of a sampler override preset that does not exist."""
    return f"Sampler override preset with name {name} does not exist. Check the spelling?"


# ----------------------------------------------------------------------------- bytes

JSON_HEADERS: dict[str, str] = {"Content-Type": "application/json", "Server": "uvicorn"}
SSE_HEADERS: dict[str, str] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
    "Server": "uvicorn",
}
_TEXT_HEADERS: dict[str, str] = {"Content-Type": "text/plain; charset=utf-8", "Server": "uvicorn"}

BODY_NULL = b"null"
BODY_NOT_FOUND = b'{"detail":"Not Found"}'
BODY_NOT_ALLOWED = b'{"detail":"Method Not Allowed"}'
BODY_HEALTHY = b'{"status":"healthy","issues":[]}'
BODY_EMBEDDING_DONE = b'{"model_type":"embedding_model","module":1,"modules":1,"status":"finished"}'
_DOCS = "https://theroyallab.github.io/tabbyAPI"
_REPO = "https://github.com/theroyallab/tabbyAPI"
#: ``GET /.well-known/serviceinfo``: a fixed answer, whatever the keys or the state.
BODY_SERVICE_INFO = encode(
    {
        "version": 0.1,
        "software": {"name": "TabbyAPI", "repository": _REPO, "homepage": _REPO},
        "api": {
            "openai": {
                "name": "OpenAI API",
                "relative_url": "/v1",
                "documentation": _DOCS,
                "version": 1,
            },
            "koboldai": {
                "name": "KoboldAI API",
                "relative_url": "/api",
                "documentation": _DOCS,
                "version": 1,
            },
        },
    }
)
#: What ends every SSE event (the server's lines end in CRLF).
FRAME_END = b"\r\n\r\n"
#: A UTF-8 byte order mark.
BOM = b"\xef\xbb\xbf"


def reason_phrase(status: int) -> str:
    """``status``'s standard reason phrase (``502``: ``"Bad Gateway"``), else ``"Error"``.

    FastAPI's ``HTTPException(status)`` details an error with it (``"Not Found"``).
    """
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@functools.lru_cache(maxsize=512)
def detail(message: str) -> bytes:
    """``{"detail": message}`` as bytes; cached, most messages are constants."""
    return encode({"detail": message})


def json_response(status: int, body: bytes, extra: Mapping[str, str] | None = None) -> web.Response:
    """A JSON response as uvicorn sends it (``application/json``, no charset)."""
    resp = web.Response(status=status, body=body, headers=JSON_HEADERS)
    if extra:
        resp.headers.update(extra)
    return resp


def unprocessable(errors: list[dict[str, Any]]) -> web.Response:
    """The 422 of a body that failed validation: ``{"detail": [entries]}``."""
    return json_response(422, encode({"detail": errors}))


def internal_error() -> web.Response:
    """The plain-text 500 the server sends when a handler raises unexpectedly."""
    return web.Response(status=500, body=b"Internal Server Error", headers=_TEXT_HEADERS)


def redirect(request: web.BaseRequest, path: str) -> web.Response:
    """Starlette's 307 to the same URL without its trailing slash (absolute ``Location``)."""
    location = f"{request.scheme}://{request.host}{path}"
    if request.query_string:
        location += "?" + request.query_string
    return web.Response(status=307, headers={"Location": location, "Server": "uvicorn"})


# ----------------------------------------------------------------------------- frames


def progress_frame(model_type: str, module: int, modules: int, status: str) -> bytes:
    """``data: {"model_type":..,"module":..,"modules":..,"status":..}\\r\\n\\r\\n``."""
    return (
        f'data: {{"model_type":"{model_type}","module":{module},'
        f'"modules":{modules},"status":"{status}"}}\r\n\r\n'
    ).encode()


def error_frame(message: str) -> bytes:
    """``data: {"error":{"message":..,"trace":null}}\\r\\n\\r\\n``."""
    return b"data: " + encode({"error": {"message": message, "trace": None}}) + FRAME_END


def ping_frame() -> bytes:
    """``: ping - 2026-11-23 19:50:23.862459+00:00\\r\\n\\r\\n`` (current UTC time)."""
    return f": ping - {datetime.now(UTC)}\r\n\r\n".encode()


# ----------------------------------------------------------------------------- cards


def model_card(name: str, created: int, parameters: Any = None) -> dict[str, Any]:
    """A model card; ``created`` is the request time, listings have no ``parameters``."""
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "tabbyAPI",
        "logging": None,
        "parameters": parameters,
    }


def model_list(names: Iterable[str], now: int) -> bytes:
    """``{"object":"list","data":[card, ...]}`` for these folder names."""
    return encode({"object": "list", "data": [model_card(n, now) for n in names]})


def any_size_request(
    message: RawRequestMessage,
    payload: StreamReader,
    protocol: RequestHandler,
    writer: AbstractStreamWriter,
    task: asyncio.Task[None],
) -> web.BaseRequest:
    """A request whose body may be any size, as the server's (uvicorn's) are.

    aiohttp's requests stop at 1 MiB by default; TabbyAPI sets no bound, and a
    long prompt or an image in a chat message is easily more.
    """
    loop = asyncio.get_running_loop()
    return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=0)
