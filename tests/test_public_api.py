"""The package's shape: what it exports, what its docstrings cite, how its modules import.

- ``__all__`` of each public module is complete, sorted as ruff's RUF022 sorts
  it, and every name in it resolves.
- Every public class, function, method and property has a docstring.
- No docstring in the installed package cites what a user of the wheel cannot
  see: the repository's protocol notes or a private module's path.
- No module is over 450 lines.
- No module imports another module's private name, the modules' run-time
  imports form no cycle, no import at all (under ``TYPE_CHECKING`` and inside
  functions included) closes a circle beyond the known ones, the CLI imports
  no private module of the SDK, and each module imports on its own.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import pkgutil
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import tabby_async

PACKAGE = Path(tabby_async.__file__).resolve().parent
PUBLIC_MODULES = [
    "tabby_async",
    "tabby_async.errors",
    "tabby_async.exporter",
    "tabby_async.desired",
    "tabby_async.fleet",
    "tabby_async.services",
    "tabby_async.testing",
    "tabby_async.testing.pytest_plugin",
    "tabby_async.types",
]
MAX_LINES = 450


#: Modules kept one release under an old name: importing one warns.
DEPRECATED_MODULES = {"tabby_async.models"}


def load_module(name: str) -> ModuleType:
    """``name`` imported; a deprecated module's warning (its own test checks it) let pass."""
    with warnings.catch_warnings():
        if name in DEPRECATED_MODULES:
            warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(name)


def all_modules() -> list[str]:
    """Every module of the installed package, by dotted name."""
    found = ["tabby_async"]
    found += [info.name for info in pkgutil.walk_packages(tabby_async.__path__, "tabby_async.")]
    return sorted(found)


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    """``tabby_async/fleet/_pool.py`` -> ``tabby_async.fleet._pool`` (a package: its name)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# --- __all__ ---------------------------------------------------------------------------


def ruff_order(name: str) -> tuple[int, list[str | int]]:
    """The RUF022 ("isort-style") sort key of a name in ``__all__``.

    SCREAMING_SNAKE_CASE names first, then CamelCase ones, then the rest; within
    each, a case-sensitive natural order (``V2`` before ``V10``).
    """
    if len(name) > 1 and name.upper() == name and name.lower() != name:
        kind = 0
    elif name[:1].isupper():
        kind = 1
    else:
        kind = 2
    pieces = re.split(r"(\d+)", name)  # text, number, text, ...: the kinds line up
    return kind, [int(piece) if i % 2 else piece for i, piece in enumerate(pieces)]


@pytest.mark.parametrize(
    ("names", "ordered"),
    [
        (["b", "A", "C_D", "a"], ["C_D", "A", "a", "b"]),
        (["V10", "V2", "X"], ["V2", "V10", "X"]),
        (["ab", "aB", "Ab", "AB"], ["AB", "Ab", "aB", "ab"]),
        (
            ["TimeoutArg", "USE_CLIENT_DEFAULT", "Timeout"],
            ["USE_CLIENT_DEFAULT", "Timeout", "TimeoutArg"],
        ),
        (["APIStatusError", "AlreadyLoadedError"], ["APIStatusError", "AlreadyLoadedError"]),
        (["__version__", "run", "T"], ["T", "__version__", "run"]),
    ],
)
def test_ruff_order_table(names: list[str], ordered: list[str]) -> None:
    assert sorted(names, key=ruff_order) == ordered


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def run_time_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """A module's top-level statements that run on import (``if``/``try`` entered,
    ``if TYPE_CHECKING:`` blocks and function bodies not)."""
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from run_time_statements(node.body)
            yield from run_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for part in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from run_time_statements(part)
        else:
            yield node


def offered_names(module: ModuleType) -> set[str]:
    """Public names a module defines, and for a package's ``__init__`` the ones it
    imports from the package (it gathers them to re-export; a module uses them)."""
    path = Path(inspect.getfile(module))
    gathers = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in run_time_statements(tree.body):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif (
            gathers
            and isinstance(node, ast.ImportFrom)
            and (node.level > 0 or (node.module or "").startswith("tabby_async"))
        ):
            names.update(alias.asname or alias.name for alias in node.names)
    # Not for users: submodules, and a module's logger (reached by its logging name).
    return {
        name
        for name in names
        if not name.startswith("_")
        and not isinstance(getattr(module, name, None), (ModuleType, logging.Logger))
    }


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_complete(name: str) -> None:
    module = load_module(name)
    left_out = offered_names(module) - set(module.__all__)
    assert left_out == set(), f"{name} offers these public names but leaves them out of __all__"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = load_module(name)
    assert list(module.__all__) == sorted(module.__all__, key=ruff_order)
    assert len(set(module.__all__)) == len(module.__all__), "a name is listed twice"
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


# --- docstrings ------------------------------------------------------------------------


def _members(cls: type) -> Iterator[tuple[str, object]]:
    """A class's own methods and properties, as ``(name, function)``."""
    for name, value in vars(cls).items():
        function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if inspect.isfunction(function):
            yield name, function


