"""The documentation site (docs/, mkdocs.yml) says what is true, and its code runs.

- Every ```python block of every page is a complete program run against fresh
  emulators, a pytest module (``<!-- pytest -->``), a deliberate fragment
  (``<!-- not-a-program -->``), or an example file included whole
  (``--8<-- "examples/..."``, tested by tests/test_examples.py), with the same
  rules and helpers as the README's blocks (tests/test_readme.py). The numbers
  of each kind are fixed per page below, so a new block fails until it is given
  its expectation.
- The API reference has an entry for every public name of the five public
  modules.
- The desired-state guide holds the table of compared and unreported fields.
- The CLI page documents every command the parser has, and only those, and
  every exit code.
- No page cites what a reader cannot see (the repository's protocol notes, a
  private module's path), and the site fetches nothing at build time.

The docstring markup conversion the site applies (docs/_ext/markup.py) is
tested as tables at the end. ``mkdocs build --strict`` itself runs in CI
(.ci/run), which installs the ``docs`` extra.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tabby_async import errors as errors_module
from tabby_async._model_plan import rules_markdown
from tabby_async.cli import GROUPS, build_parser
from tabby_async.cli import common as cli_common
from tabby_async.fleet import read_nodes_toml
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory
from tests.test_readme import (
    ADMIN_KEY,
    API_KEY,
    MARK_FRAGMENT,
    MARK_PYTEST,
    Block,
    clean_env,
    passes_as_pytest_module,
    readme_blocks,
    run,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
PUBLIC_MODULES = [
    "tabby_async",
    "tabby_async.desired",
    "tabby_async.errors",
    "tabby_async.fleet",
    "tabby_async.services",
    "tabby_async.testing",
    "tabby_async.types",
    "tabby_async.exporter",  # needs the exporter extra, which the test extra has
]
INCLUDE = re.compile(r'^--8<-- "([^"]+)"\s*$')


def page_text(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def python_blocks(page: str) -> list[Block]:
    return [
        b for b in readme_blocks(page_text(page)) if b.language in ("python", "py", "python3")
    ]


def included(block: Block) -> list[str]:
    """The files a block includes whole (pymdownx.snippets), or [] for a block of its own."""
    lines = [line for line in block.code.splitlines() if line.strip()]
    found = [m.group(1) for m in map(INCLUDE.match, lines) if m]
    return found if found and len(found) == len(lines) else []


def is_program(block: Block) -> bool:
    return block.mark is None and not included(block)


#: Per page, per program block in page order: a text that identifies it, and
#: what its output must contain (each a regular expression matched per line).
PROGRAMS: dict[str, list[tuple[str, list[str]]]] = {
    "index.md": [
        (
            "client.models.load_stream(model_name=",
            [r"^\['Llama-3.1-8B-exl2', 'Llama-3.1-70B-exl2'\]$", r"^model 3 3 finished$"],
        )
    ],
    "getting-started.md": [
        ("async with TabbyEmulator(", [r"^loaded: Llama-3.1-8B-exl2$"]),
        (
            "ModelLoadRequest(model_name=",
            [
                r"^on the server: \['Llama-3.1-8B-exl2', 'Llama-3.1-70B-exl2'\]$",
                r"^model 1/3 processing$",
                r"^model 3/3 finished$",
                r"^loaded Llama-3.1-8B-exl2 with a context of 4096$",
            ],
        ),
    ],
    "guides/load-progress.md": [
        (
            "bar = ",
            [
                r"^draft \[#+ *\] processing$",
                r"^model \[#{20}\] finished$",
                r"^finished: True$",
            ],
        ),
        ("on_progress=show", [r"^model 3/3 finished$", r"^done: finished$"]),
        (
            "reload=True",
            [
                r"^already loaded: True$",
                r"^context still: 4096$",
                r"^after reload=True: 8192$",
            ],
        ),
        (
            "reattach_within=30",
            [
                r"^2 6 processing$",
                r"^re-attached: True$",
                r"^loaded: Llama-3.1-70B-exl2$",
                r"^loads sent: 1$",
            ],
        ),
    ],
    "guides/fleets.md": [
        (
            "fleet.status()",
            [
                r"^gpu-01  ok  healthy, admin, no model$",
                r"^gpu-02 2 models$",
                r"^run: 2 nodes: 2 ok in ",
            ],
        ),
        (
            "fleet.rollout(",
            [
                r"^rollout batch 2: 1 node: 1 ok ",
                r"^rollout of Llama-3.1-70B-exl2 complete after 2 batches: 2 done, 0 failed",
                r"^rollout of Llama-3.1-70B-exl2 complete after 1 batch: 2 done, 0 failed",
            ],
        ),
        (
            "fleet.models.load_stream(request)",
            [
                r"^gpu-01: model 1/3 processing$",
                r"^gpu-02: model 3/3 finished$",
                r"^gpu-0[12]: ok \(fleet 100%\)$",
                r"^load: 2 nodes: 2 ok",
            ],
        ),
        (
            "fleet.apply(dry_run=True)",
            [
                r"^gpu-01: model: load \(",
                r"^gpu-02: embedding: load \(none loaded\)$",
                r"^apply: 2 nodes: 2 changed, 0 unchanged, 0 failed",
                r"^apply: 2 nodes: 0 changed, 2 unchanged, 0 failed",
            ],
        ),
    ],
    "guides/desired-state.md": [
        (
            "plan_load(request)",
            [
                # The client holds a plain api key: the draft listing names the loaded draft.
                r"^plan: reload \['max_seq_len: wanted 8192, loaded 4096', "
                r"\"draft_model.draft_model_name: wanted 'Llama-3.2-1B-exl2', loaded None\"\]$",
                r"^first: reload: max_seq_len: wanted 8192, loaded 4096; "
                r"draft_model.draft_model_name: wanted 'Llama-3.2-1B-exl2', loaded None$",
                r"^draft loaded: True$",
                r"^not compared: rope_alpha$",
                r"^second: none: already as requested$",
            ],
        ),
        (
            "client.apply(state, dry_run=True)",
            [
                r"^plan: model: load \(",
                r"^plan: template: switch \(after the model load\)$",
                r"^plan: embedding: load \(none loaded\)$",
                r"^done: model: load; template: switch; sampling: switch; embedding: load$",
                r"^again: nothing to do: model: none; template: none; sampling: none; "
                r"embedding: none$",
                r"^not compared: sampling_preset ",
            ],
        ),
    ],
    "guides/errors.md": [
        ("match err.code:", [r"^no such model: no-such-model$"]),
        (
            "timeout=USE_CLIENT_DEFAULT",
            [r"^timed out: total$", r"^read bound only: None$", r"^\['m'\] after 3 tries$"],
        ),
    ],
    "guides/observability.md": [
        ("create_trace_config()", [r"^GET $", r"^POST $", r"^tabby.load ok$"]),
        (
            "FleetCollector.from_toml(",
            [
                r'^tabby_up\{node="gpu-01"\} 1.0$',
                r'^tabby_desired_state_match\{node="gpu-02"\} 0.0$',
                r'^tabby_desired_state_info\{action="load",node="gpu-01"\} 1.0$',
            ],
        ),
        (
            "exporter_app(collector)",
            [r'^probe: tabby_up\{node="gpu-01"\} 1.0$', r"^unknown path: 404$"],
        ),
    ],
    "guides/admin-areas.md": [
        (
            "client.lora.list()",
            [
                r"^adapter folders: \['lora-a', 'lora-b'\]$",
                r"^applied: \[\] not applied: \['lora-a'\]$",
                r"^active: \[\]$",
            ],
        ),
        (
            "client.templates.list()",
            [
                r"^templates: \['chatml', 'alpaca'\]$",
                r"^in use: chatml$",
                r"^unknown template: not_found 500$",
            ],
        ),
        (
            "client.sampling.switch(preset=",
            [
                r"^selected: True in force: \{'top_k': \{'override': 20\}\}$",
                r"^selected: True in force: \{\}$",
            ],
        ),
        (
            "client.tokens.encode(",
            [
                r"^\d+ tokens: Hello, world$",
                r"^chat messages need a prompt template$",
                r"^chat: True$",
            ],
        ),
        (
            "client.service_info()",
            [
                r"^healthy: True \[\]$",
                r"^permission: admin$",
                r"^TabbyAPI \['koboldai', 'openai'\]$",
            ],
        ),
    ],
}
#: Per page: how many blocks are pytest modules, fragments, included files.
PYTEST_MODULES: dict[str, int] = {"guides/testing.md": 5}
FRAGMENTS: dict[str, int] = {}
INCLUDED: dict[str, int] = {"guides/web-apps.md": 2}

ALL_PROGRAMS = [(page, b) for page in PAGES for b in python_blocks(page) if is_program(b)]
ALL_PYTEST = [(page, b) for page in PAGES for b in python_blocks(page) if b.mark == MARK_PYTEST]


def expected_output(page: str, block: Block) -> list[str]:
    programs = [b for b in python_blocks(page) if is_program(b)]
    pairs = PROGRAMS.get(page, [])
    index = programs.index(block)
    return pairs[index][1] if index < len(pairs) else []


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_is_accounted_for(page: str) -> None:
    blocks = python_blocks(page)
    programs = [b for b in blocks if is_program(b)]
    expected = PROGRAMS.get(page, [])
    assert len(programs) == len(expected), (
        f"docs/{page}: a python block was added or removed: give it an entry in PROGRAMS, "
        f"or mark it {MARK_PYTEST} / {MARK_FRAGMENT} (blocks at lines "
        f"{[b.line for b in programs]})"
    )
    for block, (marker, _) in zip(programs, expected, strict=True):
        assert marker in block.code, f"docs/{page} line {block.line}: expected the {marker!r} block"
    assert len([b for b in blocks if b.mark == MARK_PYTEST]) == PYTEST_MODULES.get(page, 0)
    assert len([b for b in blocks if b.mark == MARK_FRAGMENT]) == FRAGMENTS.get(page, 0)
    includes = [b for b in blocks if b.mark is None and included(b)]
    assert len(includes) == INCLUDED.get(page, 0)
    for block in blocks:
        assert '="..."' not in block.code, f"docs/{page} line {block.line}: a placeholder"


@pytest.mark.parametrize("page", PAGES)
def test_programs_are_complete_modules(page: str) -> None:
    for block in python_blocks(page):
        if is_program(block) or block.mark == MARK_PYTEST:
            compile(block.code, f"docs/{page}:{block.line}", "exec")


@pytest.mark.parametrize("page", PAGES)
def test_included_files_exist_and_are_tested(page: str) -> None:
    tested = (ROOT / "tests" / "test_examples.py").read_text(encoding="utf-8")
    for block in python_blocks(page):
        for path in included(block):
            assert (ROOT / path).is_file(), f"docs/{page} line {block.line}: no {path}"
            assert path.startswith("examples/"), path
            assert Path(path).stem in tested, f"{path} is not run by tests/test_examples.py"


# --- running them --------------------------------------------------------------------

NODE_MODELS = ("Llama-3.1-8B-exl2", "Llama-3.1-70B-exl2")


@pytest.fixture
async def servers(tabby_emulator_factory: EmulatorFactory) -> list[TabbyEmulator]:
    """Two fresh emulators with the models the pages name and the same keys."""
    models = [EmulatedModel(name, modules=3) for name in NODE_MODELS]
    setup = {
        "drafts": ["Llama-3.2-1B-exl2"],
        "embeddings": ["bge-small-en"],
        "api_key": API_KEY,
        "admin_key": ADMIN_KEY,
    }
    return [await tabby_emulator_factory(models, **setup) for _ in range(2)]


def toml_blocks() -> list[tuple[str, Block]]:
    return [
        (page, b) for page in PAGES for b in readme_blocks(page_text(page)) if b.language == "toml"
    ]


def nodes_file(servers: list[TabbyEmulator], folder: Path) -> Path:
    """The fleet guide's first nodes file, with its URLs pointed at the emulators."""
    toml = next(b for p, b in toml_blocks() if p == "guides/fleets.md")
    urls = iter(server.url for server in servers)
    text = re.sub(r'^url = ".*"$', lambda _: f'url = "{next(urls)}"', toml.code, flags=re.M)
    path = folder / "nodes.toml"
    path.write_text(text, encoding="utf-8")
    return path


