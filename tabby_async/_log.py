"""The ``tabby_async`` logger, and the fleet context its records carry.

A fleet operation sets :data:`OPERATION` (``status``, ``load``, ``rollout
batch 2``, ...) for its whole fan-out and :data:`NODE` while a node's
operation runs; tasks started inside inherit both. Every record the SDK
logs gets them as the ``extra`` fields ``tabby_operation`` and
``tabby_node`` (None outside a fleet), so that a JSON log handler can index
them. Records never hold a key: they are built from routes, node names and
error codes and messages, which hold none.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

__all__ = ["NODE", "OPERATION", "log_extra", "logger"]

#: The SDK's one logger (no handler of its own: the application decides).
logger = logging.getLogger("tabby_async")

#: The fleet operation under way in this task (None outside a fleet).
OPERATION: ContextVar[str | None] = ContextVar("tabby_operation", default=None)
#: The fleet node whose operation this task runs (None outside a fleet).
NODE: ContextVar[str | None] = ContextVar("tabby_node", default=None)


def log_extra() -> dict[str, str | None]:
    """The ``extra`` of a record logged now: the fleet operation and node, if any."""
    return {"tabby_operation": OPERATION.get(), "tabby_node": NODE.get()}
