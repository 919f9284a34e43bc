"""Configuration from TABBY_URL / TABBY_API_KEY / TABBY_ADMIN_KEY: the rule and the client."""

from __future__ import annotations

import pytest
from yarl import URL

from tabby_async import AsyncTabbyClient, AuthenticationError, InvalidInputError
from tabby_async._env import (
    DEFAULT_URL,
    ENV_ADMIN_KEY,
    ENV_API_KEY,
    ENV_URL,
    FROM_ENV,
    FromEnv,
    Setting,
    resolve_key,
    resolve_url,
)
from tabby_async.cli import common as cli_common
from tabby_async.fleet import NodeSpec, TabbyFleet
from tabby_async.testing import TabbyEmulator

SECRET = "s3cret-value-never-shown"

# --- the rule, as a table -------------------------------------------------------------

KEY_CASES: list[tuple[str, str | FromEnv | None, dict[str, str], Setting]] = [
    ("not given, unset: no key", FROM_ENV, {}, Setting(None, "api_key")),
    ("not given, set: the variable", FROM_ENV, {ENV_API_KEY: "k"}, Setting("k", ENV_API_KEY)),
    ("not given, empty: no key", FROM_ENV, {ENV_API_KEY: ""}, Setting(None, "api_key")),
    ("given: the argument", "arg", {ENV_API_KEY: "env"}, Setting("arg", "api_key")),
    ("explicit None: no key, env not read", None, {ENV_API_KEY: "env"}, Setting(None, "api_key")),
    ("given empty: passed on to be refused", "", {ENV_API_KEY: "env"}, Setting("", "api_key")),
    ("other variable ignored", FROM_ENV, {ENV_ADMIN_KEY: "a"}, Setting(None, "api_key")),
]


@pytest.mark.parametrize(
    ("given", "environ", "expected"),
    [case[1:] for case in KEY_CASES],
    ids=[case[0] for case in KEY_CASES],
)
def test_resolve_key(
    given: str | FromEnv | None, environ: dict[str, str], expected: Setting
) -> None:
    assert resolve_key(given, "api_key", ENV_API_KEY, environ) == expected


URL_CASES: list[tuple[str, str | URL | None, dict[str, str], tuple[str | URL, str]]] = [
    ("not given, unset: the default", None, {}, (DEFAULT_URL, "base_url")),
    ("not given, set", None, {ENV_URL: "http://h:1"}, ("http://h:1", ENV_URL)),
    ("not given, empty: the default", None, {ENV_URL: ""}, (DEFAULT_URL, "base_url")),
    ("given wins", "http://a:2", {ENV_URL: "http://h:1"}, ("http://a:2", "base_url")),
    ("a yarl URL passes through", URL("http://a:3"), {}, (URL("http://a:3"), "base_url")),
]


@pytest.mark.parametrize(
    ("given", "environ", "expected"),
    [case[1:] for case in URL_CASES],
    ids=[case[0] for case in URL_CASES],
)
def test_resolve_url(
    given: str | URL | None, environ: dict[str, str], expected: tuple[str | URL, str]
) -> None:
    assert resolve_url(given, environ) == expected


def test_one_definition_of_the_names_for_the_sdk_and_the_cli() -> None:
    assert (cli_common.ENV_URL, cli_common.ENV_API_KEY, cli_common.ENV_ADMIN_KEY) == (
        "TABBY_URL",
        "TABBY_API_KEY",
        "TABBY_ADMIN_KEY",
    )
    assert cli_common.ENV_URL is ENV_URL
    assert cli_common.DEFAULT_URL is DEFAULT_URL


def test_the_sentinel_reads_as_what_it_means() -> None:
    assert repr(FROM_ENV) == "FROM_ENV"


# --- the client -----------------------------------------------------------------------


# conftest.py clears the three variables before each test.


async def test_no_arguments_reads_all_three(monkeypatch: pytest.MonkeyPatch) -> None:
    async with TabbyEmulator(models=["a", "b"], auth=True) as server:
        monkeypatch.setenv(ENV_URL, server.url)
        monkeypatch.setenv(ENV_API_KEY, server.api_key)
        monkeypatch.setenv(ENV_ADMIN_KEY, server.admin_key)
        async with AsyncTabbyClient() as client:
            assert str(client.base_url) == server.url + "/"
            # Every folder is listed only to admin permission: the admin key was sent.
            assert (await client.models.list()).ids == ["a", "b"]
            assert (await client.permission()).permission == "admin"
            await client.models.load(model_name="a")
        assert server.loaded == "a"


