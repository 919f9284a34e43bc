"""What "the client's default" means for one call: one sentinel, and its resolution.

Every per-call ``timeout=`` and ``max_retries=`` of the SDK (the fleet's
included) defaults to :data:`USE_CLIENT_DEFAULT`. ``None`` is never "the
default": for a timeout it means *no bound at all*, and a retry count has no
"unbounded" form, so ``max_retries=None`` is refused.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from ._checks import check_max_retries
from ._route import CallKind
from ._timeouts import Timeout, TimeoutLike, resolve_timeout
from .errors import InvalidInputError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "USE_CLIENT_DEFAULT",
    "ClientDefaults",
    "RetriesArg",
    "TimeoutArg",
    "UseClientDefault",
    "check_max_response_bytes",
]

#: The most bytes (after decompression) the client reads of one answer. The
#: largest real answers are model lists: a folder costs about 100 bytes, so
#: this holds well over a hundred thousand of them.
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 << 20


class UseClientDefault(enum.Enum):
    """The type of :data:`USE_CLIENT_DEFAULT`; its one member is the sentinel.

    The same style as :data:`~tabby_async.FROM_ENV`'s type: a one-member
    Enum, so that it pickles as itself and a type checker can narrow on it.
    """

    USE_CLIENT_DEFAULT = "USE_CLIENT_DEFAULT"

    def __repr__(self) -> str:
        # Shown in signatures and help(): say what it means, not the enum's form.
        return "USE_CLIENT_DEFAULT"


#: "Use what the client (or fleet) was built with": the default of every
#: per-call ``timeout=`` and ``max_retries=``.
USE_CLIENT_DEFAULT: Final = UseClientDefault.USE_CLIENT_DEFAULT

#: A per-call timeout: the client's default, seconds for the whole call (the
#: default's connect and read bounds kept), a :class:`Timeout`, or ``None``
#: for no bound at all.
TimeoutArg = TimeoutLike | UseClientDefault
#: A per-call retry count (read-only calls only): the client's, or a number.
RetriesArg = int | UseClientDefault



@dataclass(frozen=True, slots=True)
class ClientDefaults:
    """A client's defaults, and the per-call values resolved against them."""

    #: Control calls (list, get, unload, ...).
    timeout: Timeout
    #: Loads, downloads and embedding loads.
    stream_timeout: Timeout
    #: Retries of read-only calls.
    max_retries: int
    #: ``stream_timeout`` without its idle bound, for silent calls.
    silent_timeout: Timeout

    @classmethod
    def build(cls, timeout: Timeout, stream_timeout: Timeout, max_retries: int) -> ClientDefaults:
        """The defaults of a client built with these settings (already checked)."""
        silent = Timeout(
            total=stream_timeout.total, connect=stream_timeout.connect, read=None
        )
        return cls(timeout, stream_timeout, max_retries, silent)

    def timeout_for(self, value: TimeoutArg, kind: CallKind = "control") -> Timeout:
        """The timeout of one call of ``kind``, from its ``timeout=`` argument."""
        if kind == "control":
            default = self.timeout
        elif kind == "stream":
            default = self.stream_timeout
        else:
            # Silent calls send nothing until they are done: an idle bound
            # would cut them off, and a cut download is cancelled on the server.
            default = self.silent_timeout
        if isinstance(value, UseClientDefault):
            return default
        return resolve_timeout(value, default)

    def retries_for(self, value: RetriesArg) -> int:
        """The retry count of one call, checked before anything is sent."""
        if isinstance(value, UseClientDefault):
            return self.max_retries
        return check_max_retries(value)


def check_max_response_bytes(value: object) -> int | None:
    """A client's ``max_response_bytes``: a positive number of bytes, or None for no bound."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(
            "max_response_bytes", "must be a positive number of bytes, or None for no bound"
        )
    return value