def _lacks_docstring(obj: object) -> bool:
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return True
    # A dataclass without a docstring gets its signature as one.
    return inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")


def test_every_public_class_function_method_and_property_has_a_docstring() -> None:
    missing = set()
    for name in PUBLIC_MODULES:
        module = load_module(name)
        for export in module.__all__:
            obj = getattr(module, export)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants and type aliases: documented where they are defined
            if not obj.__module__.startswith("tabby_async"):
                continue  # an alias of another library's type (``LoadStatus = str``)
            where = f"{obj.__module__}.{obj.__qualname__}"
            if _lacks_docstring(obj):
                missing.add(where)
            if inspect.isclass(obj):
                missing.update(
                    f"{where}.{member}"
                    for member, function in _members(obj)
                    if not member.startswith("_") and _lacks_docstring(function)
                )
    assert not missing, "no docstring:\n" + "\n".join(sorted(missing))


#: What a docstring must not cite: the repository's protocol notes, and private
#: modules by path (``_model_ensure.py``, ``tabby_async/_model_ensure.py``) or dotted name.
UNSEEN = re.compile(r"PROTOCOL\.md|(?<!\w)_[a-z][a-z0-9_]*\.py\b|tabby_async(?:\.\w+)*\._[a-z]\w*")


@pytest.mark.parametrize(
    ("text", "cites"),
    [
        ("as PROTOCOL.md says", True),
        ("see tabby_async/_model_ensure.py", True),
        ("the plan (``_model_plan.py``)", True),
        (":class:`~tabby_async._route.Route`", True),
        ("tabby_async.testing._emulator", True),
        (":class:`~tabby_async.ModelLoadRequest`", False),
        ("tabby_async.testing.TabbyEmulator", False),
        ("its __init__.py", False),
        ("the model_name field", False),
    ],
)
def test_unseen_pattern_table(text: str, cites: bool) -> None:
    assert bool(UNSEEN.search(text)) is cites


def docstrings(module: ModuleType) -> Iterator[tuple[str, str | None]]:
    """``(where, docstring)`` of a module, its classes and functions, and their members."""
    yield module.__name__, module.__doc__
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__:
            continue  # imported: checked where it is defined
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj.__doc__
        if inspect.isclass(obj):
            for member, function in _members(obj):
                yield f"{module.__name__}.{name}.{member}", function.__doc__


def test_no_docstring_cites_what_the_wheel_does_not_ship() -> None:
    citing = []
    for name in all_modules():
        for where, doc in docstrings(load_module(name)):
            found = UNSEEN.search(doc or "")
            if found:
                citing.append(f"{where}: {found[0]}")
    assert not citing, "cites what the wheel does not ship:\n" + "\n".join(citing)


# --- size and imports ------------------------------------------------------------------


def test_no_module_is_over_450_lines() -> None:
    sizes = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in source_files()
    }
    over = [f"{path}: {lines}" for path, lines in sizes.items() if lines > MAX_LINES]
    assert not over, f"over {MAX_LINES} lines:\n" + "\n".join(over)


