"""Plain-text presentation for the CLI: tables, field lists and table cells.

The SDK's results carry data (and at most a one-line ``summary()``); how a
value looks in a terminal is decided here, once, for every command group.
Everything in this module is pure: values in, text out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "CELL_LIMIT",
    "cell",
    "format_fields",
    "format_table",
]

#: The longest text of one table cell; an error message or a server's note can be long.
CELL_LIMIT = 100


def cell(value: object, limit: int | None = None) -> str:
    """The text of one table cell or field value.

    ``None`` is ``-``, a bool is ``yes``/``no``, a float drops trailing zeros,
    a list joins its items with commas, and any text is kept on one line and,
    when ``limit`` is given, cut to that many characters (ending in ``…``).
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(cell(v, limit) for v in value) or "-"
    text = " ".join(str(value).split())  # a line break would split the row
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def format_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    rule: bool = False,
    cell_limit: int | None = None,
) -> str:
    """Left-aligned columns separated by two spaces, under a header line.

    Each value goes through :func:`cell` (cut to ``cell_limit`` when given:
    the fleet's tables pass :data:`CELL_LIMIT`, as their cells hold error
    messages). ``rule`` adds a line of dashes under the header. A row must
    have one value per header.
    """
    table = [list(headers), *([cell(c, cell_limit) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    if rule:
        table.insert(1, ["-" * w for w in widths])
    return "\n".join(
        "  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def format_fields(pairs: Iterable[tuple[str, object]]) -> str:
    """``name:  value`` lines with the values aligned (each value through :func:`cell`)."""
    items = [(name, cell(value)) for name, value in pairs]
    if not items:
        return ""
    width = max(len(name) for name, _ in items) + 1
    return "\n".join(f"{(name + ':').ljust(width)}  {value}".rstrip() for name, value in items)
