"""AsyncTokensService: tokenize and detokenize with the loaded model (``client.tokens``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from . import _routes as R
from ._defaults import USE_CLIENT_DEFAULT, RetriesArg, TimeoutArg
from ._resource import Resource, build_request
from .errors import InvalidInputError
from .types import (
    ChatMessage,
    TokenDecodeRequest,
    TokenDecodeResponse,
    TokenEncodeRequest,
    TokenEncodeResponse,
)

if TYPE_CHECKING:
    from typing import Unpack

    from .types import TokenOptions

__all__ = ["AsyncTokensService"]

_DEFAULT = USE_CLIENT_DEFAULT


class AsyncTokensService(Resource):
    """Encode text or chat messages to token ids, and back: ``client.tokens``.

    Both need a loaded model. The three switches (``add_bos_token``,
    ``encode_special_tokens``, ``decode_special_tokens``) default to the
    server's, true. Both calls only compute, so they are retried like reads.

    Each method's ``Raises`` names the errors particular to it; the errors
    any call may raise are listed on :class:`~tabby_async.AsyncTabbyClient`.
    """

    __slots__ = ()

    async def encode(
        self,
        text_or_messages: str | Sequence[ChatMessage],
        *,
        template_vars: Mapping[str, Any] | None = None,
        timeout: TimeoutArg = _DEFAULT,
        max_retries: RetriesArg = _DEFAULT,
        **options: Unpack[TokenOptions],
    ) -> TokenEncodeResponse:
        """The token ids of a string, or of chat messages rendered with the model's template.

        Messages are :class:`~tabby_async.types.ChatMessage` Structs; they are
        rendered without a generation prompt, with ``template_vars`` as extra
        template variables.

        Raises:
            NoTemplateError: messages given while no prompt template is in
                use.
            ModelNotLoadedError: no model is loaded.
            InvalidInputError: neither a string nor a list of messages, or a
                bad option, before anything is sent.
            UnprocessableEntityError: the server refused a message's shape.
        """
        text: str | list[ChatMessage]
        if isinstance(text_or_messages, str):
            text = text_or_messages
        elif isinstance(text_or_messages, Sequence) and not isinstance(text_or_messages, bytes):
            # Each item is checked by the request Struct.
            text = list(cast("Sequence[ChatMessage]", text_or_messages))
        else:
            raise InvalidInputError("text", "must be a string or a list of ChatMessage")
        fields: dict[str, Any] = {**options, "text": text}
        if template_vars is not None:
            fields["template_vars"] = dict(template_vars)
        body = build_request(TokenEncodeRequest, None, fields)
        return await self._call(R.TOKEN_ENCODE, body, timeout=timeout, max_retries=max_retries)

    async def decode(
        self,
        tokens: Sequence[int],
        *,
        timeout: TimeoutArg = _DEFAULT,
        max_retries: RetriesArg = _DEFAULT,
        **options: Unpack[TokenOptions],
    ) -> TokenDecodeResponse:
        """The text of token ids.

        Raises:
            ModelNotLoadedError: no model is loaded.
            InvalidInputError: not a list of token ids, or a bad option,
                before anything is sent.
        """
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
            raise InvalidInputError("tokens", "must be a list of token ids")
        body = build_request(TokenDecodeRequest, None, {**options, "tokens": list(tokens)})
        return await self._call(R.TOKEN_DECODE, body, timeout=timeout, max_retries=max_retries)