async def test_nothing_set_keeps_the_old_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    client = AsyncTabbyClient()
    assert str(client.base_url) == DEFAULT_URL + "/"
    assert repr(client) == (
        "AsyncTabbyClient(base_url='http://127.0.0.1:5000/', api_key=None, admin_key=None)"
    )


async def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with TabbyEmulator(models=["a"], auth=True) as server:
        monkeypatch.setenv(ENV_URL, "http://127.0.0.1:1")  # nothing listens there
        monkeypatch.setenv(ENV_API_KEY, "wrong-api-key")
        monkeypatch.setenv(ENV_ADMIN_KEY, "wrong-admin-key")
        async with AsyncTabbyClient(server.url, api_key=server.api_key, admin_key=None) as client:
            assert (await client.permission()).permission == "api"
        # Explicit None for both: no key is sent, so the server asks for one.
        async with AsyncTabbyClient(server.url, api_key=None, admin_key=None) as client:
            with pytest.raises(AuthenticationError):
                await client.models.list()
        assert all(
            "x-api-key" not in r.headers and "x-admin-key" not in r.headers
            for r in server.requests
            if r.path == "/v1/model/list"
        )


async def test_url_from_the_environment_keys_given(monkeypatch: pytest.MonkeyPatch) -> None:
    async with TabbyEmulator(models=["a"], auth=True) as server:
        monkeypatch.setenv(ENV_URL, server.url + "/v1/")
        async with AsyncTabbyClient(api_key=server.api_key) as client:
            assert (await client.permission()).permission == "api"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        (ENV_API_KEY, f" {SECRET} ", "surrounding spaces"),
        (ENV_ADMIN_KEY, f"{SECRET}\n", "surrounding spaces"),
        (ENV_ADMIN_KEY, f"{SECRET}\r\nX-Evil: 1", "line breaks"),
        (ENV_URL, "not a url", "http(s) URL"),
        (ENV_URL, f"http://user:{SECRET}@host:5000", "credentials"),
        (ENV_URL, f"user:{SECRET}@host:5000", "http(s) URL"),
    ],
)
def test_a_bad_value_names_the_variable_and_hides_the_secret(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidInputError) as info:
        AsyncTabbyClient()
    err = info.value
    assert err.field == variable
    assert problem in str(err)
    assert SECRET not in str(err) and SECRET not in repr(err)
    assert err.__cause__ is None or SECRET not in str(err.__cause__)


def test_a_bad_argument_still_names_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_API_KEY, "fine")
    with pytest.raises(InvalidInputError) as info:
        AsyncTabbyClient(api_key=" bad ")
    assert info.value.field == "api_key"


def test_keys_from_the_environment_stay_out_of_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_API_KEY, SECRET)
    monkeypatch.setenv(ENV_ADMIN_KEY, SECRET + "-admin")
    client = AsyncTabbyClient()
    assert SECRET not in repr(client)
    assert "api_key=<set>" in repr(client) and "admin_key=<set>" in repr(client)


async def test_fleet_nodes_do_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A node without keys gets none: TABBY_* keys are for one server, not every node.
    monkeypatch.setenv(ENV_API_KEY, SECRET)
    monkeypatch.setenv(ENV_ADMIN_KEY, SECRET)
    async with TabbyEmulator(models=["a"], auth=False) as server:
        async with TabbyFleet([NodeSpec(name="n1", url=server.url)]) as fleet:
            client = fleet.client("n1")
            assert "api_key=None" in repr(client) and "admin_key=None" in repr(client)
            (result,) = await fleet.models.list()
            assert result.ok
        assert server.requests
        assert all("x-api-key" not in r.headers for r in server.requests)


def test_the_demo_ignores_exported_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo's emulator has its own keys; exported ones (for the user's own
    # server) must not replace the keys its clients leave out on purpose.
    from tabby_async import cli

    monkeypatch.setenv(ENV_API_KEY, "the-users-own-api-key")
    monkeypatch.setenv(ENV_ADMIN_KEY, "the-users-own-admin-key")
    assert cli.main(["demo"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    # "only the api key" really is: no admin key was sent (not the user's, refused).
    assert "PermissionDeniedError (code 'permission_error'): Please provide an admin key" in out
    assert "done: the emulator is stopped." in out


def test_a_wrapper_can_forward_the_public_sentinel(monkeypatch: pytest.MonkeyPatch) -> None:
    import tabby_async

    def make_client(api_key: str | tabby_async.FromEnv | None = tabby_async.FROM_ENV) -> str:
        return repr(AsyncTabbyClient(api_key=api_key))

    assert tabby_async.FROM_ENV is FROM_ENV
    monkeypatch.setenv(ENV_API_KEY, SECRET)
    assert "api_key=<set>" in make_client()
    assert "api_key=None" in make_client(None)
