"""Live progress with rich: one bar per load component, a spinner for downloads.

Imported only when rich is installed and the output is a terminal (see
:mod:`tabby_async.cli._progress`), so the SDK and the plain CLI never need it.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from ..types import ModelLoadResponse

__all__ = ["RichDownloadProgress", "RichLoadProgress"]


class _RateColumn(ProgressColumn):
    """Modules per second of one component (rich's speed estimate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("-- modules/s", style="progress.data.speed")
        return Text(f"{speed:.1f} modules/s", style="progress.data.speed")


class RichLoadProgress:
    """Live bars: ``model ━━━━━━━ 3/10 modules 0:00:01 2.9 modules/s``.

    A bar appears when its component sends its first event (the server loads
    vision, then draft, then model); a component's ``finished`` event fills
    its bar and freezes its clock.
    """

    def __init__(self, *, stderr: bool = False) -> None:
        console = Console(file=sys.stderr if stderr else sys.stdout)
        self._progress = Progress(
            TextColumn("{task.description:<6}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("modules"),
            TimeElapsedColumn(),
            _RateColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichLoadProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, event: ModelLoadResponse) -> None:
        task = self._tasks.get(event.model_type)
        if task is None:
            task = self._progress.add_task(event.model_type, total=event.modules)
            self._tasks[event.model_type] = task
        self._progress.update(task, total=event.modules, completed=event.module)
        if event.status == "finished":
            self._progress.stop_task(task)


class RichDownloadProgress:
    """A spinner with the elapsed time, for the whole download."""

    def __init__(self, repo_id: str, *, stderr: bool = False) -> None:
        console = Console(file=sys.stderr if stderr else sys.stdout)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._repo_id = repo_id

    def __enter__(self) -> RichDownloadProgress:
        self._progress.start()
        self._progress.add_task(
            f"downloading {self._repo_id} (the server reports no progress)", total=None
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()
