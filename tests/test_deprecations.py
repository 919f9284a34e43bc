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
import tabby_async.fleet

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
    "EnsureMismatchError",
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
    ("tabby_async", "LoadPlan", "tabby_async.desired", "LoadPlan"),
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
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} is deprecated.* {new}"):
        found = getattr(importlib.import_module(old), name)
    assert found is getattr(importlib.import_module(new), new_name)


@pytest.mark.parametrize("module", [tabby_async, tabby_async.fleet])
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
