"""Timeouts: what the user sets, and how it becomes an aiohttp ClientTimeout."""

from __future__ import annotations

import math
from dataclasses import dataclass

import aiohttp

from .errors import InvalidInputError

__all__ = [
    "DEFAULT_STREAM_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "NO_BOUND",
    "Timeout",
    "TimeoutLike",
    "resolve_timeout",
]


@dataclass(frozen=True)
class Timeout:
    """Three bounds, in seconds; ``None`` means no bound.

    - ``total``: the whole call, retries and their waits included.
    - ``connect``: opening the TCP (and TLS) connection.
    - ``read``: the longest silence while waiting for the answer's next bytes.
      On a load stream the server pings every 15 s by default, so the read
      bound is what notices a dead server there.
    """

    total: float | None = None
    connect: float | None = None
    read: float | None = None

    def __post_init__(self) -> None:
        for name in ("total", "connect", "read"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInputError(f"timeout.{name}", f"must be seconds, not {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise InvalidInputError(f"timeout.{name}", f"must be > 0 seconds, got {value}")

        # Built once: most calls use one of a few Timeout objects as they are.
        object.__setattr__(self, "_aiohttp", self.to_aiohttp())

    def to_aiohttp(self, total: float | None = None) -> aiohttp.ClientTimeout:
        """The aiohttp form, with ``total`` replaced by what is left of it."""
        if total is None and "_aiohttp" in self.__dict__:
            cached: aiohttp.ClientTimeout = self.__dict__["_aiohttp"]
            return cached
        return aiohttp.ClientTimeout(
            total=self.total if total is None else total,
            sock_connect=self.connect,
            sock_read=self.read,
        )


TimeoutLike = float | Timeout | None

#: Control calls (list, get, unload, ...): they answer in milliseconds. No
#: separate read bound: the total covers it, and an idle timer re-armed on
#: every received chunk costs measurable CPU on large listings.
DEFAULT_TIMEOUT = Timeout(total=30.0, connect=10.0, read=None)

#: Loads and downloads: a 70B load or a download takes many minutes, so no
#: total; the read bound sits well above the server's 15 s ping interval.
DEFAULT_STREAM_TIMEOUT = Timeout(total=None, connect=10.0, read=60.0)


#: No bound of any kind: what ``timeout=None`` means, per call and per client.
NO_BOUND = Timeout()


def resolve_timeout(value: TimeoutLike, default: Timeout, field: str = "timeout") -> Timeout:
    """A ``timeout=`` value against a default (``field`` names it in an error).

    ``None`` means no bound at all. A bare number replaces the total and
    keeps the default's connect and read bounds.
    """
    if value is None:
        return NO_BOUND
    if isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(field, f"must be seconds, a Timeout or None, not {value!r}")
    return Timeout(total=float(value), connect=default.connect, read=default.read)