def key_variables() -> dict[str, str]:
    """Every key variable a nodes file of the pages names: the api key's, then admin keys."""
    names = {n for _, b in toml_blocks() for n in re.findall(r'_env = "(\w+)"', b.code)}
    return {name: API_KEY if "API" in name and "ADMIN" not in name else ADMIN_KEY for name in names}


def program_env(servers: list[TabbyEmulator], folder: Path) -> dict[str, str]:
    """What a program of the pages finds set: the URL, the keys, the nodes file."""
    return {
        **key_variables(),
        "TABBY_URL": servers[0].url,
        "TABBY_API_KEY": API_KEY,
        "TABBY_ADMIN_KEY": ADMIN_KEY,
        "TABBY_FLEET_NODES": str(nodes_file(servers, folder)),
    }


def test_every_toml_block_is_a_valid_nodes_file(tmp_path: Path) -> None:
    blocks = toml_blocks()
    assert blocks, "the fleet guide shows a nodes file"
    for page, block in blocks:
        path = tmp_path / "nodes.toml"
        path.write_text(block.code, encoding="utf-8")
        specs, _ = read_nodes_toml(path, env=key_variables())
        assert specs, f"docs/{page} line {block.line}: no node"


@pytest.mark.parametrize(
    ("page", "block"),
    ALL_PROGRAMS,
    ids=[f"{page}:{b.line}" for page, b in ALL_PROGRAMS],
)
async def test_program_runs(
    page: str, block: Block, servers: list[TabbyEmulator], tmp_path: Path
) -> None:
    script = tmp_path / "sample.py"
    script.write_text(block.code, encoding="utf-8")
    env = clean_env(**program_env(servers, tmp_path))
    code, out, err = await run([sys.executable, str(script)], tmp_path, env)
    assert code == 0, f"docs/{page} line {block.line} failed:\n{out}\n{err}"
    lines = out.splitlines()
    for pattern in expected_output(page, block):
        assert any(re.search(pattern, line) for line in lines), (pattern, out)


