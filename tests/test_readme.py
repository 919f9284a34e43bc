"""Every Python block of README.md runs, as a user would run it, against the emulator.

Each ```python block is one of:

- a complete program (the default): run as a script in a fresh process with
  ``TABBY_URL``, ``TABBY_API_KEY``, ``TABBY_ADMIN_KEY`` (and, for the fleet,
  ``TABBY_FLEET_NODES``) pointing at fresh emulators serving the models the
  samples name; it must exit 0 and print what :data:`PROGRAMS` expects;
- a pytest module, marked by a ``<!-- pytest -->`` line just before the fence:
  run with pytest (``examples/`` importable), every test must pass;
- a deliberate fragment, marked ``<!-- not-a-program -->``: not run, only
  counted.

The expected numbers of each kind are fixed below, so a new block fails this
test until it is given its expectation (or marked on purpose).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tabby_async.fleet import read_nodes_toml
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tabby_async.testing.pytest_plugin import EmulatorFactory

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ENV_NAMES = ("TABBY_URL", "TABBY_API_KEY", "TABBY_ADMIN_KEY", "TABBY_FLEET_NODES", "HF_TOKEN")
API_KEY = "readme-api-key"
ADMIN_KEY = "readme-admin-key"

MARK_PYTEST = "<!-- pytest -->"
MARK_FRAGMENT = "<!-- not-a-program -->"
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # of the opening fence, 1-based
    mark: str | None  # the marker line just before the fence, if any


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block of ``text``, with the marker comment just before it."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        mark = before if before in (MARK_PYTEST, MARK_FRAGMENT) else None
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(match.group(1), match.group(2), line, mark))
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.language in ("python", "py", "python3")]
PROGRAM_BLOCKS = [b for b in PYTHON if b.mark is None]
PYTEST_BLOCKS = [b for b in PYTHON if b.mark == MARK_PYTEST]
FRAGMENT_BLOCKS = [b for b in PYTHON if b.mark == MARK_FRAGMENT]

#: Per program block, in README order: a text that identifies it, and what
#: its output must contain (each a regular expression matched per line).
PROGRAMS: list[tuple[str, list[str]]] = [
    (
        "ModelLoadRequest(model_name=\"Llama-3-8B-exl2\"",
        [
            r"^\['Llama-3-8B-exl2', 'Llama-3.1-70B-exl2'\]$",
            r"^model 1 3 processing$",
            r"^model 3 3 finished$",
            r"^Llama-3-8B-exl2 4096$",
        ],
    ),
    (
        'client.lora.load(loras=[LoraLoadItem(name="style-lora"',
        [r"^adapters: \['style-lora'\]$", r"^not applied: \['style-lora'\]$", r"^active: \[\]$"],
    ),
    (
        'client.templates.switch("chatml.jinja")',
        [r"^templates: \['alpaca', 'chatml'\]$", r"^in use: chatml$", r"^not_found 500$"],
    ),
    (
        'client.sampling.switch(preset="precise")',
        [
            r"^presets: \['fast', 'precise'\] selected: precise$",
            r"^selected: precise in force: \{'temperature': \{'override': 0\.7, 'force': True\}\}$",
            r"^selected: precise in force: \{\}$",
        ],
    ),
    (
        'client.tokens.encode("Hello, world"',
        [
            r"^[1-9]\d* tokens$",
            r"^decoded: Hello, world$",
            r"^chat messages need a prompt template$",
            r"^chat: [1-9]\d* tokens$",
        ],
    ),
    ("client.service_info()", [r"^TabbyAPI \{'openai': '/v1', 'koboldai': '/api'\}$"]),
    (
        "client.apply(state, dry_run=True)",
        [
            r"^plan: model: load; template: switch; sampling: switch$",
            r"^done: model: load; template: switch; sampling: switch$",
            r"^again: False nothing to do: model: none; template: none; sampling: none$",
            r"^unchecked: [1-9]\d*$",
        ],
    ),
    ("match err.code:", [r"^no such model: no-such-model$"]),
    (
        "fleet.rollout(",
        [
            r"^gpu-01 +ok ",
            r"^gpu-02 +ok ",
            r"^rollout of Llama-3.1-70B-exl2 complete .* 2 done, 0 failed",
        ],
    ),
    (
        "fleet.models.load_stream(request)",
        [
            r"^gpu-01: model 1/3 processing$",
            r"^gpu-02: model 3/3 finished$",
            r"^gpu-0[12]: ok \(fleet \d+%\)$",
            r"^gpu-0[12]: ok \(fleet 100%\)$",
            r"2 nodes: 2 ok",
        ],
    ),
    (
        "trace_configs=[create_trace_config()]",
        [r"^POST -$", r"^tabby\.load ok$", r"^tabby\.ensure_loaded ok$"],
    ),
    (
        "FleetCollector.from_toml(",
        [
            r'^tabby_up\{node="gpu-01"\} 1\.0$',
            r'^tabby_up\{node="gpu-02"\} 1\.0$',
            r"^tabby_nodes 2\.0$",
        ],
    ),
    ("TabbyEmulator(", [r"^\['a', 'b'\]$"]),
]
#: How many blocks are pytest modules, and how many are deliberate fragments.
PYTEST_MODULES = 2
FRAGMENTS = 0


def test_every_python_block_is_accounted_for() -> None:
    assert len(PROGRAM_BLOCKS) == len(PROGRAMS), (
        "a README python block was added or removed: give it an entry in PROGRAMS, "
        f"or mark it {MARK_PYTEST} / {MARK_FRAGMENT} (blocks at lines "
        f"{[b.line for b in PROGRAM_BLOCKS]})"
    )
    for block, (marker, _) in zip(PROGRAM_BLOCKS, PROGRAMS, strict=True):
        assert marker in block.code, f"README line {block.line}: expected the {marker!r} block"
    assert len(PYTEST_BLOCKS) == PYTEST_MODULES
    assert len(FRAGMENT_BLOCKS) == FRAGMENTS
    # Nothing in any block a user would have to fill in.
    for block in PYTHON:
        assert '="..."' not in block.code, f"README line {block.line}: a placeholder"


def test_blocks_and_their_marks_are_found() -> None:
    text = (
        "# T\n\n```python\nprint(1)\n```\n\n<!-- pytest -->\n```python\ndef test(): pass\n```\n"
        "<!-- not-a-program -->\n\n```python\nawait x\n```\n```\n$ shell\n```\n"
    )
    assert readme_blocks(text) == [
        Block("python", "print(1)\n", 3, None),
        Block("python", "def test(): pass\n", 8, MARK_PYTEST),
        Block("python", "await x\n", 13, MARK_FRAGMENT),
        Block("", "$ shell\n", 16, None),
    ]


def test_programs_are_complete_modules() -> None:
    # Top-level await or async with is a SyntaxError in a script.
    for block in PROGRAM_BLOCKS:
        compile(block.code, f"README.md:{block.line}", "exec")


def test_the_toml_block_is_a_valid_nodes_file(tmp_path: Path) -> None:
    (toml,) = [b for b in BLOCKS if b.language == "toml"]
    path = tmp_path / "nodes.toml"
    path.write_text(toml.code, encoding="utf-8")
    env = {name: "k" for name in re.findall(r'_env = "(\w+)"', toml.code)}
    assert [spec.name for spec in read_nodes_toml(path, env=env)[0]] == ["gpu-01", "gpu-02"]


# --- running them --------------------------------------------------------------------


@pytest.fixture
async def servers(tabby_emulator_factory: EmulatorFactory) -> list[TabbyEmulator]:
    """Two fresh emulators with the samples' models, LoRA folder and keys (two fleet nodes).

    The templates (chatml, alpaca) and sampler presets (fast, precise) the
    samples use are the emulator's own.
    """
    models = [EmulatedModel(name, modules=3) for name in ("Llama-3-8B-exl2", "Llama-3.1-70B-exl2")]
    setup = {"api_key": API_KEY, "admin_key": ADMIN_KEY, "loras": ["style-lora"]}
    return [await tabby_emulator_factory(models, **setup) for _ in range(2)]


def nodes_file(servers: list[TabbyEmulator], folder: Path) -> Path:
    """The README's own nodes.toml, with its URLs pointed at the emulators."""
    (toml,) = [b for b in BLOCKS if b.language == "toml"]
    urls = iter(server.url for server in servers)
    text = re.sub(r'^url = ".*"$', lambda _: f'url = "{next(urls)}"', toml.code, flags=re.M)
    path = folder / "nodes.toml"
    path.write_text(text, encoding="utf-8")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return {**base, **extra, "PYTHONUNBUFFERED": "1"}


