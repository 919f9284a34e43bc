"""Tokenization: encode text or chat messages, decode token ids."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .._checks import check_bool, check_json
from ..errors import InvalidInputError
from ._base import RequestStruct, ResponseStruct

__all__ = [
    "ChatMessage",
    "ChatMessagePart",
    "ImageURL",
    "TokenDecodeRequest",
    "TokenDecodeResponse",
    "TokenEncodeRequest",
    "TokenEncodeResponse",
]


class ImageURL(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """An image by URL (or ``data:`` URL) inside a chat message."""

    url: str


class ChatMessagePart(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """One part of a message's content: ``text``, or an ``image_url``.

    A ``text`` part needs its text (the server fails with a 500 without it).
    Image parts are dropped when the loaded model has no vision.
    """

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None

    def __post_init__(self) -> None:
        if self.type == "text" and not isinstance(self.text, str):
            raise InvalidInputError("content[].text", "a text part needs its text")
        if self.type == "image_url" and not isinstance(self.image_url, ImageURL):
            raise InvalidInputError("content[].image_url", "an image part needs an ImageURL")


class ChatMessage(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """One chat message, rendered with the loaded model's prompt template."""

    role: str = "user"
    content: str | list[ChatMessagePart] | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.role, str) or not self.role:
            raise InvalidInputError("role", "must be a non-empty string such as 'user'")
        if self.tool_calls is not None:
            check_json("tool_calls", self.tool_calls)


class _TokenOptions(RequestStruct, frozen=True, kw_only=True, omit_defaults=True):
    """The switches both token routes take; unset means the server's default (true)."""

    add_bos_token: bool | None = None
    encode_special_tokens: bool | None = None
    decode_special_tokens: bool | None = None

    def _check_options(self) -> None:
        for name in ("add_bos_token", "encode_special_tokens", "decode_special_tokens"):
            check_bool(name, getattr(self, name))


class TokenEncodeRequest(_TokenOptions, frozen=True, kw_only=True, omit_defaults=True):
    """What ``POST /v1/token/encode`` takes: a string, or chat messages.

    Messages are rendered with the loaded model's prompt template (no
    generation prompt added); ``template_vars`` are extra template variables.
    ``[]`` is an empty prompt.
    """

    text: str | list[ChatMessage]
    template_vars: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self._check_options()
        if isinstance(self.text, list):
            for i, message in enumerate(self.text):
                if not isinstance(message, ChatMessage):
                    raise InvalidInputError(f"text[{i}]", "must be a ChatMessage")
        elif not isinstance(self.text, str):
            raise InvalidInputError("text", "must be a string or a list of ChatMessage")
        if self.template_vars is not None:
            if not isinstance(self.template_vars, dict):
                raise InvalidInputError("template_vars", "must be a dict")
            check_json("template_vars", self.template_vars)


class TokenEncodeResponse(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """The token ids and how many there are."""

    tokens: list[int] = msgspec.field(default_factory=list)
    length: int = 0


class TokenDecodeRequest(_TokenOptions, frozen=True, kw_only=True, omit_defaults=True):
    """What ``POST /v1/token/decode`` takes."""

    tokens: list[int]

    def __post_init__(self) -> None:
        self._check_options()
        if not isinstance(self.tokens, list):
            raise InvalidInputError("tokens", "must be a list of token ids")
        for i, token in enumerate(self.tokens):
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                raise InvalidInputError(f"tokens[{i}]", f"must be an integer >= 0, not {token!r}")


class TokenDecodeResponse(ResponseStruct, frozen=True, kw_only=True, gc=False):
    """The decoded text."""

    text: str = ""
