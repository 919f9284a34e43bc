"""Every Python block of README.md runs as the README says, against the emulator it starts.

The conventions, shared with the documentation's pages (tests/test_docs.py)
and described in CONTRIBUTING.md:

- A ```python block is a complete program, or, when it defines top-level
  ``test_`` functions, a pytest module. A block that is not meant to run is
  fenced with another language (``console``, ``text``, ``pycon``, ``toml``),
  so a reader sees it too.
- The page's set-up is its ``$ `` lines in ```console blocks. A
  ``$ tabby-async emulator ...`` line is run as written, in a subprocess (on a
  free loopback port: ``--port 0``), and the variables of the ``export`` line it
  prints are the only ``TABBY_*`` variables the programs get, as a user who
  pastes that line. A ``$ PYTHONPATH=examples ...`` line puts ``examples/`` on
  the path of the page's pytest modules; nothing else does.
- The blocks run in page order against that one emulator, as a user reading
  the page runs them; each must exit 0 and print what :data:`PROGRAMS` expects.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tabby_async import __version__
from tabby_async.cli._emulator import _DEMO_DRAFTS, _DEMO_EMBEDDINGS, _DEMO_MODELS
from tests.helpers import TABBY_ENV_NAMES, cli_emulator, guarded

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
PYTHON = ("python", "py", "python3")
#: What the default ``tabby-async emulator`` serves: the names a page may load.
EMULATOR_NAMES = (*_DEMO_MODELS, *_DEMO_DRAFTS, *_DEMO_EMBEDDINGS)


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # of the opening fence, 1-based

    @property
    def is_python(self) -> bool:
        return self.language in PYTHON

    @property
    def is_pytest_module(self) -> bool:
        """A python block that defines top-level test functions: run with pytest."""
        tree = ast.parse(self.code)
        return any(
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name.startswith("test_")
            for node in tree.body
        )


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced block of ``text``, in order."""
    return [
        Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


@dataclass(frozen=True)
class Page:
    """A page of Markdown as a reader follows it: its set-up, then its blocks in order."""

    name: str  # README.md, docs/cli.md
    text: str

    @property
    def blocks(self) -> list[Block]:
        return fenced_blocks(self.text)

    @property
    def python(self) -> list[Block]:
        return [b for b in self.blocks if b.is_python]

    @property
    def programs(self) -> list[Block]:
        return [b for b in self.python if not b.is_pytest_module and not included(b)]

    def commands(self, block: Block | None = None) -> list[list[str]]:
        """Every ``$ `` line of the page's console blocks (or of ``block``), as words."""
        found = []
        for each in [block] if block is not None else self.blocks:
            if each.language == "console":
                for line in each.code.splitlines():
                    if line.startswith("$ "):
                        found.append(shlex.split(line[2:], comments=True))
        return found

    def emulator_args(self, block: Block | None = None) -> list[list[str]]:
        """The arguments of each ``$ tabby-async emulator`` line (of ``block``), in order."""
        return [c[2:] for c in self.commands(block) if c[:2] == ["tabby-async", "emulator"]]

    def puts_examples_on_the_path(self) -> bool:
        return any(c[:1] == ["PYTHONPATH=examples"] for c in self.commands())


INCLUDE = re.compile(r'^--8<-- "([^"]+)"\s*$')


def included(block: Block) -> list[str]:
    """The files a block includes whole (pymdownx.snippets), or [] for a block of its own."""
    lines = [line for line in block.code.splitlines() if line.strip()]
    found = [m.group(1) for m in map(INCLUDE.match, lines) if m]
    return found if found and len(found) == len(lines) else []


README_PAGE = Page("README.md", README.read_text(encoding="utf-8"))

#: Per program block, in README order: a text that identifies it, and what
#: its output must contain (each a regular expression matched per line).
PROGRAMS: list[tuple[str, list[str]]] = [
    (
        "load_stream(",
        [
            r"^\['Llama-3.1-8B-Instruct-exl2', 'Qwen2.5-7B-Instruct-exl2', "
            r"'Mistral-Nemo-12B-exl2'\]$",
            r"^model 1/8 processing$",
            r"^model 8/8 finished$",
            r"^loaded Llama-3.1-8B-Instruct-exl2 with a context of 4096$",
        ],
    ),
    (
        "client.apply(state, dry_run=True)",
        [
            r"^plan: model: reload; template: switch; sampling: switch$",
            r"^done: model: reload; template: switch; sampling: switch$",
            r"^again: False nothing to do: model: none; template: none; sampling: none$",
        ],
    ),
    (
        "fleet.rollout(",
        [
            r"^gpu-01 +ok +healthy",
            r"^gpu-02 +ok +healthy",
            r"^rollout of Qwen2.5-7B-Instruct-exl2 complete .* 2 done, 0 failed",
        ],
    ),
    (
        "gateway = Gateway(",
        [
            r"^qwen -> Qwen2\.5-7B-Instruct-exl2:1 Qwen2\.5-7B-Instruct-exl2:2 "
            r"Qwen2\.5-7B-Instruct-exl2:3$",
            r"^llama -> Llama-3\.1-8B-Instruct-exl2:1 ",
        ],
    ),
]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the user's TABBY_* settings, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if k not in TABBY_ENV_NAMES}
    return {**base, **extra, "PYTHONUNBUFFERED": "1"}


async def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await guarded(proc.communicate(), 120)  # a hang guard only
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def passes_as_pytest_module(
    block: Block, folder: Path, where: str, env: dict[str, str]
) -> None:
    """Run ``block`` with pytest in a fresh process; every test must pass."""
    module = folder / f"test_block_line{block.line}.py"
    module.write_text(block.code, encoding="utf-8")
    # No configuration of pytest-asyncio: a user's first run, warnings as errors.
    options = ["-p", "no:cacheprovider", "-W", "error"]
    argv = [sys.executable, "-m", "pytest", "-q", *options, module.name]
    code, out, err = await run(argv, folder, env)
    assert code == 0, f"{where} line {block.line} failed:\n{out}\n{err}"
    assert re.search(r"^\d+ passed", out.splitlines()[-1]), out


async def follow_page(page: Page, expected: list[tuple[str, list[str]]], folder: Path) -> None:
    """Do what ``page`` says, in its order: start its emulator, run every block.

    ``expected`` pairs each program block with the patterns its output must
    match, by a text that identifies the block.
    """
    programs = page.programs
    assert len(programs) == len(expected), (
        f"{page.name}: a python block was added or removed: give it an entry in PROGRAMS "
        f"(program blocks at lines {[b.line for b in programs]})"
    )
    patterns = {}
    for block, (marker, lines) in zip(programs, expected, strict=True):
        assert marker in block.code, f"{page.name} line {block.line}: expected {marker!r}"
        patterns[block.line] = lines
    variables: dict[str, str] = {}  # what the reader's shell has exported so far
    emulator = contextlib.AsyncExitStack()
    async with emulator:
        for block in page.blocks:
            for args in page.emulator_args(block):
                # The reader stops the emulator running (Ctrl-C) and starts this one.
                await emulator.aclose()
                variables.update(await emulator.enter_async_context(cli_emulator(args, cwd=folder)))
            if not block.is_python or included(block):
                continue  # an example file shown whole: tests/test_examples.py runs it
            if block.is_pytest_module:
                extra = {"PYTHONPATH": str(ROOT / "examples")}
                paths = extra if page.puts_examples_on_the_path() else {}
                env = clean_env(**variables, **paths)
                await passes_as_pytest_module(block, folder, page.name, env)
                continue
            script = folder / f"block_line{block.line}.py"
            script.write_text(block.code, encoding="utf-8")
            code, out, err = await run(
                [sys.executable, script.name], folder, clean_env(**variables)
            )
            assert code == 0, f"{page.name} line {block.line} failed:\n{out}\n{err}"
            lines = out.splitlines()
            for pattern in patterns[block.line]:
                assert any(re.search(pattern, line) for line in lines), (
                    f"{page.name} line {block.line}: no line matches {pattern!r}",
                    out,
                )


# --- what the conventions read ------------------------------------------------------


def test_blocks_and_their_kinds_are_found() -> None:
    text = (
        "# T\n\n```python\nprint(1)\n```\n\n```python\nimport pytest\n\n\ndef test_a(): pass\n```\n"
        "```pycon\n>>> await x\n```\n```console\n$ tabby-async emulator --nodes 2  # two\n"
        "$ PYTHONPATH=examples python -m pytest\nnot a command\n```\n"
    )
    page = Page("t.md", text)
    assert [(b.language, b.line) for b in page.blocks] == [
        ("python", 3),
        ("python", 7),
        ("pycon", 13),
        ("console", 16),
    ]
    assert [b.is_pytest_module for b in page.python] == [False, True]
    assert [b.line for b in page.programs] == [3]
    assert page.emulator_args() == [["--nodes", "2"]]
    assert page.puts_examples_on_the_path()
    assert Page("u.md", "```console\n$ tabby-async demo\n```\n").emulator_args() == []


def test_the_readme_starts_the_default_emulator_before_its_first_program() -> None:
    # The plain command, with its defaults: what the quick start tells a newcomer.
    assert README_PAGE.emulator_args()[0] == []
    first_program = README_PAGE.programs[0].line
    console = [b for b in README_PAGE.blocks if README_PAGE.emulator_args(b)]
    assert console[0].line < first_program


def test_the_readme_is_a_doorway() -> None:
    lines = README_PAGE.text.count("\n")
    assert 150 <= lines <= 300, f"README.md has {lines} lines"
    # The two commands a newcomer runs, as written.
    demo = (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[cli]' && .venv/bin/tabby-async demo"
    )
    assert demo in README_PAGE.text
    assert "./scripts/test" in README_PAGE.text
    # Contributor commands live in CONTRIBUTING.md.
    for command in (".venv/bin/ruff", ".venv/bin/mypy", "python -m pytest", "mkdocs"):
        assert command not in README_PAGE.text, command
    assert "CONTRIBUTING.md" in README_PAGE.text
    # The wheel it tells you to install is the one a build of this version makes.
    assert f"dist/tabby_async-{__version__}-py3-none-any.whl" in README_PAGE.text


def test_every_link_of_the_readme_resolves() -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README_PAGE.text):
        if not re.match(r"https?://", target):
            assert (ROOT / target).exists(), f"README.md links to a missing {target}"


def test_every_model_name_the_readme_loads_is_served_by_the_emulator() -> None:
    names = set()
    for block in README_PAGE.blocks:
        names |= set(re.findall(r'_name="([^"]+)"', block.code))
        names |= set(re.findall(r"(?:load|ensure|rollout) ([A-Za-z][\w.-]+-exl2)", block.code))
    assert names, "the README loads no model"
    assert names <= set(EMULATOR_NAMES), names - set(EMULATOR_NAMES)


# --- following it ---------------------------------------------------------------------


async def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    await follow_page(README_PAGE, PROGRAMS, tmp_path)
