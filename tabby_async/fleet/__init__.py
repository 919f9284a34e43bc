"""tabby_async.fleet: drive many TabbyAPI servers as one.

::

    from tabby_async.fleet import TabbyFleet

    async with TabbyFleet.from_toml("nodes.toml") as fleet:
        health = await fleet.run(lambda node, client: client.health())
        report = await fleet.rollout(model_name="m", max_seq_len=8192, batch_size=4)
        print(report.summary())
        applied = await fleet.apply()  # each node's desired state from the nodes file
        print(applied.summary())

Every operation fans out to the nodes with bounded concurrency and returns
one :class:`NodeResult` per node (the value or the typed error, and the time
taken) in a :class:`FleetResult`. :meth:`TabbyFleet.run` runs any client
operation that way; ``fleet.models`` has the Models API;
:meth:`TabbyFleet.apply` brings each node to a whole desired state (model,
prompt template, sampler preset, embedding model), declared per node in the
nodes file (:func:`read_nodes_toml`) or given. See :class:`TabbyFleet`.
"""

from .._public import moved as _moved
from .._public import publish as _publish
from ._config import FleetOptions, NodeSpec, read_nodes_toml, read_toml
from ._errors import NodeCancelledError, NodeSkippedError, VerificationError
from ._fanout import NodeOp, ResultCallback
from ._fleet import TabbyFleet
from ._model_ensure import FleetModelReport
from ._models import (
    FleetDownloadKeywords,
    FleetEmbeddingLoadKeywords,
    FleetLoadKeywords,
    FleetLoadStreamKeywords,
    FleetModels,
)
from ._results import FleetError, FleetResult, NodeResult
from ._rollout import (
    BatchCallback,
    NodeCheck,
    RolloutReport,
    StateCheck,
    default_check,
    default_state_check,
)
from ._runner import FleetProgressCallback, RunOptions, StreamOptions
from ._state_apply import FleetStateReport
from ._status import NodeStatus
from ._stream import FleetLoadEvent, FleetLoadStream

__all__ = [
    "BatchCallback",
    "FleetDownloadKeywords",
    "FleetEmbeddingLoadKeywords",
    "FleetError",
    "FleetLoadEvent",
    "FleetLoadKeywords",
    "FleetLoadStream",
    "FleetLoadStreamKeywords",
    "FleetModelReport",
    "FleetModels",
    "FleetOptions",
    "FleetProgressCallback",
    "FleetResult",
    "FleetStateReport",
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
    "StreamOptions",
    "TabbyFleet",
    "VerificationError",
    "default_check",
    "default_state_check",
    "read_nodes_toml",
    "read_toml",
]

_publish(globals(), __all__, __name__)

#: Desired-state names this module also offered, kept for one release with a
#: DeprecationWarning: name -> its one home.
_MOVED: dict[str, str] = {
    "DesiredState": "tabby_async",
    "EnsureMismatchError": "tabby_async:ModelMismatchError",
    "FleetEnsureReport": "tabby_async.fleet:FleetModelReport",
    "StateMismatchError": "tabby_async",
    "StatePlan": "tabby_async",
    "StateResult": "tabby_async",
    "FIELD_RULES": "tabby_async.desired",
    "NOT_COMPARED": "tabby_async.desired",
    "EnsureResult": "tabby_async.desired:ModelResult",
    "FieldDiff": "tabby_async.desired",
    "FieldRule": "tabby_async.desired",
    "LoadPlan": "tabby_async.desired:ModelPlan",
}

__getattr__ = _moved(__name__, _MOVED)