@pytest.mark.parametrize(
    ("page", "block"), ALL_PYTEST, ids=[f"{page}:{b.line}" for page, b in ALL_PYTEST]
)
async def test_pytest_module_passes(page: str, block: Block, tmp_path: Path) -> None:
    await passes_as_pytest_module(block, tmp_path, f"docs/{page}")


# --- the API reference ---------------------------------------------------------------

DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)


def documented_objects() -> list[object]:
    """Every object a ``::: path`` directive of the reference pages renders."""
    found = []
    for page in PAGES:
        for path in DIRECTIVE.findall(page_text(page)):
            found.append(resolve(path))
    return found


def resolve(path: str) -> object:
    """The object a dotted path names: a module, or a name inside one."""
    try:
        return importlib.import_module(path)
    except ImportError:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_the_reference_documents_every_public_name(module_name: str) -> None:
    module = importlib.import_module(module_name)
    documented = documented_objects()
    missing = [
        name
        for name in module.__all__
        if not any(getattr(module, name) is obj for obj in documented)
        # A constant (a str, a tuple) is the same object only by chance: match by path.
        and f"{module_name}.{name}" not in DIRECTIVE.findall("\n".join(map(page_text, PAGES)))
    ]
    assert missing == [], f"no ::: entry in docs/reference for {module_name}: {missing}"


