"""Typing: the keyword fields are checked by a type checker, and stay in step with the Structs.

``client.models.load(model_name="m", max_seq_len=4096)`` takes its fields as
``**fields: Unpack[ModelLoadFields]``. The first tests keep each TypedDict the
mirror of its request Struct, so that a field added to a Struct but not to its
dict fails here. The others run ``mypy --strict`` once, on small snippets a
user could write, and check which lines it refuses: a misspelt or mistyped
field, a misspelt error code, a sentinel that is not the one.
"""

from __future__ import annotations

import re
import textwrap
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from mypy import api as mypy_api

from tabby_async import (
    DownloadRequest,
    DraftModelLoadRequest,
    EmbeddingModelLoadRequest,
    ModelLoadRequest,
)
from tabby_async.types import (
    DownloadFields,
    DraftModelFields,
    EmbeddingModelLoadFields,
    LoraLoadFields,
    LoraLoadItem,
    LoraLoadItemFields,
    LoraLoadRequest,
    ModelLoadFields,
    TokenDecodeRequest,
    TokenEncodeRequest,
    TokenOptions,
)
from tabby_async.types import _fields as fields_module

ROOT = Path(__file__).resolve().parent.parent

# --- the TypedDicts mirror the Structs ------------------------------------------------

#: id -> (TypedDict, its Struct, Struct fields it leaves out, keys whose type it widens).
MIRRORS: dict[str, tuple[type, type[msgspec.Struct], set[str], dict[str, Any]]] = {
    "DraftModelFields": (DraftModelFields, DraftModelLoadRequest, set(), {}),
    "ModelLoadFields": (
        ModelLoadFields,
        ModelLoadRequest,
        set(),
        # A dict of the draft's fields is taken too, and made into the Struct.
        {"draft_model": DraftModelLoadRequest | DraftModelFields | None},
    ),
    "EmbeddingModelLoadFields": (EmbeddingModelLoadFields, EmbeddingModelLoadRequest, set(), {}),
    # download(timeout=...) bounds the call; the server's own timeout is the Struct's.
    "DownloadFields": (DownloadFields, DownloadRequest, {"timeout"}, {}),
    "LoraLoadItemFields": (LoraLoadItemFields, LoraLoadItem, set(), {}),
    "LoraLoadFields": (
        LoraLoadFields,
        LoraLoadRequest,
        set(),
        {"loras": list[LoraLoadItem | LoraLoadItemFields]},  # an item may be a dict
    ),
    # The switches both token routes share; the text or tokens are a positional argument.
    "TokenOptions/encode": (TokenOptions, TokenEncodeRequest, {"text", "template_vars"}, {}),
    "TokenOptions/decode": (TokenOptions, TokenDecodeRequest, {"tokens"}, {}),
}


def test_every_typeddict_has_a_mirror_here() -> None:
    mirrored = {entry[0].__name__ for entry in MIRRORS.values()}
    assert set(fields_module.__all__) == mirrored


@pytest.mark.parametrize(("fields", "struct", "left_out", "widened"), MIRRORS.values(), ids=MIRRORS)
def test_each_typeddict_has_the_struct_fields(
    fields: type, struct: type[msgspec.Struct], left_out: set[str], widened: dict[str, Any]
) -> None:
    keys = set(typing.get_type_hints(fields))
    assert keys == set(struct.__struct_fields__) - left_out
    assert left_out <= set(struct.__struct_fields__)  # an exception names a real field
    # Every key may be left out: a Struct passed positionally may carry the rest.
    assert fields.__required_keys__ == frozenset()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("fields", "struct", "left_out", "widened"), MIRRORS.values(), ids=MIRRORS)
def test_each_typeddict_key_has_the_struct_field_type(
    fields: type, struct: type[msgspec.Struct], left_out: set[str], widened: dict[str, Any]
) -> None:
    dict_types = typing.get_type_hints(fields)
    struct_types = typing.get_type_hints(struct)
    for key, hint in dict_types.items():
        assert hint == widened.get(key, struct_types[key]), key


# --- mypy --strict on what a user writes ----------------------------------------------

