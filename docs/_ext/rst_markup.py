"""A griffe extension: every docstring the site shows, made Markdown (see ``markup.py``).

It also shows the fields of a msgspec Struct, a TypedDict or a dataclass as one table (name,
type, default, what it is) rather than one heading each. Only the text given to
the site changes; the package is not touched.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import griffe

sys.path.insert(0, str(Path(__file__).resolve().parent))  # griffe loads this file by path

from markup import doc_comment, fields_table, to_markdown  # noqa: E402


class RstMarkup(griffe.Extension):
    """Rewrites every docstring of the loaded package once it is all loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        objects = list(_walk(pkg))
        for obj in objects:
            if obj.docstring is None and obj.is_attribute and obj.lineno is not None:
                comment = doc_comment(obj.module.lines, obj.lineno)
                if comment:
                    obj.docstring = griffe.Docstring(comment, parent=obj)
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = to_markdown(
                    obj.docstring.value, lambda target, obj=obj: _resolve(target, obj)
                )
        for obj in objects:
            if isinstance(obj, griffe.Class) and _has_fields(obj):
                _fields_as_table(obj)
            if isinstance(obj, griffe.Function):
                _public_defaults(obj)


def _public_defaults(func: griffe.Function) -> None:
    """Show a default by the public name a reader knows (``_DEFAULT`` is a module's alias)."""
    for parameter in func.parameters:
        if str(parameter.default) == "_DEFAULT":
            parameter.default = "USE_CLIENT_DEFAULT"


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if isinstance(member, griffe.Object):  # not an alias: it is walked where it lives
            yield from _walk(member)


def _resolve(target: str, obj: griffe.Object) -> str | None:
    """The full path of ``target`` seen from ``obj``: its members, its parents', the package's."""
    scope: griffe.Object | None = obj
    root = obj
    while scope is not None:
        found = _lookup(scope, target.split("."))
        if found is not None:
            return found
        root = scope
        scope = scope.parent
    if target.startswith(root.name + "."):
        return _lookup(root, target.split(".")[1:])
    return None


def _lookup(start: griffe.Object, parts: list[str]) -> str | None:
    current: Any = start
    try:
        for part in parts:
            current = current.members[part]
        return str(current.final_target.path if current.is_alias else current.path)
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _has_fields(cls: griffe.Class) -> bool:
    """True for a msgspec Struct, a TypedDict or a dataclass: classes made of their fields."""
    bases = [str(base) for base in cls.bases]
    decorators = [str(d.value) for d in cls.decorators]
    made_of_fields = any("Struct" in base or "TypedDict" in base for base in bases)
    return made_of_fields or any("dataclass" in d for d in decorators)


def _fields_as_table(cls: griffe.Class) -> None:
    """Move the class's fields out of its members into one table in its docstring."""
    rows = []
    for name, member in list(cls.members.items()):
        if not isinstance(member, griffe.Attribute) or name.startswith("_"):
            continue
        if member.annotation is None or "ClassVar" in str(member.annotation):
            continue
        if "property" in member.labels:
            continue
        doc = member.docstring.value if member.docstring is not None else ""
        default = None if member.value is None else str(member.value)
        rows.append((name, str(member.annotation), default, doc))
        del cls.members[name]
    if rows:
        text = cls.docstring.value if cls.docstring is not None else ""
        cls.docstring = griffe.Docstring(f"{text}\n\n{fields_table(rows)}\n", parent=cls)
