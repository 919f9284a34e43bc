"""The token routes: encode text or chat messages, decode ids, with the toy tokenizer.

Both need an api key and a loaded model. ``text`` may be chat messages: they
are rendered with the model's current template (by the toy renderer), which
needs a template in use (else the server's 422 with a *string* detail).
Message parts are joined into one string first: a text part without
``text`` crashes the server (its plain-text 500), and image parts are dropped
unless the model was loaded with vision, which puts a placeholder there.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._guards import Guards
from ._schemas import TOKEN_DECODE_SCHEMA, TOKEN_ENCODE_SCHEMA
from ._toy_tokenizer import decode, encode, render_chat
from ._wire import MSG_TOKENIZE_NO_TEMPLATE, detail, internal_error, json_response
from ._wire import encode as encode_json

__all__ = ["IMAGE_PLACEHOLDER", "TokenRoutes", "flatten_message"]

#: What an image part becomes in the rendered prompt of a model loaded with vision.
IMAGE_PLACEHOLDER = "<image>"


def flatten_message(message: dict[str, Any], vision: bool) -> dict[str, Any] | None:
    """The message with list content joined into a string; ``None`` if a text part
    has no ``text`` (the server's crash)."""
    content = message["content"]
    if not isinstance(content, list):
        return message
    joined = ""
    for part in content:
        if part["type"] == "text":
            if part["text"] is None:
                return None
            joined += part["text"]
        elif vision:
            joined += IMAGE_PLACEHOLDER
    return {**message, "content": joined}


class TokenRoutes:
    """Handlers of ``/v1/token/encode`` and ``/v1/token/decode``."""

    __slots__ = ("_guards", "_state")

    def __init__(self, guards: Guards) -> None:
        self._guards = guards
        self._state = guards.state

    async def encode(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/token/encode``: ``{"tokens": [...], "length": n}``."""
        fields = self._guards.body(
            request, body, TOKEN_ENCODE_SCHEMA, admin=False, needs_model=True
        )
        if isinstance(fields, web.Response):
            return fields
        text: str | list[dict[str, Any]] = fields["text"]
        if isinstance(text, list):
            loaded = self._state.loaded
            assert loaded is not None  # the guard checked
            if loaded.prompt_template is None:
                return json_response(422, detail(MSG_TOKENIZE_NO_TEMPLATE))
            messages = [flatten_message(m, loaded.use_vision) for m in text]
            if None in messages:
                return internal_error()
            text = render_chat([m for m in messages if m is not None])
        tokens = encode(
            text,
            add_bos_token=fields["add_bos_token"],
            encode_special_tokens=fields["encode_special_tokens"],
        )
        return json_response(200, encode_json({"tokens": tokens, "length": len(tokens)}))

    async def decode(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/token/decode``: ``{"text": ...}``."""
        fields = self._guards.body(
            request, body, TOKEN_DECODE_SCHEMA, admin=False, needs_model=True
        )
        if isinstance(fields, web.Response):
            return fields
        text = decode(fields["tokens"], decode_special_tokens=fields["decode_special_tokens"])
        return json_response(200, encode_json({"text": text}))
