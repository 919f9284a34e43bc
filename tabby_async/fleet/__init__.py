"""tabby_async.fleet: drive many TabbyAPI servers as one.

::

    from tabby_async.fleet import TabbyFleet

    async with TabbyFleet.from_toml("nodes.toml") as fleet:
        health = await fleet.run(lambda node, client: client.health())
        report = await fleet.rollout(model_name="m", max_seq_len=8192, batch_size=4)
        print(report.summary())

Every operation fans out to the nodes with bounded concurrency and returns
one :class:`NodeResult` per node (the value or the typed error, and the time
taken) in a :class:`FleetResult`. :meth:`TabbyFleet.run` runs any client
operation that way; ``fleet.models`` has the Models API. See
:class:`TabbyFleet`.
"""

from .._desired import FIELD_RULES, NOT_COMPARED, EnsureResult, FieldDiff, FieldRule, LoadPlan
from ..errors import (
    EnsureMismatchError,
    FleetError,
    NodeCancelledError,
    NodeSkippedError,
    VerificationError,
)
from ._config import FleetOptions, NodeSpec, read_nodes_toml
from ._ensure import FleetEnsureReport
from ._fanout import NodeOp, ResultCallback
from ._fleet import TabbyFleet
from ._models import FleetModels
from ._results import FleetResult, NodeResult
from ._rollout import BatchCallback, NodeCheck, RolloutReport, default_check
from ._runner import FleetProgressCallback, RunOptions
from ._status import NodeStatus
from ._stream import FleetLoadEvent, FleetLoadStream

__all__ = [
    "FIELD_RULES",
    "NOT_COMPARED",
    "BatchCallback",
    "EnsureMismatchError",
    "EnsureResult",
    "FieldDiff",
    "FieldRule",
    "FleetEnsureReport",
    "FleetError",
    "FleetLoadEvent",
    "FleetLoadStream",
    "FleetModels",
    "FleetOptions",
    "FleetProgressCallback",
    "FleetResult",
    "LoadPlan",
    "NodeCancelledError",
    "NodeCheck",
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
    "default_check",
    "read_nodes_toml",
]
