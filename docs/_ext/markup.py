"""The docstrings' reStructuredText habits, as the Markdown the documentation site renders.

Pure text functions (no griffe here, so the tests run them without the docs
extra); ``rst_markup.py`` applies them to every docstring the site shows.

The docstrings are written to read well in ``help()`` and in an editor, so they
use a few habits Markdown does not know:

- roles such as ``:class:`~tabby_async.Timeout``` or ``:meth:`aclose```: they
  become links to the object's entry in the API reference (plain code when it
  has none, such as a private helper);
- a paragraph ending in ``::`` before an indented block: it becomes a fenced,
  highlighted code block;
- a list that starts right under a line of text, which Markdown would fold into
  that line: a blank line goes before it;
- ``#:`` comments above an attribute, which document it.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Callable, Sequence

ROLE = re.compile(r":(?:py:)?(class|meth|func|data|attr|exc|mod|obj|const):`(~?)([^`]+)`")
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")

#: Finds the full path of a role's target, or None when it has no entry.
Resolver = Callable[[str], "str | None"]


def to_markdown(text: str, resolve: Resolver) -> str:
    """``text`` with its roles, literal blocks and tight lists made Markdown."""
    text = ROLE.sub(lambda m: link(m, resolve), text)
    return blank_before_lists(literal_blocks(text))


def link(match: re.Match[str], resolve: Resolver) -> str:
    """One role as code, linked (if the site has an entry for it) by an optional autoref."""
    kind, short, target = match.groups()
    target = target.strip().lstrip(".")
    shown = target.rsplit(".", 1)[-1] if short else target
    if kind in ("meth", "func"):
        shown += "()"
    code = f"<code>{html.escape(shown)}</code>"
    path = resolve(target)
    if path is None:
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def literal_blocks(text: str) -> str:
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
        head = line.rstrip()[:-2].rstrip()
        if head:
            out.append(head + ":")
        code = textwrap.dedent("\n".join(block))
        out += ["", fence(code), *code.split("\n"), "```", ""]
        i = j
    return "\n".join(out)


def fence(code: str) -> str:
    """The opening fence of a block: Python, unless it is a shell session or a drawing.

    A drawing (such as the error tree) has long lines: it gets the ``wide``
    class, which the site's stylesheet sets smaller so that it fits.
    """
    first = code.split(maxsplit=1)[0] if code.strip() else ""
    if any(c in code for c in "├└│"):
        return "``` { .text .wide }"
    if first in ("$", "tabby-async", "pip", "python"):
        return "```text"
    return "```python"


def blank_before_lists(text: str) -> str:
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


def doc_comment(lines: Sequence[str], lineno: int) -> str:
    """The ``#:`` comment lines just above line ``lineno`` (1-based), joined."""
    found: list[str] = []
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        found.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    return "\n".join(found)


def cell_code(text: str) -> str:
    """``text`` as code in a table cell (a ``|`` would end the cell)."""
    return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"


def fields_table(rows: Sequence[tuple[str, str, str | None, str]]) -> str:
    """A Markdown table of fields: ``(name, type, default or None, description)``."""
    lines = ["| field | type | default | |", "|---|---|---|---|"]
    for name, kind, default, doc in rows:
        shown = "" if default is None else cell_code(default)
        text = " ".join(doc.split()).replace("|", "\\|")
        lines.append(f"| `{name}` | {cell_code(kind)} | {shown} | {text} |")
    return "\n".join(lines)