def test_every_directive_names_a_public_object() -> None:
    for page in PAGES:
        for path in DIRECTIVE.findall(page_text(page)):
            private = [p for p in path.split(".") if p.startswith("_") and p != "__version__"]
            assert private == [], path
            resolve(path)


# --- what the pages must say ---------------------------------------------------------


def words(text: str) -> str:
    return " ".join(text.split())


def test_the_errors_guide_has_the_error_tree() -> None:
    doc = errors_module.__doc__
    assert doc is not None
    start = doc.index("::\n") + 3
    tree = textwrap.dedent(doc[start : doc.index("\n\n", start + 2)]).strip("\n")
    assert f"}}\n{tree}\n```" in page_text("guides/errors.md")


def test_the_desired_state_guide_has_the_field_table() -> None:
    assert words(rules_markdown()) in words(page_text("guides/desired-state.md"))


def cli_commands() -> set[str]:
    """Every command the parser has, as typed after ``tabby-async`` (``models embedding load``)."""
    found: set[str] = set()

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            found.add(prefix)
        for action in groups:
            for name, sub in action.choices.items():
                walk(sub, f"{prefix} {name}".strip())

    for group in GROUPS:
        parser = build_parser(group.name)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                walk(action.choices[group.name], group.name)
    return found


CLI_HEADING = re.compile(r"^#{2,4} `tabby-async ([a-z ]+?)(?: [A-Z\[<-].*)?`", re.MULTILINE)


