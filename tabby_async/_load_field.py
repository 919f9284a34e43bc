"""LoadField: every fact about one load request field, declared once beside the field.

A load request field is written once, in its Struct (``ModelLoadRequest``,
``DraftModelLoadRequest``), annotated with a :class:`LoadField`::

    max_seq_len: Annotated[int | None, LoadField(..., how="context", ...)] = None

From that one declaration come the field's check when a request is built,
whether the server reports it back and how the two values are compared
(:data:`~tabby_async.desired.FIELD_RULES`), and its command-line option (the flag is
the name, ``--max-seq-len``; its value's kind comes from the type). Adding a
server field costs that line, and the one in the ``Unpack`` TypedDict that
type checkers need (a test keeps the two in step). msgspec ignores the
annotation, so encoding and decoding cost nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal, get_args, get_origin, get_type_hints

__all__ = ["How", "LoadField", "load_fields"]

#: How a request field meets what the server reports: ``name`` (the card id
#: is the last path segment of the requested name), ``exact``, ``context``
#: (exact, but ``-1``, the model's own context, is not compared),
#: ``cache_mode`` (as the server reads it: ``Q4`` is ``4,4``), ``template``
#: (a trailing ``.jinja`` ignored on both sides; a null template is an
#: answer), ``chunk`` (equal, or the server's rounding of the request),
#: ``draft`` (compared with the draft listing a plain api key sees, when the
#: client has one), or ``unreported`` (the server never shows the value: not
#: compared).
How = Literal["name", "exact", "context", "cache_mode", "template", "chunk", "draft", "unreported"]


@dataclass(frozen=True, slots=True)
class LoadField:
    """One load request field's check, its comparison with the server, and its CLI option.

    ``check(field, value)`` raises :class:`~tabby_async.InvalidInputError`
    for a bad value (None, "not set", is never checked). ``how`` and
    ``reported`` say where the server reports the value back and how it is
    compared; ``note`` says what the server does with it, for the docs.
    ``metavar``, ``help`` and ``group`` are the command-line option's;
    ``flag`` overrides the option's name (``--`` and the field's name with
    dashes by default).
    """

    check: Callable[[str, object], None]
    how: How = "unreported"
    reported: str | None = None
    note: str = ""
    metavar: str | None = None
    help: str = ""
    group: Literal["model", "gpus", "draft"] = "model"
    flag: str | None = None

    @property
    def compared(self) -> bool:
        """True when the server reports the field, so that it can be compared."""
        return self.how != "unreported"


def load_fields(cls: type) -> tuple[tuple[str, LoadField], ...]:
    """Each field of the Struct ``cls`` that carries a :class:`LoadField`, in field order."""
    hints = get_type_hints(cls, include_extras=True)
    found: list[tuple[str, LoadField]] = []
    for name in cls.__struct_fields__:  # type: ignore[attr-defined]
        hint = hints[name]
        if get_origin(hint) is Annotated:
            found += [(name, meta) for meta in get_args(hint)[1:] if isinstance(meta, LoadField)]
    return tuple(found)
