"""AsyncLoraService: the LoRA adapters of one server (``client.lora``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _routes as R
from ._defaults import USE_CLIENT_DEFAULT, RetriesArg, TimeoutArg
from ._resource import Resource, build_request
from .errors import LoraLoadFailedError
from .types import LoraList, LoraLoadRequest, LoraLoadResponse

if TYPE_CHECKING:
    from typing import Unpack

    from .types import LoraLoadFields

__all__ = ["AsyncLoraService"]

_DEFAULT = USE_CLIENT_DEFAULT


class AsyncLoraService(Resource):
    """List, load and unload LoRA adapters on the loaded model: ``client.lora``.

    The server answers a load with 200 whether or not it applied the
    adapters, listing those it could not apply under ``failure``; on a server
    whose backend does not apply LoRAs (exllamav3's), that is every adapter.
    :meth:`load` therefore raises :class:`~tabby_async.LoraLoadFailedError`
    whenever ``failure`` is not empty: a 200 alone never means success.

    Each method's ``Raises`` names the errors particular to it; the errors
    any call may raise are listed on :class:`~tabby_async.AsyncTabbyClient`.
    """

    __slots__ = ()

    async def list(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> LoraList:
        """Every adapter folder with the admin key; only the active ones with an api key.

        Raises:
            ServerError: with the admin key, on a server that has no LoRA
                folder (it answers 500).
        """
        return await self._call(R.LORA_LIST, timeout=timeout, max_retries=max_retries)

    async def active(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> LoraList:
        """The adapters applied to the loaded model (``GET /v1/lora``; needs a loaded model).

        Raises:
            ModelNotLoadedError: no model is loaded.
        """
        return await self._call(R.LORA_ACTIVE, timeout=timeout, max_retries=max_retries)

    async def load(
        self,
        request: LoraLoadRequest | None = None,
        /,
        *,
        timeout: TimeoutArg = _DEFAULT,
        **fields: Unpack[LoraLoadFields],
    ) -> LoraLoadResponse:
        """Apply adapters to the loaded model (``POST /v1/lora/load``).

        ``loras`` holds :class:`~tabby_async.types.LoraLoadItem` (or dicts with
        ``name`` and ``scaling``); an empty list is refused before sending.

        Raises:
            LoraLoadFailedError: the server did not apply every adapter (it
                answers 200 all the same); ``success`` and ``failure`` list
                them.
            InvalidInputError: no adapter, or a bad field, before anything is
                sent.
            ModelNotLoadedError: no model is loaded.
            BadRequestError: the server has no LoRA folder.
            PermissionDeniedError: the client has no valid admin key.
        """
        body = build_request(LoraLoadRequest, request, fields)
        answer = await self._call(R.LORA_LOAD, body, timeout=timeout)
        if answer.failure:
            # The names come from the server's answer: a reflecting proxy could
            # put the client's keys there.
            redact = self._transport.redact.text
            failure = tuple(redact(name) for name in answer.failure)
            raise LoraLoadFailedError(
                f"the server did not apply {len(failure)} of {len(body.loras)} "
                f"LoRA adapter(s): {', '.join(failure)}",
                success=tuple(redact(name) for name in answer.success),
                failure=failure,
            )
        return answer

    async def unload(self, *, timeout: TimeoutArg = _DEFAULT) -> None:
        """Remove every adapter from the loaded model (``POST /v1/lora/unload``).

        Raises:
            ModelNotLoadedError: no model is loaded.
            PermissionDeniedError: the client has no valid admin key.
        """
        await self._call(R.LORA_UNLOAD, timeout=timeout)
