"""Plain-text presentation for the CLI: tables, field lists, and one formatter per type.

The SDK's results carry data (and at most a one-line ``summary()``); how a
value looks in a terminal is decided here, once, for every command group:
the model commands, the demo and the fleet commands. Everything in this
module is pure (values in, text out), so it is tested as tables of data and
the text they give.

- :func:`format_table` and :func:`format_fields` lay out any rows or pairs;
  :func:`cell` is how one value reads in them.
- One formatter per SDK type: :func:`card_fields` (a loaded model's card),
  :func:`props_fields` (``/props``), :func:`model_list_text` (a listing),
  :data:`PLAN_COLUMNS`/:func:`plan_row` (an ensure plan),
  :data:`ENSURE_COLUMNS`/:func:`ensure_row` (an ensure result), and
  :func:`value_text`, one short line for any value a call returns.
- The CLI's words: :func:`counted` (``1 node``, ``2 nodes``),
  :func:`reasons_text` (a plan's differences on one line),
  :func:`unchecked_note` (the fields nothing compared) and :func:`cli_words`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..desired import FIELD_RULES, FieldDiff, ModelPlan, ModelResult
from ..types import (
    DownloadResponse,
    HealthResponse,
    ModelCard,
    ModelList,
    ModelLoadResponse,
    ModelPropsResponse,
    PermissionResponse,
)

__all__ = [
    "CELL_LIMIT",
    "CLI_WORDS",
    "ENSURE_COLUMNS",
    "NO_VISION_WARNING",
    "PLAN_COLUMNS",
    "card_fields",
    "card_text",
    "cell",
    "cli_words",
    "counted",
    "ensure_row",
    "format_fields",
    "format_table",
    "model_list_text",
    "plan_row",
    "props_fields",
    "reasons_text",
    "unchecked_note",
    "value_text",
    "vision_refused",
]

#: The longest text of one table cell; an error message or a server's note can be long.
CELL_LIMIT = 100


# --- layout ---------------------------------------------------------------------------


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


# --- models ---------------------------------------------------------------------------


def card_fields(card: ModelCard) -> str:
    """A loaded model's card as ``name: value`` lines (the parameters when it has them)."""
    p = card.parameters
    pairs: list[tuple[str, object]] = [("id", card.id)]
    if p is not None:
        pairs += [
            ("max_seq_len", p.max_seq_len),
            ("cache_size", p.cache_size),
            ("cache_mode", p.cache_mode),
            ("rope_scale", p.rope_scale),
            ("rope_alpha", p.rope_alpha),
            ("max_batch_size", p.max_batch_size),
            ("chunk_size", p.chunk_size),
            ("prompt_template", p.prompt_template),
            ("use_vision", p.use_vision),
            ("draft", p.draft.id if p.draft is not None else None),
        ]
    return format_fields(pairs)


def props_fields(props: ModelPropsResponse) -> str:
    """``/props`` as ``name: value`` lines (the chat template by its size only)."""
    template = props.chat_template
    return format_fields(
        [
            ("total_slots", props.total_slots),
            ("n_ctx", props.default_generation_settings.n_ctx),
            ("chat_template", f"{len(template)} characters" if template else None),
        ]
    )


def model_list_text(listing: ModelList, loaded: str | None, what: str, *, limited: bool) -> str:
    """A listing as an ``ID LOADED`` table sorted by name, ``*`` marking ``loaded``.

    ``what`` names the folders ("models", "draft models"...). ``limited``: the
    listing was read with an api key, to which the server shows only the
    loaded model; a note says so and how to see every folder.
    """
    note = ""
    if limited:
        note = f"\n(an api key sees only the loaded one; list all {what} with the admin key)"
    if not listing.data:
        return f"no {what} to show{note}"
    rows = sorted(
        ((card.id, "*" if card.id == loaded else "") for card in listing.data),
        key=lambda row: row[0].lower(),
    )
    return format_table(("ID", "LOADED"), rows) + note


def card_text(card: ModelCard | None) -> str:
    """``id @context`` of a card, for one table cell (``-`` for none)."""
    if card is None:
        return "-"
    ctx = card.parameters.max_seq_len if card.parameters is not None else None
    return f"{card.id} @{ctx}" if ctx is not None else card.id


# --- desired state --------------------------------------------------------------------

#: The columns of :func:`plan_row`.
PLAN_COLUMNS: tuple[str, ...] = ("action", "loaded", "why")


