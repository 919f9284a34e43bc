"""AsyncSamplingService: the sampler overrides of one server (``client.sampling``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _routes as R
from ._defaults import USE_CLIENT_DEFAULT, RetriesArg, TimeoutArg
from ._resource import Resource
from .types import SamplerOverrides, SamplerOverridesSwitchRequest

__all__ = ["AsyncSamplingService"]

_DEFAULT = USE_CLIENT_DEFAULT


class AsyncSamplingService(Resource):
    """Read, switch and clear the sampler overrides: ``client.sampling``.

    Overrides apply to every generation and need no loaded model; they stay
    across model loads. Beware :attr:`SamplerOverrides.selected_preset`: it
    names the last preset *loaded*, and neither switching to a dict of
    overrides nor unloading changes it, so it does not say what is active.
    ``overrides`` does.

    Each method's ``Raises`` names the errors particular to it; the errors
    any call may raise are listed on :class:`~tabby_async.AsyncTabbyClient`.
    """

    __slots__ = ()

    async def list(
        self, *, timeout: TimeoutArg = _DEFAULT, max_retries: RetriesArg = _DEFAULT
    ) -> SamplerOverrides:
        """The overrides in force, the last preset loaded, and (admin key) the presets.

        Raises:
            AuthenticationError: the server wants an api key, and the client's is missing or wrong.
        """
        return await self._call(R.SAMPLING_LIST, timeout=timeout, max_retries=max_retries)

    async def switch(
        self,
        *,
        preset: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        timeout: TimeoutArg = _DEFAULT,
    ) -> None:
        """Apply a preset by name, or a dict of overrides: exactly one of the two.

        Giving both or neither is refused before sending. An unknown preset
        raises :class:`~tabby_async.PresetNotFoundError`. The server stores
        a dict as given, without checking it, and drops its ``None`` values
        at any depth.

        Raises:
            PresetNotFoundError: no preset of that name.
            InvalidInputError: both or neither given, or a value JSON cannot
                carry, before anything is sent.
            PermissionDeniedError: the client has no valid admin key.
        """
        body = SamplerOverridesSwitchRequest(
            preset=preset, overrides=None if overrides is None else dict(overrides)
        )
        await self._call(R.SAMPLING_SWITCH, body, timeout=timeout)

    async def unload(self, *, timeout: TimeoutArg = _DEFAULT) -> None:
        """Clear the overrides (``selected_preset`` is left as it was).

        Raises:
            PermissionDeniedError: the client has no valid admin key.
        """
        await self._call(R.SAMPLING_UNLOAD, timeout=timeout)
