"""A griffe extension: the package's reStructuredText bits, as Markdown the site renders.

The docstrings are written to read well in ``help()`` and in an editor, so they
use a few reStructuredText habits that Markdown does not know:

- roles such as ``:class:`~tabby_async.Timeout``` or ``:meth:`aclose```, which
  become links to the object's entry in the API reference (plain code when it has
  none, such as a private helper);
- a paragraph ending in ``::`` before an indented block, which becomes a
  highlighted code block (Python when it parses as Python);
- a list that starts right under a line of text, which Markdown would fold into
  that line: a blank line is put before it;
- ``#:`` comments above an attribute, which document it.

The fields of a msgspec Struct or a dataclass are shown as one table (name, type,
default, what it is) rather than one heading each.

Only the text given to the site changes; the package is not touched.
"""

from __future__ import annotations

import html
import re
import textwrap
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(class|meth|func|data|attr|exc|mod|obj|const):`(~?)([^`]+)`")
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")


class RstMarkup(griffe.Extension):
    """Rewrites every docstring of the loaded package once it is all loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        objects = list(_walk(pkg))
        for obj in objects:
            if obj.docstring is None and obj.is_attribute:
                comment = _doc_comment(obj)
                if comment:
                    obj.docstring = griffe.Docstring(comment, parent=obj)
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = to_markdown(obj.docstring.value, obj)
        for obj in objects:
            if obj.is_class and _has_fields(obj):
                _fields_table(obj)  # type: ignore[arg-type]


def _has_fields(cls: griffe.Object) -> bool:
    """True for a msgspec Struct or a dataclass."""
    bases = [str(base) for base in getattr(cls, "bases", [])]
    decorators = [str(d.value) for d in getattr(cls, "decorators", [])]
    return any("Struct" in base for base in bases) or any("dataclass" in d for d in decorators)


def _cell_code(text: str) -> str:
    """``text`` as code in a table cell (a ``|`` would end the cell)."""
    return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"


def _fields_table(cls: griffe.Class) -> None:
    """Move the class's fields out of its members into one table in its docstring."""
    rows = []
    for name, member in list(cls.members.items()):
        if member.is_alias or not member.is_attribute or name.startswith("_"):
            continue
        if member.annotation is None or "ClassVar" in str(member.annotation):
            continue
        if "property" in member.labels:
            continue
        default = "" if member.value is None else _cell_code(str(member.value))
        doc = member.docstring.value if member.docstring is not None else ""
        doc = " ".join(doc.split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {_cell_code(str(member.annotation))} | {default} | {doc} |")
        del cls.members[name]
    if not rows:
        return
    table = "\n".join(["| field | type | default | |", "|---|---|---|---|", *rows])
    text = cls.docstring.value if cls.docstring is not None else ""
    cls.docstring = griffe.Docstring(f"{text}\n\n{table}\n", parent=cls)


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


def _doc_comment(obj: griffe.Object) -> str:
    """The ``#:`` comment lines just above an attribute: its documentation, by custom."""
    if obj.lineno is None or obj.parent is None:
        return ""
    try:
        lines = obj.module.lines
    except (AttributeError, ValueError):
        return ""
    found: list[str] = []
    index = obj.lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        found.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    return "\n".join(found)


def to_markdown(text: str, obj: griffe.Object | None = None) -> str:
    """``text`` with its roles, literal blocks and tight lists made Markdown."""
    text = ROLE.sub(lambda m: _link(m, obj), text)
    return _lists(_literal_blocks(text))


def _link(match: re.Match[str], obj: griffe.Object | None) -> str:
    kind, short, target = match.groups()
    target = target.strip().lstrip(".")
    shown = target.rsplit(".", 1)[-1] if short else target
    if kind in ("meth", "func"):
        shown += "()"
    path = _resolve(target, obj) if obj is not None else None
    code = f"<code>{html.escape(shown)}</code>"
    if path is None:
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _resolve(target: str, obj: griffe.Object) -> str | None:
    """The full path of ``target`` seen from ``obj``: its members, its parents', the package's."""
    scopes: list[griffe.Object] = []
    scope: griffe.Object | None = obj
    while scope is not None:
        scopes.append(scope)
        scope = scope.parent
    for start in scopes:
        found = _lookup(start, target.split("."))
        if found is not None:
            return found
    root = scopes[-1]
    if target.startswith(root.name + "."):
        return _lookup(root, target.split(".")[1:])
    return None


def _lookup(start: griffe.Object, parts: list[str]) -> str | None:
    current: Any = start
    for part in parts:
        try:
            current = current.members[part]
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    try:
        return str(current.final_target.path if current.is_alias else current.path)
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return str(current.path)


def _literal_blocks(text: str) -> str:
    """Each ``::`` paragraph end and its indented block as a fenced code block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        head = line.rstrip()[:-2].rstrip()
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        block: list[str] = []
        while j < len(lines) and (not lines[j].strip() or lines[j].startswith((" ", "\t"))):
            block.append(lines[j])
            j += 1
        while block and not block[-1].strip():
            block.pop()
        if not block:
            out.append(line)
            i += 1
            continue
        if head:
            out.append(head + ":")
        code = textwrap.dedent("\n".join(block))
        out += ["", f"```{_language(code)}", *code.split("\n"), "```", ""]
        i = j
    return "\n".join(out)


def _language(code: str) -> str:
    """``python`` unless the block is a shell session or a drawing (such as the error tree)."""
    first = code.lstrip().split(maxsplit=1)[0] if code.strip() else ""
    if first in ("$", "tabby-async", "pip", "python") or any(c in code for c in "├└│"):
        return "text"
    return "python"


def _lists(text: str) -> str:
    """A blank line before a list that starts right under a line of text."""
    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        elif (
            not fenced
            and LIST_ITEM.match(line)
            and out
            and out[-1].strip()
            and not LIST_ITEM.match(out[-1])
            and not out[-1].startswith((" ", "\t"))
        ):
            out.append("")
        out.append(line)
    return "\n".join(out)
