"""tabby_async.desired: how desired state compares a request with what the server reports.

The plans and results of one model's desired state
(:meth:`~tabby_async.services.AsyncModelsService.plan_load` and
``ensure_loaded``), the table of how each load field is compared
(:data:`FIELD_RULES`, and :data:`NOT_COMPARED` for the fields the server
never reports back), and the server's rule for template names. A node's
whole desired state (:class:`~tabby_async.DesiredState`, its plan and its
result) is at the top level::

    from tabby_async.desired import FIELD_RULES

    for rule in FIELD_RULES:
        print(rule.field, rule.how)
"""

from ._compare import reported_template, same_template, template_stem
from ._model_plan import (
    FIELD_RULES,
    NOT_COMPARED,
    FieldDiff,
    FieldRule,
    ModelPlan,
    ModelResult,
)
from ._public import moved as _moved
from ._public import publish as _publish
from ._state_plan import PartPlan

__all__ = [
    "FIELD_RULES",
    "NOT_COMPARED",
    "FieldDiff",
    "FieldRule",
    "ModelPlan",
    "ModelResult",
    "PartPlan",
    "reported_template",
    "same_template",
    "template_stem",
]

_publish(globals(), __all__, __name__)

#: The model's plan and result before they were named for the model (as the
#: node's are StatePlan and StateResult), kept for one release.
_MOVED: dict[str, str] = {
    "EnsureResult": "tabby_async.desired:ModelResult",
    "LoadPlan": "tabby_async.desired:ModelPlan",
}

__getattr__ = _moved(__name__, _MOVED)