def test_the_cli_page_documents_every_command_and_only_those() -> None:
    documented = set(CLI_HEADING.findall(page_text("cli.md")))
    commands = cli_commands()
    assert commands - documented == set(), "commands missing from docs/cli.md"
    assert documented - commands == set(), "docs/cli.md documents commands the CLI lacks"


def test_the_cli_page_lists_every_exit_code() -> None:
    text = page_text("cli.md")
    codes = {
        value
        for name, value in vars(cli_common).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }
    rows = {int(m) for m in re.findall(r"^\| `?(\d+)`? \|", text, flags=re.MULTILINE)}
    assert rows == codes


def test_the_cli_page_names_the_environment_variables() -> None:
    text = page_text("cli.md")
    for name in ("TABBY_URL", "TABBY_API_KEY", "TABBY_ADMIN_KEY", "TABBY_FLEET_NODES"):
        assert f"`{name}`" in text


UNSEEN = re.compile(r"PROTOCOL\.md|tabby_async/_\w+\.py|tabby_async(?:\.\w+)*\._[a-z]\w*")


@pytest.mark.parametrize("page", PAGES)
def test_no_page_cites_what_a_reader_cannot_see(page: str) -> None:
    assert UNSEEN.findall(page_text(page)) == []


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        return []

    assert sorted(pages(config["nav"])) == PAGES


def test_the_build_fetches_nothing() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["theme"]["font"] is False  # no web fonts at build (or view) time
    plugins = [p if isinstance(p, str) else next(iter(p)) for p in config["plugins"]]
    assert set(plugins) <= {"search", "mkdocstrings"}  # none of them downloads
    assert config["strict"] is True


# --- the docstring markup ------------------------------------------------------------


def load_markup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_markup", DOCS / "_ext" / "markup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


