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
from ._desired import (
    FIELD_RULES,
    NOT_COMPARED,
    EnsureResult,
    FieldDiff,
    FieldRule,
    LoadPlan,
)
from ._public import publish as _publish
from ._state import PartPlan

__all__ = [
    "FIELD_RULES",
    "NOT_COMPARED",
    "EnsureResult",
    "FieldDiff",
    "FieldRule",
    "LoadPlan",
    "PartPlan",
    "reported_template",
    "same_template",
    "template_stem",
]

_publish(globals(), __all__, __name__)
