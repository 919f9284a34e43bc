"""The 1.0 shape: the top level's first-hour names, and every old spelling still working, warning.

Names that moved to another public module (or were renamed) are served from
their old place for one release with a DeprecationWarning that names the new
spelling; the object is the same one.
"""

from __future__ import annotations

import importlib
import pickle
import warnings

import pytest

import tabby_async
import tabby_async.desired
import tabby_async.fleet
import tabby_async.services
from tabby_async import AsyncTabbyClient, DesiredState, ModelLoadRequest
from tabby_async.fleet import NodeSpec, TabbyFleet
from tabby_async.testing import TabbyEmulator

#: What a user types in the first hour: the top level holds these and no more.
FIRST_HOUR = {
    # the client and what every call shares
    "AsyncTabbyClient",
    "LoadStream",
    "Timeout",
    "TimeoutArg",
    "RetriesArg",
    "USE_CLIENT_DEFAULT",
    "UseClientDefault",
    "FROM_ENV",
    "FromEnv",
    "ENV_URL",
    "ENV_API_KEY",
    "ENV_ADMIN_KEY",
    "DEFAULT_URL",
    "__version__",
    # the model requests
    "ModelLoadRequest",
    "DraftModelLoadRequest",
    "EmbeddingModelLoadRequest",
    "DownloadRequest",
    # a server's desired state
    "DesiredState",
    "StatePlan",
    "StateResult",
    # the errors
    "TabbyError",
    "InvalidInputError",
    "ClientStateError",
    "TabbyConnectionError",
    "TabbyTimeoutError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "StreamError",
    "LoadFailedError",
    "LoraLoadFailedError",
    "APIStatusError",
    "AuthenticationError",
    "PermissionDeniedError",
    "BadRequestError",
    "NotFoundError",
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "AlreadyLoadedError",
    "PresetNotFoundError",
    "TemplateNotFoundError",
    "NoTemplateError",
    "UnprocessableEntityError",
    "RateLimitError",
    "ServerError",
    "ModelMismatchError",
    "StateMismatchError",
}


def test_the_top_level_holds_the_first_hour_names_only() -> None:
    assert set(tabby_async.__all__) == FIRST_HOUR


#: (old module, old name, new module, new name): a sample of every kind of move.
MOVES = [
    ("tabby_async", "ModelList", "tabby_async.types", "ModelList"),
    ("tabby_async", "ModelCard", "tabby_async.types", "ModelCard"),
    ("tabby_async", "ModelLoadFields", "tabby_async.types", "ModelLoadFields"),
    ("tabby_async", "AsyncModelsService", "tabby_async.services", "AsyncModelsService"),
    ("tabby_async", "ProgressCallback", "tabby_async.services", "ProgressCallback"),
    ("tabby_async", "FIELD_RULES", "tabby_async.desired", "FIELD_RULES"),
    ("tabby_async", "LoadPlan", "tabby_async.desired", "ModelPlan"),
    ("tabby_async", "EnsureResult", "tabby_async.desired", "ModelResult"),
    ("tabby_async", "EnsureMismatchError", "tabby_async", "ModelMismatchError"),
    ("tabby_async.desired", "LoadPlan", "tabby_async.desired", "ModelPlan"),
    ("tabby_async.desired", "EnsureResult", "tabby_async.desired", "ModelResult"),
    ("tabby_async.fleet", "FleetEnsureReport", "tabby_async.fleet", "FleetModelReport"),
    ("tabby_async.fleet", "LoadPlan", "tabby_async.desired", "ModelPlan"),
    ("tabby_async.errors", "EnsureMismatchError", "tabby_async", "ModelMismatchError"),
    ("tabby_async", "ErrorCode", "tabby_async.errors", "ErrorCode"),
    ("tabby_async", "FleetError", "tabby_async.fleet", "FleetError"),
    ("tabby_async.fleet", "DesiredState", "tabby_async", "DesiredState"),
    ("tabby_async.fleet", "NOT_COMPARED", "tabby_async.desired", "NOT_COMPARED"),
    ("tabby_async.errors", "StateMismatchError", "tabby_async", "StateMismatchError"),
    ("tabby_async.errors", "VerificationError", "tabby_async.fleet", "VerificationError"),
]


@pytest.mark.parametrize(("old", "name", "new", "new_name"), MOVES)
def test_an_old_spelling_still_works_and_names_the_new_one(
    old: str, name: str, new: str, new_name: str
) -> None:
    said = rf"{old}\.{name} is deprecated: use {new}\.{new_name}"
    with pytest.warns(DeprecationWarning, match=said):
        found = getattr(importlib.import_module(old), name)
    assert found is getattr(importlib.import_module(new), new_name)


@pytest.mark.parametrize("module", [tabby_async, tabby_async.fleet, tabby_async.desired])
def test_every_moved_name_resolves_to_its_home(module: object) -> None:
    moved: dict[str, str] = vars(module)["_MOVED"]
    assert moved, "the table of moved names is empty"
    for name, home in moved.items():
        where, _, new = home.partition(":")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            found = getattr(module, name)
        assert [w.category for w in seen] == [DeprecationWarning], name
        assert found is getattr(importlib.import_module(where), new or name)
        assert name not in vars(module)["__all__"]


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        tabby_async.Nope  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.parametrize(
    ("obj", "module"),
    [
        (tabby_async.AsyncTabbyClient, "tabby_async"),
        (tabby_async.ModelNotFoundError, "tabby_async"),
        (tabby_async.LoadStream, "tabby_async"),
        (tabby_async.fleet.TabbyFleet, "tabby_async.fleet"),
        (tabby_async.fleet.read_nodes_toml, "tabby_async.fleet"),
    ],
)
def test_public_names_report_their_public_module(obj: object, module: str) -> None:
    assert obj.__module__ == module
    assert repr(obj).find("._") == -1  # no private module in the repr


def test_an_error_pickles_through_its_public_module() -> None:
    err = tabby_async.ModelNotFoundError("no such folder", status=400)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is tabby_async.ModelNotFoundError and copy.status == 400


@pytest.mark.emulator(models=["alpha"])
async def test_client_ensure_is_apply_under_its_old_name(server: TabbyEmulator) -> None:
    state = DesiredState(model=ModelLoadRequest(model_name="alpha"))
    async with AsyncTabbyClient(server.url, admin_key=server.admin_key) as client:
        with pytest.warns(DeprecationWarning, match="AsyncTabbyClient.ensure is deprecated"):
            old = await client.ensure(state, dry_run=True)
        assert old == await client.apply(state, dry_run=True)
        assert old.plan.changes  # a real plan: nothing is loaded yet


@pytest.mark.emulator(models=["alpha"])
async def test_fleet_ensure_is_apply_under_its_old_name(server: TabbyEmulator) -> None:
    state = DesiredState(model=ModelLoadRequest(model_name="alpha"))
    spec = NodeSpec("a", server.url, admin_key=server.admin_key)
    async with TabbyFleet([spec]) as fleet:
        with pytest.warns(DeprecationWarning, match="TabbyFleet.ensure is deprecated"):
            old = await fleet.ensure(state)
        assert old.results is not None and old.results["a"].ok
        again = await fleet.apply(state)
        assert again.results is not None and not again.results["a"].unwrap().changed


def test_the_old_models_module_warns_and_hands_on_the_service() -> None:
    import sys

    sys.modules.pop("tabby_async.models", None)
    with pytest.warns(DeprecationWarning, match="tabby_async.models is deprecated"):
        old = importlib.import_module("tabby_async.models")
    assert old.AsyncModelsService is tabby_async.services.AsyncModelsService
