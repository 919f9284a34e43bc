"""Testing your own app: the ``testing`` extra, the plugin's first run, the factory's type, faults.

A user installs ``tabby-async[testing]`` and writes tests with the plugin's
fixtures. The extra must hold what the plugin imports and no more; a project
that has not configured pytest-asyncio gets no notice from it on its first run;
``tabby_emulator_factory``'s keywords are checked by ``mypy --strict`` (the
snippets follow ``test_typing.py``); ``fail_next`` answers with its status's
own reason phrase.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import aiohttp
import pytest
from mypy import api as mypy_api
from packaging.requirements import Requirement

from tabby_async.testing import TabbyEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
NOTICE = "asyncio_default_fixture_loop_scope"

# --- the extra ---------------------------------------------------------------------------


def test_the_testing_extra_is_pytest_and_pytest_asyncio() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {Requirement(r).name for r in extras["testing"]} == {"pytest", "pytest-asyncio"}
    # Our toolchain holds it, rather than pinning them a second time.
    test = [Requirement(r) for r in extras["test"]]
    (own,) = [r for r in test if r.name == "tabby-async"]
    assert "testing" in own.extras
    assert not {r.name for r in test} & {"pytest", "pytest-asyncio"}


def _distributions(requirements: list[Requirement]) -> set[str]:
    """The installed distributions ``requirements`` need, transitively (markers applied)."""
    found: set[str] = set()
    todo = [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        name = todo.pop().name.lower().replace("_", "-")
        if name in found:
            continue
        found.add(name)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req)
    return found


def _install(names: set[str], folder: Path) -> None:
    """``folder`` as a site holding only these distributions (links to their files)."""
    for name in names:
        dist = metadata.distribution(name)
        for file in dist.files or []:
            top = file.parts[0]
            link = folder / top
            if top in ("..", "__pycache__") or link.exists():
                continue  # scripts beside the site, caches
            link.symlink_to(Path(str(dist.locate_file(top))))


def test_the_plugin_needs_nothing_beyond_the_dependencies_and_the_testing_extra(
    tmp_path: Path,
) -> None:
    project = PYPROJECT["project"]
    needed = [Requirement(r) for r in project["dependencies"]]
    needed += [Requirement(r) for r in project["optional-dependencies"]["testing"]]
    names = _distributions(needed)
    assert not names & {"rich", "pyyaml", "prometheus-client", "hypothesis"}
    _install(names - {"tabby-async"}, tmp_path)
    # -S: no site-packages, so the interpreter sees only that site and the checkout.
    code = (
        "import sys, tabby_async.testing.pytest_plugin as plugin\n"
        "assert 'pytest_asyncio' in sys.modules and 'rich' not in sys.modules\n"
        "print(plugin.tabby_emulator_factory)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard only
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    import_site = [sys.executable, "-S", "-c", "import rich"]
    hidden = subprocess.run(
        import_site, env={"PYTHONPATH": str(tmp_path)}, capture_output=True, check=False
    )
    assert hidden.returncode == 1  # the site really leaves the rest out


# --- the first run ------------------------------------------------------------------------

FIRST_TEST = '''\
import aiohttp
import pytest


@pytest.mark.asyncio
async def test_it(tabby_emulator, tabby_emulator_factory):
    other = await tabby_emulator_factory(models=["m"])
    async with aiohttp.ClientSession() as http:
        for server in (tabby_emulator, other):
            async with http.get(server.url + "/health") as r:
                assert r.status == 200
'''


def _run_pytest(folder: Path, ini: str, test: str, *options: str) -> str:
    """A user's project in ``folder``: its pytest.ini and one test file, run by pytest."""
    (folder / "pytest.ini").write_text("[pytest]\n" + ini, encoding="utf-8")
    (folder / "test_app.py").write_text(test, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,  # a hang guard only
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_a_first_run_in_an_unconfigured_project_has_no_loop_scope_notice(tmp_path: Path) -> None:
    out = _run_pytest(tmp_path, "", FIRST_TEST, "-W", "error")
    assert "1 passed" in out
    assert NOTICE not in out


def test_the_notice_is_pytest_asyncios_and_the_plugin_is_what_silences_it(
    tmp_path: Path,
) -> None:
    plain = "import pytest\n\n\n@pytest.mark.asyncio\nasync def test_it():\n    pass\n"
    out = _run_pytest(tmp_path, "", plain, "-p", "no:tabby_async")
    assert f'The configuration option "{NOTICE}" is unset' in out


def test_the_fixtures_run_on_the_tests_loop_whatever_the_default_loop_scope(
    tmp_path: Path,
) -> None:
    # With a session default, a fixture without its own loop scope would serve
    # from a loop that is idle while the test runs: the request would hang.
    guarded = FIRST_TEST.replace(
        "async with http.get(server.url + \"/health\") as r:",
        "async with http.get(server.url + \"/health\", timeout=aiohttp.ClientTimeout(10)) as r:",
    )
    out = _run_pytest(tmp_path, f"{NOTICE} = session\n", guarded)
    assert "1 passed" in out


# --- the factory's type -------------------------------------------------------------------


def test_the_factory_protocol_has_the_emulators_arguments() -> None:
    def without_self(function: object) -> list[inspect.Parameter]:
        return list(inspect.signature(function).parameters.values())[1:]  # type: ignore[arg-type]

    assert without_self(EmulatorFactory.__call__) == without_self(TabbyEmulator.__init__)


#: (id, a line in ``async def case(factory: EmulatorFactory)``, the mypy error codes).
FACTORY_CASES: list[tuple[str, str, set[str]]] = [
    ("ok", 'server = await factory(models=["m"], reply_tokens=3, auth=False)', set()),
    ("positional-models", 'server = await factory(["m", EmulatedModel("n")])', set()),
    ("typed-result", 'url: str = (await factory()).url', set()),
    ("misspelt", 'await factory(model=["m"])', {"call-arg"}),
    ("mistyped", 'await factory(reply_tokens="3")', {"arg-type"}),
    ("drafts-positional", 'await factory(["m"], ["d"])', {"call-arg"}),
    ("not-awaited-is-a-coroutine", "factory().url", {"attr-defined"}),
]
ERROR_LINE = re.compile(r"^.*?:(\d+): error: .*\[([a-z-]+)\]$")


@pytest.fixture(scope="module")
def factory_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The error codes ``mypy --strict`` gives each case, from one run over all of them."""
    folder = tmp_path_factory.mktemp("factory-typing")
    lines = [
        "from tabby_async.testing import EmulatedModel",
        "from tabby_async.testing.pytest_plugin import EmulatorFactory",
    ]
    where: dict[int, str] = {}
    for name, code, _ in FACTORY_CASES:
        function = name.replace("-", "_")
        lines += ["", "", f"async def {function}(factory: EmulatorFactory) -> None:"]
        lines += textwrap.indent(code, "    ").splitlines()
        where[len(lines)] = name  # mypy counts lines from 1: the case's one line
    snippet = folder / "snippet.py"
    snippet.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, err, status = mypy_api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            "--cache-dir",
            str(folder / "cache"),
            "--show-error-codes",
            "--no-error-summary",
            "--no-pretty",
            str(snippet),
        ]
    )
    assert status in (0, 1), f"mypy did not run: {err}{out}"
    found: dict[str, set[str]] = {name: set() for name in where.values()}
    stray = []
    for line in out.splitlines():
        match = ERROR_LINE.match(line)
        if match is None:
            continue
        owner = where.get(int(match[1]))
        if owner is None:
            stray.append(line)
        else:
            found[owner].add(match[2])
    assert stray == [], "errors outside the cases (the snippet's own set-up is wrong)"
    return found


@pytest.mark.parametrize(
    ("name", "code", "expected"), FACTORY_CASES, ids=[case[0] for case in FACTORY_CASES]
)
def test_mypy_strict_checks_the_factorys_keywords(
    factory_errors: dict[str, set[str]], name: str, code: str, expected: set[str]
) -> None:
    assert factory_errors[name] == expected, code


# --- fail_next's reason phrase ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (429, "Too Many Requests"),
        (500, "Internal Server Error"),
        (504, "Gateway Timeout"),
        (404, "Not Found"),
        (599, "Error"),  # no standard reason phrase
    ],
)
async def test_fail_next_gives_each_status_its_own_reason(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession, status: int, detail: str
) -> None:
    tabby_emulator.faults.fail_next(status=status, path="/health")
    async with http.get(tabby_emulator.url + "/health") as r:
        assert (r.status, await r.json()) == (status, {"detail": detail})


async def test_fail_next_keeps_a_detail_it_is_given(
    tabby_emulator: TabbyEmulator, http: aiohttp.ClientSession
) -> None:
    fault = tabby_emulator.faults.fail_next(status=502, detail="upstream gone", path="/health")
    async with http.get(tabby_emulator.url + "/health") as r:
        assert (r.status, await r.json()) == (502, {"detail": "upstream gone"})
    assert fault.detail == "upstream gone"
