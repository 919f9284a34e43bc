"""tabby_async.fleet: drive many TabbyAPI servers as one.

::

    from tabby_async.fleet import TabbyFleet

    async with TabbyFleet.from_toml("nodes.toml") as fleet:
        health = await fleet.run(lambda node, client: client.health())
        report = await fleet.rollout(model_name="m", max_seq_len=8192, batch_size=4)
        print(report.summary())
        applied = await fleet.ensure()  # each node's desired state from the nodes file
        print(applied.summary())

Every operation fans out to the nodes with bounded concurrency and returns
one :class:`NodeResult` per node (the value or the typed error, and the time
taken) in a :class:`FleetResult`. :meth:`TabbyFleet.run` runs any client
operation that way; ``fleet.models`` has the Models API;
:meth:`TabbyFleet.ensure` brings each node to a whole desired state (model,
prompt template, sampler preset, embedding model), declared per node in the
nodes file (:func:`read_nodes_toml`) or given. See :class:`TabbyFleet`.
"""

from .._desired import (
    FIELD_RULES,
    NOT_COMPARED,
    EnsureMismatchError,
    EnsureResult,
    FieldDiff,
    FieldRule,
    LoadPlan,
)
from .._state import DesiredState, StateMismatchError, StatePlan, StateResult
from ._apply import FleetStateReport
from ._config import FleetOptions, NodeSpec, read_nodes_toml
from ._ensure import FleetEnsureReport
from ._errors import NodeCancelledError, NodeSkippedError, VerificationError
from ._fanout import NodeOp, ResultCallback
from ._fleet import TabbyFleet
from ._models import FleetModels
from ._results import FleetError, FleetResult, NodeResult
from ._rollout import (
    BatchCallback,
    NodeCheck,
    RolloutReport,
    StateCheck,
    default_check,
    default_state_check,
)
from ._runner import FleetProgressCallback, RunOptions
from ._status import NodeStatus
from ._stream import FleetLoadEvent, FleetLoadStream

__all__ = [
    "FIELD_RULES",
    "NOT_COMPARED",
    "BatchCallback",
    "DesiredState",
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
    "FleetStateReport",
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
    "StateCheck",
    "StateMismatchError",
    "StatePlan",
    "StateResult",
    "TabbyFleet",
    "VerificationError",
    "default_check",
    "default_state_check",
    "read_nodes_toml",
]
