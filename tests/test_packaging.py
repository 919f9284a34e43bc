"""The wheel and the sdist hold what they should, and nothing else.

Both are built once per session with ``python -m build --no-isolation`` (``build``
and ``hatchling`` are in the ``test`` extra, so nothing is downloaded), then
their file lists and metadata are checked.
"""

from __future__ import annotations

import email
import email.message
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAME = "tabby_async-0.1.0"


@dataclass(frozen=True)
class Built:
    wheel_files: list[str]
    wheel_metadata: email.message.Message
    sdist_files: list[str]  # relative to the sdist's top folder
    sdist_license: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        wheel_files = zf.namelist()
        metadata = email.message_from_bytes(zf.read(f"{NAME}.dist-info/METADATA"))
    with tarfile.open(sdist) as tf:
        names = [m.name for m in tf.getmembers() if m.isfile()]
        member = tf.extractfile(f"{NAME}/LICENSE")
        assert member is not None
        license_text = member.read().decode()
    assert all(n.startswith(f"{NAME}/") for n in names), names
    sdist_files = [n[len(NAME) + 1 :] for n in names]
    return Built(wheel_files, metadata, sdist_files, license_text)


def source_modules() -> set[str]:
    """Every module of the package in the source tree (what the wheel must ship)."""
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tabby_async").rglob("*.py")
        if "__pycache__" not in p.parts
    }


def doc_sources() -> set[str]:
    """Every file of the documentation site's sources (the sdist ships them, the wheel not)."""
    found = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "docs").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "docs/index.md" in found
    return found


def test_the_wheel_ships_the_package_typed_and_licensed(built: Built) -> None:
    files = set(built.wheel_files)
    assert source_modules() <= files
    assert {
        "tabby_async/py.typed",
        "tabby_async/testing/pytest_plugin.py",
        f"{NAME}.dist-info/licenses/LICENSE",
        f"{NAME}.dist-info/entry_points.txt",
    } <= files
    # Nothing but the package and its metadata: no tests, examples, caches.
    tops = {PurePosixPath(f).parts[0] for f in files}
    assert tops == {"tabby_async", f"{NAME}.dist-info"}
    assert not [f for f in files if f.startswith("docs/") or f.endswith("mkdocs.yml")]
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".pyo"))]


def test_the_wheel_metadata(built: Built) -> None:
    meta = built.wheel_metadata
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    assert meta["Author"] == "tabby-async authors"
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Framework :: AsyncIO" in classifiers
    # Python 3.11-3.14, stated both ways.
    assert meta["Requires-Python"] == ">=3.11"
    python = "Programming Language :: Python :: "
    versions = {c.removeprefix(python) for c in classifiers if c.startswith(python)}
    assert versions == {"3", "3 :: Only", "3.11", "3.12", "3.13", "3.14"}
    assert not [r for r in meta.get_all("Requires-Dist") or [] if "tomli" in r]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert set(urls) == {"Homepage", "Source", "Issues", "Changelog"}
    assert all(u.startswith("https://github.com/tabby-async/tabby-async") for u in urls.values())


def test_the_sdist_ships_sources_tests_and_docs(built: Built) -> None:
    files = set(built.sdist_files)
    assert {
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "pyproject.toml",
        "PKG-INFO",
        "tabby_async/py.typed",
        "tests/conftest.py",
        "examples/fastapi_app.py",
        "benchmarks/README.md",
        "mkdocs.yml",
    } <= files
    assert source_modules() <= files
    # The documentation site's sources, every one of them.
    assert doc_sources() <= files
    assert "Copyright (c) 2026 the tabby-async authors" in built.sdist_license


@pytest.mark.parametrize(
    "unwanted",
    [".ci/", ".gitignore", "benchmarks/results/", ".venv/", ".git/", ".hypothesis/", "dist/"],
)
def test_the_sdist_leaves_out(built: Built, unwanted: str) -> None:
    assert not [f for f in built.sdist_files if f == unwanted or f.startswith(unwanted)]


def test_the_sdist_has_what_the_readme_names(built: Built) -> None:
    # The README sends readers to CONTRIBUTING.md and the two scripts.
    assert {"CONTRIBUTING.md", "scripts/test", "scripts/docs"} <= set(built.sdist_files)


def test_the_sdist_has_nothing_unexpected(built: Built) -> None:
    allowed = {
        "tabby_async",
        "tests",
        "examples",
        "benchmarks",
        "docs",
        "mkdocs.yml",
        "README.md",
        "CONTRIBUTING.md",
        "scripts",
        "CHANGELOG.md",
        "LICENSE",
        "pyproject.toml",
        "PKG-INFO",
        "hatch_build.py",
    }
    tops = {PurePosixPath(f).parts[0] for f in built.sdist_files}
    assert tops <= allowed, tops - allowed
    assert not [
        f for f in built.sdist_files if "__pycache__" in f or f.endswith((".pyc", ".egg-info"))
    ]
