"""The documentation site (docs/, mkdocs.yml) says what is true, and its code runs.

- Every page is followed as a reader follows it, by the README's rules
  (tests/test_readme.py): it starts the emulator its ``$ tabby-async
  emulator`` line says, its programs get only the variables that emulator's
  ``export`` line sets, and its blocks run in order: programs, pytest modules
  (top-level ``test_`` functions), and example files included whole
  (``--8<-- "examples/..."``, run by tests/test_examples.py). A block that is
  not a program is fenced with another language. The programs of each page
  are listed below with what they must print, so a new block fails until it
  is given its expectation.
- Every model a page loads is one the emulator it starts serves, and every
  nodes file it shows is on loopback.
- The API reference has an entry for every public name of the five public
  modules.
- The desired-state guide holds the table of compared and unreported fields.
- The CLI page documents every command the parser has, and only those, and
  every exit code.
- No page cites what a reader cannot see (the repository's protocol notes, a
  private module's path; the design map, which is about the source files,
  names them), and the site fetches nothing at build time.
- The design map lists every module of the package, and only those.

The docstring markup conversion the site applies (docs/_ext/markup.py) is
tested as tables at the end. ``mkdocs build --strict`` itself runs in CI
(.ci/run), which installs the ``docs`` extra.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import textwrap
import tomllib
import typing
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tabby_async import errors as errors_module
from tabby_async._model_plan import rules_markdown
from tabby_async.cli import GROUPS, build_parser
from tabby_async.cli import common as cli_common
from tabby_async.fleet import read_nodes_toml
from tabby_async.gateway import GatewayCode, parse_catalog
from tabby_async.gateway import _errors as gateway_errors
from tests.test_readme import EMULATOR_NAMES, Block, Page, follow_page, included

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
    "tabby_async.gateway",  # needs the gateway extra, which the test extra has
    "tabby_async.tracing",
]


def page_text(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def docs_page(page: str) -> Page:
    return Page(f"docs/{page}", page_text(page))


#: Per page, per program block in page order: a text that identifies it, and
#: what its output must contain (each a regular expression matched per line).
PROGRAMS: dict[str, list[tuple[str, list[str]]]] = {
    "index.md": [
        (
            "client.models.load_stream(model_name=",
            [
                r"^\['Llama-3.1-8B-Instruct-exl2', 'Qwen2.5-7B-Instruct-exl2', "
                r"'Mistral-Nemo-12B-exl2'\]$",
                r"^model 8 8 finished$",
            ],
        )
    ],
    "getting-started.md": [
        ("async with TabbyEmulator(", [r"^loaded: Llama-3.1-8B-Instruct-exl2$"]),
        (
            "ModelLoadRequest(model_name=",
            [
                r"^on the server: \['Llama-3.1-8B-Instruct-exl2', 'Qwen2.5-7B-Instruct-exl2', "
                r"'Mistral-Nemo-12B-exl2'\]$",
                r"^model 1/8 processing$",
                r"^model 8/8 finished$",
                r"^loaded Llama-3.1-8B-Instruct-exl2 with a context of 4096$",
            ],
        ),
    ],
    "guides/gateway.md": [
        (
            "gateway = Gateway(",
            [
                r"^small -> Llama-3\.2-1B-exl2:1 .*Llama-3\.2-1B-exl2:4$",
                r"^large -> Llama-3\.1-8B-Instruct-exl2:1 ",
                r"^\{'gpu-01': 'small', 'gpu-02': 'large'\}$",
            ],
        )
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
        ("on_progress=show", [r"^model 8/8 finished$", r"^done: finished$"]),
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
                r"^loaded: Qwen2.5-7B-Instruct-exl2$",
                r"^loads sent: 1$",
            ],
        ),
    ],
    "guides/fleets.md": [
        (
            "fleet.status()",
            [
                r"^gpu-01  ok  healthy, admin, no model$",
                r"^gpu-02  ok  healthy, admin, no model$",
                r"^gpu-02 3 models$",
                r"^run: 2 nodes: 2 ok in ",
            ],
        ),
        (
            "fleet.rollout(",
            [
                r"^rollout batch 2: 1 node: 1 ok ",
                r"^rollout of Qwen2.5-7B-Instruct-exl2 complete after 2 batches: 2 done, 0 failed",
                r"^rollout of Qwen2.5-7B-Instruct-exl2 complete after 1 batch: 2 done, 0 failed",
            ],
        ),
        (
            "fleet.models.load_stream(request)",
            [
                r"^gpu-01: model 1/8 processing$",
                r"^gpu-02: model 8/8 finished$",
                r"^gpu-0[12]: ok \(fleet 100%\)$",
                r"^load: 2 nodes: 2 ok",
            ],
        ),
        (
            "fleet.apply(state, dry_run=True)",
            [
                r"^gpu-01: template: switch \(none in use\)$",
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
                r"\"draft_model.draft_model_name: wanted 'Llama-3.2-1B-Instruct-exl2', "
                r"loaded None\"\]$",
                r"^first: reload: max_seq_len: wanted 8192, loaded 4096; "
                r"draft_model.draft_model_name: wanted 'Llama-3.2-1B-Instruct-exl2', loaded None$",
                r"^draft loaded: True$",
                r"^not compared: rope_alpha$",
                r"^second: none: already as requested$",
            ],
        ),
        (
            "client.apply(state, dry_run=True)",
            [
                r"^plan: model: load \(model_name: wanted 'Qwen2.5-7B-Instruct-exl2', "
                r"loaded 'Llama-3.1-8B-Instruct-exl2'\)$",
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
            "FleetCollector(nodes, desired=",
            [
                r'^tabby_up\{node="gpu-01"\} 1.0$',
                r'^tabby_up\{node="gpu-02"\} 1.0$',
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


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_which_emulator_its_programs_need(page: str) -> None:
    """A page whose programs read TABBY_* starts an emulator before its first such program."""
    doc = docs_page(page)
    reading = [
        b for b in doc.programs if re.search(r"AsyncTabbyClient\(\)|TABBY_FLEET_NODES", b.code)
    ]
    if not reading:
        return
    starts = [b.line for b in doc.blocks if doc.emulator_args(b)]
    assert starts and starts[0] < reading[0].line, (
        f"docs/{page}: programs at lines {[b.line for b in reading]} read TABBY_* "
        "but the page starts no emulator before them (a `$ tabby-async emulator` console line)"
    )


@pytest.mark.parametrize("page", PAGES)
def test_every_model_name_a_page_loads_is_served_by_the_emulator_it_starts(page: str) -> None:
    doc = docs_page(page)
    if not any(args == [] or args[:1] == ["--nodes"] for args in doc.emulator_args()):
        return  # no default emulator: its programs bring their own
    for block in doc.programs:
        if "TabbyEmulator(" in block.code:
            continue  # a program with an emulator of its own, and its own names
        for name in re.findall(r'(?:model_name|draft_model_name)="([^"]+)"', block.code):
            assert name in EMULATOR_NAMES, f"docs/{page} line {block.line}: {name!r}"


@pytest.mark.parametrize("page", PAGES)
def test_programs_are_complete_modules(page: str) -> None:
    for block in docs_page(page).python:
        if not included(block):
            compile(block.code, f"docs/{page}:{block.line}", "exec")


@pytest.mark.parametrize("page", PAGES)
def test_included_files_exist_and_are_tested(page: str) -> None:
    tested = (ROOT / "tests" / "test_examples.py").read_text(encoding="utf-8")
    for block in docs_page(page).python:
        for path in included(block):
            assert (ROOT / path).is_file(), f"docs/{page} line {block.line}: no {path}"
            assert path.startswith("examples/"), path
            assert Path(path).stem in tested, f"{path} is not run by tests/test_examples.py"


def toml_blocks() -> list[tuple[str, Block]]:
    return [(page, b) for page in PAGES for b in docs_page(page).blocks if b.language == "toml"]


def test_every_toml_block_is_a_valid_nodes_file_on_loopback(tmp_path: Path) -> None:
    blocks = toml_blocks()
    assert blocks, "the fleet guide shows a nodes file"
    for page, block in blocks:
        if re.search(r"^\[models\.", block.code, re.MULTILINE):  # a gateway's catalog
            assert parse_catalog(tomllib.loads(block.code)).models, f"docs/{page}"
            continue
        path = tmp_path / "nodes.toml"
        path.write_text(block.code, encoding="utf-8")
        names = set(re.findall(r'_env = "(\w+)"', block.code))
        specs, _ = read_nodes_toml(path, env=dict.fromkeys(names, "k"))
        assert specs, f"docs/{page} line {block.line}: no node"
        for spec in specs:
            assert spec.url.startswith("http://127.0.0.1:"), f"docs/{page}: {spec.url}"


@pytest.mark.parametrize("page", PAGES)
async def test_the_page_runs_as_written(page: str, tmp_path: Path) -> None:
    await follow_page(docs_page(page), PROGRAMS.get(page, []), tmp_path)


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


def test_the_gateway_guide_lists_every_error_code_and_only_those() -> None:
    page = page_text("guides/gateway.md")
    start = page.index("### Errors")
    section = page[start : page.index("\n## ", start)]
    rows = re.findall(r"^\| `(\w+)` \| (\d{3}) \|", section, re.M)
    assert sorted(code for code, _ in rows) == sorted(typing.get_args(GatewayCode))
    # The errors module's tree gives each code the same status as the guide.
    doc = gateway_errors.__doc__ or ""
    for code, status in rows:
        assert re.search(rf"{code}\s+{status}\s", doc), f"{code} {status}"


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
    text = page_text(page)
    if page == "design.md":  # the map of the source tree: private files are its subject
        assert "PROTOCOL.md" not in text
        return
    assert UNSEEN.findall(text) == []


def test_the_design_map_lists_every_module_and_only_those() -> None:
    text = page_text("design.md")
    listed = set()
    for folder, table in re.findall(
        r"^### `(tabby_async[\w/]*)/`\n(.*?)(?=^#|\Z)", text, re.M | re.S
    ):
        listed |= {f"{folder}/{name}" for name in re.findall(r"^\| `(\w+\.py)` \|", table, re.M)}
    package = ROOT / "tabby_async"
    modules = {p.relative_to(ROOT).as_posix() for p in package.rglob("*.py")}
    assert listed == modules, (sorted(modules - listed), sorted(listed - modules))


def test_the_design_map_says_a_client_has_two_pools() -> None:
    text = " ".join(page_text("design.md").split())
    assert "owns **two** aiohttp sessions" in text
    assert "one session" not in text.replace("shares one session", "")


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
