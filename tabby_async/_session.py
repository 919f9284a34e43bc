"""Sessions: the aiohttp sessions one client sends on, made on first use or borrowed.

A client made without ``session=`` owns two sessions, created lazily in the
running event loop: one pool of connections for control calls and one for
loads and downloads, which hold a connection for minutes and would otherwise
leave none for a ``list()``. A session passed in is borrowed: used for both
kinds and never closed. Either way the sessions belong to one event loop.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Sequence

import aiohttp

from .errors import ClientStateError

__all__ = ["Sessions"]


class Sessions:
    """The control and long-call sessions of one client."""

    __slots__ = (
        "_closed",
        "_control",
        "_limit",
        "_long",
        "_loop",
        "_owns",
        "_trace_configs",
    )

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        *,
        connection_limit: int,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
    ) -> None:
        self._control = session
        self._long: aiohttp.ClientSession | None = None
        self._owns = session is None
        self._limit = connection_limit
        self._trace_configs = tuple(trace_configs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def owned(self) -> bool:
        """True when the sessions are the client's own (made and closed by it)."""
        return self._owns

    def control(self) -> aiohttp.ClientSession:
        """The session for a control call now, in the running loop."""
        loop = asyncio.get_running_loop()
        session = self._control
        if self._closed:
            raise ClientStateError("the client is closed")
        if session is not None and self._loop is loop:
            return session
        if self._loop is not None and self._loop is not loop:
            raise ClientStateError(
                "this client was first used in another event loop; "
                "create one AsyncTabbyClient per event loop"
            )
        if session is None:
            session = self._control = self._new()
        elif session.closed:
            raise ClientStateError("the aiohttp session passed to the client is closed")
        elif _session_loop(session) not in (None, loop):
            raise ClientStateError(
                "the aiohttp session passed to the client belongs to another event loop; "
                "create the session in the loop that uses the client"
            )
        self._loop = loop
        return session

    def long(self) -> aiohttp.ClientSession:
        """The session for loads and downloads: the second pool (or the borrowed session)."""
        session = self.control()
        if not self._owns:
            return session
        long = self._long
        if long is None:
            long = self._long = self._new()
        return long

    def _new(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._limit),
            trace_configs=list(self._trace_configs) or None,
        )

    async def aclose(self) -> None:
        """Close the sessions the client made (a borrowed one stays open); idempotent."""
        if self._closed:
            return
        self._closed = True
        control, self._control = self._control, None
        long, self._long = self._long, None
        if self._owns:
            for own in (control, long):
                if own is not None:
                    await own.close()


def _session_loop(session: aiohttp.ClientSession) -> asyncio.AbstractEventLoop | None:
    """The event loop ``session`` was made in; None when aiohttp does not say."""
    # ClientSession.loop is public but deprecated (a DeprecationWarning on
    # every read); it is read once per client, on first use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = getattr(session, "loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None
