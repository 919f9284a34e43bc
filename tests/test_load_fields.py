"""Each load field is declared once: its check, comparison and CLI option all come from it."""

from __future__ import annotations

import argparse
from typing import Annotated, get_type_hints

import msgspec
import pytest

from tabby_async.cli._load_options import add_load_options, build_load_request
from tabby_async.desired import FIELD_RULES
from tabby_async.errors import InvalidInputError
from tabby_async.types import (
    DraftModelLoadRequest,
    LoadField,
    ModelLoadFields,
    ModelLoadRequest,
    load_fields,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_load_options(parser)
    return parser


def test_every_request_field_is_declared() -> None:
    for cls in (ModelLoadRequest, DraftModelLoadRequest):
        assert [name for name, _ in load_fields(cls)] == list(cls.__struct_fields__)


def test_the_rules_table_and_the_cli_follow_the_declarations() -> None:
    declared = [n for n, _ in load_fields(ModelLoadRequest) if n != "draft_model"]
    draft = [f"draft_model.{n}" for n, _ in load_fields(DraftModelLoadRequest)]
    assert {r.field for r in FIELD_RULES} == {*declared, *draft}
    flags = {o for a in _parser()._actions for o in a.option_strings}
    for name, rule in (*load_fields(ModelLoadRequest), *load_fields(DraftModelLoadRequest)):
        if name in ("model_name", "draft_model"):
            continue
        assert (rule.flag or "--" + name.replace("_", "-")) in flags, name


def test_the_cli_reads_each_option_as_its_field_type() -> None:
    args = _parser().parse_args(
        [
            "m",
            "--max-seq-len=-1",
            "--autosplit-reserve=-1,96",
            "--rope-alpha",
            "auto",
            "--rope-scale",
            "2.5",
            "--vision",
            "--no-skip-queue",
            "--draft-model",
            "d",
            "--draft-rope-alpha",
            "1.5",
        ]
    )
    request = build_load_request(args)
    assert msgspec.to_builtins(request) == {
        "model_name": "m",
        "max_seq_len": -1,
        "autosplit_reserve": [-1.0, 96.0],
        "rope_alpha": "auto",
        "rope_scale": 2.5,
        "vision": True,
        "skip_queue": False,
        "draft_model": {"draft_model_name": "d", "draft_rope_alpha": 1.5},
    }


CALLS: list[tuple[str, object]] = []


def _toy_check(field: str, value: object) -> None:
    CALLS.append((field, value))
    if value == "bad":
        raise InvalidInputError(field, "is bad")


class Toy(msgspec.Struct, kw_only=True):
    """A new server field costs one annotated line (and its TypedDict line)."""

    new_field: Annotated[str | None, LoadField(_toy_check, metavar="X")] = None


def test_a_field_declared_with_a_check_is_checked_by_it() -> None:
    ((name, rule),) = load_fields(Toy)
    assert name == "new_field" and rule.metavar == "X"
    with pytest.raises(InvalidInputError, match="new_field: is bad"):
        rule.check(name, "bad")
    assert CALLS[-1] == ("new_field", "bad")


def test_the_typed_dict_keeps_step_with_the_struct() -> None:
    hints = get_type_hints(ModelLoadRequest)
    assert set(ModelLoadFields.__annotations__) == set(hints)
