"""What every display of the CLI is: shown while a ``with`` block runs, or not shown at all.

The load and download displays (plain lines, or rich's live bars) and the
fleet's views all build on :class:`View`; :class:`NullView` stands in for any
of them when nothing may be shown (``--json`` to a pipe keeps stdout for the
document and stderr for errors). This module imports no display library, so
the plain displays and the rich ones both import it.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from ..types import ModelLoadResponse

if TYPE_CHECKING:
    from typing import Self

__all__ = ["Display", "NullView", "View"]


class Display(Protocol):
    """Something shown while a ``with`` block runs (a download's spinner, say)."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class View:
    """A :class:`Display` whose ``with`` block calls :meth:`start` and :meth:`stop`."""

    def start(self) -> None:
        """Called when the ``with`` block starts; nothing by default."""

    def stop(self) -> None:
        """Called when the ``with`` block ends, however it ends; nothing by default."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class NullView(View):
    """Shows nothing: a load's events, a fleet's results and notes are all dropped."""

    def update(self, event: ModelLoadResponse) -> None:
        return None

    def set_total(self, total: int) -> None:
        return None

    def event(self, node: str, event: ModelLoadResponse) -> None:
        return None

    def done(self, result: object) -> None:
        return None

    def note(self, text: str) -> None:
        return None