def _imported_module(path: Path, node: ast.ImportFrom) -> str | None:
    """The package module a ``from ... import`` reads from (None: outside the package)."""
    if node.level == 0:
        return node.module if (node.module or "").startswith("tabby_async") else None
    base = module_name(path).split(".")
    if path.name != "__init__.py":
        base.pop()  # a plain module's relative imports start at its package
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_module(dotted: str) -> bool:
    target = PACKAGE.parent.joinpath(*dotted.split("."))
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def private_imports(path: Path, text: str) -> list[str]:
    """The ``from x import _y`` lines of a package file whose ``_y`` is a private name
    of another module (a private module itself, ``from . import _routes``, is fine)."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _imported_module(path, node)
        if source is None:
            continue
        for alias in node.names:
            name = alias.name
            private = name.startswith("_") and not name.startswith("__")
            if private and not _is_module(f"{source}.{name}"):
                found.append(f"{module_name(path)}: from {source} import {name}")
    return found


@pytest.mark.parametrize(
    ("file", "text", "found"),
    [
        ("_client.py", "from ._session import _session_loop", ["_session_loop"]),
        ("_client.py", "from ._session import Sessions", []),
        ("_client.py", "from . import _routes as R", []),
        ("fleet/_pool.py", "from ..errors import _message", ["_message"]),
        ("fleet/_pool.py", "from .._checks import check_count", []),
        ("fleet/__init__.py", "from ._pool import _Pool", ["_Pool"]),
        ("_client.py", "from tabby_async._checks import _private", ["_private"]),
        ("_client.py", "from typing import _SpecialForm", []),
        ("_client.py", "from ._version import __version__", []),
        ("_client.py", "def f():\n    from ._session import _late\n", ["_late"]),
    ],
)
def test_private_imports_table(file: str, text: str, found: list[str]) -> None:
    lines = private_imports(PACKAGE / file, text)
    assert [line.rsplit(" ", 1)[-1] for line in lines] == found


def test_no_module_imports_a_private_name_of_another() -> None:
    found = []
    for path in source_files():
        found += private_imports(path, path.read_text(encoding="utf-8"))
    assert not found, "\n".join(found)


def run_time_imports() -> dict[str, set[str]]:
    """Each module -> the package modules its top level imports when it runs."""
    graph: dict[str, set[str]] = {}
    for path in source_files():
        name = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        for node in run_time_statements(tree.body):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("tabby_async"))
            elif isinstance(node, ast.ImportFrom):
                source = _imported_module(path, node)
                if source is None:
                    continue
                for alias in node.names:  # `from . import x`: x may be a module itself
                    sub = f"{source}.{alias.name}"
                    edges.add(sub if _is_module(sub) else source)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``[]``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_find_cycle_table(graph: dict[str, set[str]], cycle: list[str]) -> None:
    assert find_cycle(graph) == cycle


def test_run_time_imports_form_no_cycle() -> None:
    # A package's __init__ importing its own modules is how packages work; a
    # module importing a name back from its package's __init__ is a cycle.
    assert find_cycle(run_time_imports()) == []


def every_import(path: Path, text: str | None = None) -> set[str]:
    """The package modules a file (or ``text``, as if it were that file) imports anywhere:
    at the top, under ``TYPE_CHECKING``, inside functions. ``from . import x`` counts
    ``x`` when it is a module, else the package."""
    found: set[str] = set()
    source_text = path.read_text(encoding="utf-8") if text is None else text
    for node in ast.walk(ast.parse(source_text)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tabby_async"))
        elif isinstance(node, ast.ImportFrom):
            source = _imported_module(path, node)
            if source is not None:
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    found.add(sub if _is_module(sub) else source)
    return found - {module_name(path)}


def import_circles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The circles of ``graph``: each strongly connected set of more than one module,
    as a sorted tuple, the tuples sorted (Tarjan's search, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[tuple[str, ...]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                if len(members) > 1:
                    circles.append(tuple(sorted(members)))
    return sorted(circles)


@pytest.mark.parametrize(
    ("graph", "circles"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [("a", "b")]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [("a", "b", "c")]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c", "a"}}, [("a", "b"), ("c", "d")]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"z"}}, []),  # an edge to a module outside the graph
    ],
)
def test_import_circles_table(graph: dict[str, set[str]], circles: list[tuple[str, ...]]) -> None:
    assert import_circles(graph) == circles


@pytest.mark.parametrize(
    ("file", "text", "imports"),
    [
        ("cli/_rich.py", "if TYPE_CHECKING:\n    from ..fleet import NodeResult\n", {"fleet"}),
        ("cli/fleet.py", "def f():\n    from ._exporter import add\n", {"cli._exporter"}),
        ("cli/_models.py", "from .. import errors as E", {"errors"}),
        ("cli/_models.py", "from .. import AsyncTabbyClient", {""}),
        ("fleet/__init__.py", "from ._pool import Pool", {"fleet._pool"}),
        ("_client.py", "import tabby_async.types", {"types"}),
        ("_client.py", "import aiohttp\nfrom typing import Any", set()),
    ],
)
def test_every_import_table(file: str, text: str, imports: set[str]) -> None:
    found = every_import(PACKAGE / file, text)
    assert {name.removeprefix("tabby_async").removeprefix(".") for name in found} == imports


#: The import circles known: none (desired state takes small Protocols of the
#: service and the client it is called by). A new one fails.
KNOWN_CIRCLES: list[tuple[str, ...]] = []


def test_no_import_circle_anywhere() -> None:
    # Every import counts: under TYPE_CHECKING and inside functions too, since
    # a circle there is still two modules that cannot be read apart.
    graph = {module_name(path): every_import(path) for path in source_files()}
    assert import_circles(graph) == KNOWN_CIRCLES


#: The CLI's imports of private SDK modules: none (what it needs is exported).
CLI_PRIVATE_IMPORTS: set[tuple[str, str]] = set()


def _private_sdk_module(name: str) -> bool:
    """True for a private module of the SDK (``tabby_async.fleet._status``), not the CLI's."""
    return not name.startswith("tabby_async.cli") and any(
        part.startswith("_") for part in name.split(".")[1:]
    )