#: (id, code in an async function with ``client: AsyncTabbyClient`` and
#: ``err: TabbyError``, the mypy error codes it must get; empty: it passes).
CASES: list[tuple[str, str, set[str]]] = [
    ("load-ok", 'await client.models.load(model_name="m", max_seq_len=4096)', set()),
    ("load-typo", 'await client.models.load(model_name="m", max_seq_lenn=4096)', {"call-arg"}),
    ("load-str", 'await client.models.load(model_name="m", max_seq_len="4096")', {"arg-type"}),
    ("load-rope-auto", 'await client.models.load(model_name="m", rope_alpha="auto")', set()),
    ("load-rope-word", 'await client.models.load(model_name="m", rope_alpha="big")', {"arg-type"}),
    (
        "stream-typo",
        'async with client.models.load_stream(model_name="m", cache_sise=512) as s:\n    pass',
        {"call-arg"},
    ),
    (
        "ensure-typo",
        'await client.models.ensure_loaded(model_name="m", max_seq_lenn=1)',
        {"call-arg"},
    ),
    ("plan-ok", 'await client.models.plan_load(model_name="m", vision=True)', set()),
    (
        "draft-dict-ok",
        'await client.models.load(model_name="m", draft_model={"draft_model_name": "d"})',
        set(),
    ),
    (
        "draft-struct-ok",
        "await client.models.load(\n"
        '    model_name="m", draft_model=DraftModelLoadRequest(draft_model_name="d")\n'
        ")",
        set(),
    ),
    (
        "draft-dict-typo",
        'await client.models.load(model_name="m", draft_model={"draft_model_nam": "d"})',
        {"arg-type"},
    ),
    ("embedding-ok", 'await client.models.load_embedding(embedding_model_name="e")', set()),
    (
        "embedding-foreign-field",
        'await client.models.load_embedding(embedding_model_name="e", max_seq_len=1)',
        {"call-arg"},
    ),
    ("download-ok", 'await client.models.download(repo_id="o/r", token="t", timeout=60)', set()),
    ("download-typo", 'await client.models.download(repo_id="o/r", revison="main")', {"call-arg"}),
    ("lora-ok", 'await client.lora.load(loras=[{"name": "l", "scaling": 0.5}])', set()),
    ("lora-item-typo", 'await client.lora.load(loras=[{"nmae": "l"}])', {"list-item"}),
    ("tokens-ok", 'await client.tokens.encode("hi", add_bos_token=False)', set()),
    ("tokens-typo", "await client.tokens.decode([1, 2], decode_special_token=True)", {"call-arg"}),
    ("timeout-sentinel", "await client.models.list(timeout=USE_CLIENT_DEFAULT)", set()),
    ("timeout-none", "await client.models.list(timeout=None)", set()),
    ("timeout-seconds", "await client.models.list(timeout=2.5)", set()),
    ("timeout-exact", "await client.models.list(timeout=Timeout(read=1.0))", set()),
    ("load-timeout-none", 'await client.models.load(model_name="m", timeout=None)', set()),
    ("timeout-ellipsis", "await client.models.list(timeout=...)", {"arg-type"}),
    ("retries-sentinel", "await client.models.list(max_retries=USE_CLIENT_DEFAULT)", set()),
    ("retries-none", "await client.models.list(max_retries=None)", {"arg-type"}),
    ("code-ok", 'code: ErrorCode = "not_found"', set()),
    ("code-typo", 'code: ErrorCode = "not_fuond"', {"assignment"}),
    ("code-compare-typo", 'typo = err.code == "not_fuond"', {"comparison-overlap"}),
    (
        "code-match-typo",
        'match err.code:\n    case "not_fuond":\n        print(1)\n    case _:\n        print(2)',
        {"unreachable"},
    ),
    (
        "code-match-ok",
        'match err.code:\n    case "not_found":\n        print(1)\n    case _:\n        print(2)',
        set(),
    ),
]

HEADER = """\
# mypy: warn-unreachable
from __future__ import annotations

from tabby_async import (
    USE_CLIENT_DEFAULT,
    AsyncTabbyClient,
    DraftModelLoadRequest,
    TabbyError,
    Timeout,
)
from tabby_async.errors import ErrorCode
"""

ERROR_LINE = re.compile(r"^.*?:(\d+): error: .*\[([a-z-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The error codes ``mypy --strict`` gives each case, from one run over all of them."""
    folder = tmp_path_factory.mktemp("typing")
    lines = HEADER.splitlines()
    spans: dict[str, range] = {}
    for name, code, _ in CASES:
        function = name.replace("-", "_")
        lines += [
            "",
            "",
            f"async def {function}(client: AsyncTabbyClient, err: TabbyError) -> None:",
        ]
        start = len(lines) + 1  # mypy counts lines from 1
        lines += textwrap.indent(code, "    ").splitlines()
        spans[name] = range(start, len(lines) + 1)
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
    found: dict[str, set[str]] = {name: set() for name in spans}
    stray = []
    for line in out.splitlines():
        match = ERROR_LINE.match(line)
        if match is None:
            continue
        number, code = int(match[1]), match[2]
        owners = [name for name, span in spans.items() if number in span]
        if owners:
            found[owners[0]].add(code)
        else:
            stray.append(line)
    assert stray == [], "errors outside the cases (the snippet's own set-up is wrong)"
    return found


@pytest.mark.parametrize(("name", "code", "expected"), CASES, ids=[case[0] for case in CASES])
def test_mypy_strict_on_user_code(
    mypy_errors: dict[str, set[str]], name: str, code: str, expected: set[str]
) -> None:
    assert mypy_errors[name] == expected, code
