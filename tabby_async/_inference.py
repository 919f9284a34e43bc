"""AsyncInferenceService: TabbyAPI's OpenAI routes, passed through raw (``client.inference``)."""

from __future__ import annotations

from typing import Any

import aiohttp

from . import _routes as R
from ._defaults import USE_CLIENT_DEFAULT, TimeoutArg
from ._resource import Resource
from ._route import Route
from .errors import InvalidInputError

__all__ = ["AsyncInferenceService"]

_DEFAULT = USE_CLIENT_DEFAULT


class AsyncInferenceService(Resource):
    """Completions, chat completions and embeddings as raw bytes: ``client.inference``.

    The SDK manages models; generating is the business of an OpenAI client.
    These calls exist for code that forwards requests it did not write (a
    gateway, a proxy): the body goes out exactly as given, with the client's
    plain api key (never the admin key), and the answer comes back open, as
    an ``aiohttp.ClientResponse`` to read (``.content``, for a stream) and
    close (``async with response:``).

    A call is sent once and never retried: a generation must not run twice.
    A failure that never reached the server is a
    :class:`~tabby_async.TabbyConnectionError` (or a connect
    :class:`~tabby_async.TabbyTimeoutError`) whose ``sent`` is False, the
    one case where the caller may send it elsewhere. An error status raises
    the matching :class:`~tabby_async.APIStatusError`, with the server's
    message and body, as every call of the SDK does.

    The default timeout of completions is the client's stream timeout (a
    streamed answer is read with the idle bound); pass ``timeout=`` for a
    non-streamed one, which says nothing until it is done.
    """

    __slots__ = ()

    async def completions(
        self, body: bytes, *, timeout: TimeoutArg = _DEFAULT
    ) -> aiohttp.ClientResponse:
        """``POST /v1/completions`` with ``body`` (JSON bytes); the answer, open.

        Raises:
            InvalidInputError: ``body`` is not bytes, before anything is sent.
            TabbyConnectionError: the request did not get through; ``sent`` is False
                when nothing reached the server (only then may it go elsewhere).
            TabbyTimeoutError: a bound fired; a connect timeout's ``sent`` is False.
            APIStatusError: an error status (its subclass for the status), with the
                server's message and body; the answer is read and closed.
        """
        return await self._open(R.COMPLETIONS, body, timeout)

    async def chat_completions(
        self, body: bytes, *, timeout: TimeoutArg = _DEFAULT
    ) -> aiohttp.ClientResponse:
        """``POST /v1/chat/completions`` with ``body`` (JSON bytes); the answer, open.

        Raises:
            InvalidInputError: ``body`` is not bytes, before anything is sent.
            TabbyConnectionError: the request did not get through; ``sent`` is False
                when nothing reached the server (only then may it go elsewhere).
            TabbyTimeoutError: a bound fired; a connect timeout's ``sent`` is False.
            APIStatusError: an error status (its subclass for the status), with the
                server's message and body; the answer is read and closed.
        """
        return await self._open(R.CHAT_COMPLETIONS, body, timeout)

    async def embeddings(
        self, body: bytes, *, timeout: TimeoutArg = _DEFAULT
    ) -> aiohttp.ClientResponse:
        """``POST /v1/embeddings`` with ``body`` (JSON bytes); the answer, open.

        Raises:
            InvalidInputError: ``body`` is not bytes, before anything is sent.
            TabbyConnectionError: the request did not get through; ``sent`` is False
                when nothing reached the server (only then may it go elsewhere).
            TabbyTimeoutError: a bound fired; a connect timeout's ``sent`` is False.
            APIStatusError: an error status (its subclass for the status), with the
                server's message and body; the answer is read and closed.
        """
        return await self._open(R.EMBEDDINGS, body, timeout)

    async def _open(
        self, route: Route[Any], body: bytes, timeout: TimeoutArg
    ) -> aiohttp.ClientResponse:
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise InvalidInputError("body", f"must be JSON bytes, not {type(body).__name__}")
        return await self._transport.open(
            route, bytes(body), self._defaults.timeout_for(timeout, route.kind)
        )