markup = load_markup()
KNOWN = {"Timeout": "tabby_async._timeouts.Timeout", "aclose": "tabby_async.X.aclose"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a :class:`Timeout` here",
            'a <autoref identifier="tabby_async._timeouts.Timeout" optional>'
            "<code>Timeout</code></autoref> here",
        ),
        (
            ":meth:`aclose`",
            '<autoref identifier="tabby_async.X.aclose" optional><code>aclose()</code></autoref>',
        ),
        (":class:`~tabby_async.errors.Nope`", "<code>Nope</code>"),  # no entry: plain code
        (":data:`tabby_async.NOPE`", "<code>tabby_async.NOPE</code>"),
        ("no roles, ``code``", "no roles, ``code``"),
    ],
)
def test_roles_become_links_or_code(text: str, expected: str) -> None:
    assert markup.to_markdown(text, KNOWN.get) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Use it so::\n\n    x = 1\n    y = 2\n\nAfter.",
            "Use it so:\n\n```python\nx = 1\ny = 2\n```\n\nAfter.",
        ),
        ("::\n\n    $ tabby-async models list\n", "\n```text\n$ tabby-async models list\n```\n"),
        ("Tree::\n\n    A\n    └── B\n", "Tree:\n\n``` { .text .wide }\nA\n└── B\n```\n"),
        ("Ends with :: but no block", "Ends with :: but no block"),
        ("Items:\n- a\n- b", "Items:\n\n- a\n- b"),
        ("Items:\n\n- a\n  more\n- b", "Items:\n\n- a\n  more\n- b"),
    ],
)
def test_literal_blocks_and_lists(text: str, expected: str) -> None:
    assert markup.to_markdown(text, KNOWN.get) == expected


def test_doc_comments_and_field_tables() -> None:
    lines = ["x = 1", "#: The first line", "#: and the second.", "NAME = 2"]
    assert markup.doc_comment(lines, 4) == "The first line\nand the second."
    assert markup.doc_comment(lines, 1) == ""
    table = markup.fields_table([("a", "int | None", "None", "An a | b.")])
    assert table.splitlines()[-1] == (
        "| `a` | <code>int &#124; None</code> | <code>None</code> | An a \\| b. |"
    )


# --- docstrings say what each public method raises -------------------------------------

RAISES = re.compile(r"\braise[sd]?\b", re.IGNORECASE)
#: A class docstring that speaks for every method of the class: what they all
#: raise, or where the errors any call may raise are listed (each method's own
#: ``Raises`` then names only what is particular to it, if anything).
EVERY_METHOD = re.compile(
    r"(operations|every method)\s+raises?\s+only|errors\s+any\s+call\s+may\s+raise",
    re.IGNORECASE,
)


def raising_classes() -> list[type]:
    from tabby_async import AsyncTabbyClient, DesiredState, LoadStream
    from tabby_async.fleet import FleetModels, TabbyFleet
    from tabby_async.services import (
        AsyncLoraService,
        AsyncModelsService,
        AsyncSamplingService,
        AsyncTemplatesService,
        AsyncTokensService,
    )

    return [
        AsyncTabbyClient,
        AsyncModelsService,
        AsyncLoraService,
        AsyncTemplatesService,
        AsyncSamplingService,
        AsyncTokensService,
        LoadStream,
        TabbyFleet,
        FleetModels,
        DesiredState,
    ]


@pytest.mark.parametrize("cls", raising_classes(), ids=lambda c: c.__name__)
def test_docstrings_say_what_each_public_method_raises(cls: type) -> None:
    class_doc = cls.__doc__ or ""
    assert RAISES.search(class_doc), f"{cls.__name__}: the class says nothing of errors"
    if EVERY_METHOD.search(class_doc):
        return
    silent = [
        name
        for name, value in vars(cls).items()
        if not name.startswith("_")
        and callable(value)
        and not isinstance(value, property)
        and not RAISES.search(getattr(value, "__doc__", None) or "")
    ]
    # ``close`` is ``aclose`` under a second name, documented once.
    assert [n for n in silent if n != "close"] == [], f"{cls.__name__}: no word on errors"
