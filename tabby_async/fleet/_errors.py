"""The fleet's errors about one node: its check failed, it never started, it was cancelled.

Each is a :class:`~tabby_async.TabbyError` with a stable ``code``, held in
the node's :class:`~tabby_async.fleet.NodeResult`. ``FleetError``, which
carries a whole :class:`~tabby_async.fleet.FleetResult`, lives beside it.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import ErrorCode, TabbyError

__all__ = ["NodeCancelledError", "NodeSkippedError", "VerificationError"]


class VerificationError(TabbyError):
    """A node loaded, but the rollout's check after its batch did not pass."""

    code: ClassVar[ErrorCode] = "verify_failed"


class NodeSkippedError(TabbyError):
    """The operation never started on this node (``fail_fast``, or a halted rollout)."""

    code: ClassVar[ErrorCode] = "skipped"


class NodeCancelledError(TabbyError):
    """The operation was running on this node and was cancelled (``fail_fast``).

    Cancelling a load stream closes the connection; the server finishes the
    load anyway.
    """

    code: ClassVar[ErrorCode] = "cancelled"