@pytest.mark.parametrize(
    ("name", "private"),
    [
        ("tabby_async._client", True),
        ("tabby_async.fleet._status", True),
        ("tabby_async.types._models", True),
        ("tabby_async.fleet", False),
        ("tabby_async", False),
        ("tabby_async.cli._format", False),
    ],
)
def test_private_sdk_module_table(name: str, private: bool) -> None:
    assert _private_sdk_module(name) is private


def test_the_cli_imports_only_the_public_sdk() -> None:
    # The CLI is a client of the public API: what it needs is exported, or
    # lives in the CLI (its presentation helpers). Every import counts.
    found = {
        (module_name(path), imported)
        for path in source_files()
        if module_name(path).startswith("tabby_async.cli")
        for imported in every_import(path)
        if _private_sdk_module(imported)
    }
    assert found == CLI_PRIVATE_IMPORTS


#: Imports each module named on the command line with every package module
#: dropped before it, as a fresh interpreter would (aiohttp & co. stay loaded).
ONE_BY_ONE = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "tabby_async" or m.startswith("tabby_async.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed))
"""


def test_each_module_imports_on_its_own() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ONE_BY_ONE, *all_modules()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_ground_floor_imports_nothing_of_the_package() -> None:
    """errors.py and the wire types' base import no module of the package, anywhere in them
    (under TYPE_CHECKING and inside functions included)."""
    import ast

    root = Path(tabby_async.__file__).parent
    for name in ("errors.py", "_route.py", "_words.py", "types/_base.py"):
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        found = [
            ast.unparse(node)
            for node in ast.walk(tree)
            if (
                isinstance(node, ast.ImportFrom)
                and (node.level or "tabby_async" in (node.module or ""))
            )
            or (
                isinstance(node, ast.Import)
                and any(a.name.startswith("tabby_async") for a in node.names)
            )
        ]
        assert found == [], f"{name}: {found}"