def plan_row(plan: ModelPlan) -> tuple[str, ...]:
    """An ensure plan as a table row: what it would do, what is loaded, and why."""
    return (plan.action, card_text(plan.loaded), plan_why(plan))


def plan_why(plan: ModelPlan) -> str:
    """Why a plan does what it does, in a few words (its reasons, or what it cannot tell)."""
    if plan.refused:
        return "the server did not apply " + reasons_text(plan.refused)
    why = reasons_text(plan.reasons)
    if plan.verified or plan.loaded is None:
        return why
    shown = (
        f"the card shows only {plan.loaded.id!r}, as any folder of that name would: "
        "the server decides"
    )
    return f"{shown}; {why}" if why else shown


#: The columns of :func:`ensure_row`.
ENSURE_COLUMNS: tuple[str, ...] = ("action", "model", "why")


def ensure_row(result: ModelResult) -> tuple[str, ...]:
    """An ensure result as a table row: what was done, the model loaded now, and why."""
    card = result.card if result.card is not None else result.plan.loaded
    return (result.action, card_text(card), reasons_text(result.reasons) or "as requested")


def vision_refused(card: ModelCard | None) -> bool:
    """True when a load that asked for vision left a card that says ``use_vision: false``.

    The server loads a model without a vision component all the same, without
    vision and without a word: the CLI says so (:data:`NO_VISION_WARNING`).
    """
    return card is not None and card.parameters is not None and card.parameters.use_vision is False


#: The warning for a load with ``--vision`` that the server did without vision.
NO_VISION_WARNING = (
    "warning: {where}the server loaded {name!r} without vision, though --vision was given "
    "(the model has no vision component)"
)


# --- the CLI's words ----------------------------------------------------------------------


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun``: the plural (``noun + "s"`` unless given) for any count but 1."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {plural if plural is not None else noun + 's'}"


def reasons_text(reasons: Iterable[FieldDiff]) -> str:
    """A plan's differences on one line: ``max_seq_len: wanted 4096, loaded 2048; ...``."""
    return "; ".join(str(r) for r in reasons)


def unchecked_note(fields: Iterable[str]) -> str:
    """The ``note:`` line naming the fields nothing compared ("" when there are none).

    Each field once, the load fields in :data:`~tabby_async.desired.FIELD_RULES`'
    order (several nodes' plans merge into one line), any other (a desired
    state's part) after them, sorted.
    """
    wanted = set(fields)
    if not wanted:
        return ""
    order = [r.field for r in FIELD_RULES if r.field in wanted]
    shown = [*order, *sorted(wanted.difference(order))]
    return "note: not reported by the server, not compared: " + ", ".join(shown)


#: The SDK's words for its own API in the texts it gives (warnings, node
#: errors, summaries), and what the CLI says instead: its flags and commands.
CLI_WORDS: tuple[tuple[str, str], ...] = (
    (
        "use reload=True or ensure_loaded",
        "use `tabby-async fleet ensure`, which reloads when they differ",
    ),
    ("(fail_fast)", "(--fail-fast)"),
    ("max_failures=", "--max-failures "),
)


def cli_words(text: str) -> str:
    """``text`` (from the SDK) with its Python parameters named as the CLI's flags and commands."""
    for sdk, cli in CLI_WORDS:
        text = text.replace(sdk, cli)
    return text


# --- any value --------------------------------------------------------------------------


def value_text(value: object) -> str:
    """One short line for a value an SDK call returned (for tables and progress lines).

    A value with a ``summary()`` (plans, ensure results, node statuses) is
    that line; the response types get their own; anything else its repr.
    """
    if value is None:
        return ""
    summary = getattr(value, "summary", None)
    if callable(summary):
        return str(summary())
    if isinstance(value, ModelLoadResponse):
        return f"{value.model_type} {value.module}/{value.modules} {value.status}"
    if isinstance(value, ModelCard):
        ctx = value.parameters.max_seq_len if value.parameters is not None else None
        return value.id if ctx is None else f"{value.id} (max_seq_len {ctx})"
    if isinstance(value, ModelList):
        return f"{len(value.data)} models"
    if isinstance(value, HealthResponse):
        issues = "; ".join(i.description for i in value.issues)
        return value.status + (f": {issues}" if issues else "")
    if isinstance(value, PermissionResponse):
        return value.permission
    if isinstance(value, ModelPropsResponse):
        return f"n_ctx {value.default_generation_settings.n_ctx}, {value.total_slots} slots"
    if isinstance(value, DownloadResponse):
        return value.download_path
    return repr(value)