async def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)  # a hang guard only
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("block", "expected"),
    # strict=False: a count mismatch is reported by the test above, not at collection.
    [(b, p[1]) for b, p in zip(PROGRAM_BLOCKS, PROGRAMS, strict=False)],
    ids=[f"line{b.line}" for b in PROGRAM_BLOCKS],
)
async def test_program_runs(
    block: Block, expected: list[str], servers: list[TabbyEmulator], tmp_path: Path
) -> None:
    script = tmp_path / "sample.py"
    script.write_text(block.code, encoding="utf-8")
    env = clean_env(
        TABBY_URL=servers[0].url,
        TABBY_API_KEY=API_KEY,
        TABBY_ADMIN_KEY=ADMIN_KEY,
        TABBY_FLEET_NODES=str(nodes_file(servers, tmp_path)),
        GPU01_ADMIN_KEY=ADMIN_KEY,
        GPU02_ADMIN_KEY=ADMIN_KEY,
    )
    code, out, err = await run([sys.executable, str(script)], tmp_path, env)
    assert code == 0, f"README.md line {block.line} failed:\n{err}"
    lines = out.splitlines()
    for pattern in expected:
        assert any(re.search(pattern, line) for line in lines), (pattern, out)


async def passes_as_pytest_module(block: Block, folder: Path, where: str) -> None:
    """Run ``block`` with pytest in a fresh process (``examples/`` importable); all must pass.

    ``where`` names the block in a failure (``README.md``, ``docs/cli.md``).
    """
    module = folder / f"test_block_line{block.line}.py"
    module.write_text(block.code, encoding="utf-8")
    env = clean_env(PYTHONPATH=str(ROOT / "examples"))
    # A user's project would set the loop scope in its pytest configuration.
    options = ["-p", "no:cacheprovider", "-W", "error"]
    options += ["-o", "asyncio_default_fixture_loop_scope=function"]
    argv = [sys.executable, "-m", "pytest", "-q", *options]
    code, out, err = await run([*argv, module.name], folder, env)
    assert code == 0, f"{where} line {block.line} failed:\n{out}\n{err}"
    assert re.search(r"^\d+ passed", out.splitlines()[-1]), out


@pytest.mark.parametrize("block", PYTEST_BLOCKS, ids=[f"line{b.line}" for b in PYTEST_BLOCKS])
async def test_pytest_module_passes(block: Block, tmp_path: Path) -> None:
    await passes_as_pytest_module(block, tmp_path, "README.md")
