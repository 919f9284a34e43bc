"""tabby_async.fleet: drive many TabbyAPI servers as one.

::

    from tabby_async.fleet import TabbyFleet

    async with TabbyFleet.from_toml("nodes.toml") as fleet:
        print((await fleet.status()).format_table())
        report = await fleet.rollout(model_name="m", max_seq_len=8192, batch_size=4)
        print(report.summary())

Every operation fans out to the nodes with bounded concurrency and returns
one :class:`NodeResult` per node (the value or the typed error, and the time
taken) in a :class:`FleetResult`. See :class:`TabbyFleet`.
"""

from .._desired import FIELD_RULES, NOT_COMPARED, EnsureResult, FieldDiff, FieldRule, LoadPlan
from ..errors import (
    EnsureMismatchError,
    FleetError,
    NodeCancelledError,
    NodeSkippedError,
    VerificationError,
)
from ._config import NodeSpec, read_nodes_toml
from ._fanout import NodeOp, ResultCallback
from ._fleet import EventCallback, FleetModels, RunOptions, TabbyFleet
from ._results import FleetResult, NodeResult, format_table
from ._rollout import FleetEnsureReport, RolloutReport, Verifier, default_verify
from ._status import NodeStatus
from ._stream import FleetLoadEvent, FleetLoadStream

__all__ = [
    "FIELD_RULES",
    "NOT_COMPARED",
    "EnsureMismatchError",
    "EnsureResult",
    "EventCallback",
    "FieldDiff",
    "FieldRule",
    "FleetEnsureReport",
    "FleetError",
    "FleetLoadEvent",
    "FleetLoadStream",
    "FleetModels",
    "FleetResult",
    "LoadPlan",
    "NodeCancelledError",
    "NodeOp",
    "NodeResult",
    "NodeSkippedError",
    "NodeSpec",
    "NodeStatus",
    "ResultCallback",
    "RolloutReport",
    "RunOptions",
    "TabbyFleet",
    "VerificationError",
    "Verifier",
    "default_verify",
    "format_table",
    "read_nodes_toml",
]
