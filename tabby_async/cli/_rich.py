"""Live progress with rich: one bar per load component, a spinner for downloads.

Imported only when rich is installed and the output is a terminal (see
:func:`tabby_async.cli.common.live_display`), so the SDK and the plain CLI
never need it. It does not import the fleet package either: the model
commands use it too. rich writes its own escape sequences, so its consoles
get the unfiltered stream (the CLI's terminal stream)
and every text from a server goes through
the CLI's control-character escaping before rich sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from ._output import terminal_stream, visible
from ._view import View

if TYPE_CHECKING:
    from ..fleet import NodeResult  # for typing only: a plain load must not import the fleet

__all__ = ["RichDownloadProgress", "RichFleetView", "RichLoadProgress"]


class _Live(View):
    """A rich ``Progress`` shown while the ``with`` block runs."""

    _progress: Progress

    def start(self) -> None:
        self._progress.start()

    def stop(self) -> None:
        self._progress.stop()


class _RateColumn(ProgressColumn):
    """Modules per second of one component (rich's speed estimate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("-- modules/s", style="progress.data.speed")
        return Text(f"{speed:.1f} modules/s", style="progress.data.speed")


class RichLoadProgress(_Live):
    """Live bars: ``model ━━━━━━━ 3/10 modules 0:00:01 2.9 modules/s``.

    A bar appears when its component sends its first event (the server loads
    vision, then draft, then model); a component's ``finished`` event fills
    its bar and freezes its clock.
    """

    def __init__(self, *, stderr: bool = False) -> None:
        console = Console(file=terminal_stream(stderr=stderr))
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

    def update(self, event: ModelLoadResponse) -> None:
        task = self._tasks.get(event.model_type)
        if task is None:
            task = self._progress.add_task(visible(event.model_type), total=event.modules)
            self._tasks[event.model_type] = task
        self._progress.update(task, total=event.modules, completed=event.module)
        if event.status == "finished":
            self._progress.stop_task(task)


class RichDownloadProgress(_Live):
    """A spinner with the elapsed time, for the whole download."""

    def __init__(self, repo_id: str, *, stderr: bool = False) -> None:
        console = Console(file=terminal_stream(stderr=stderr))
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._repo_id = repo_id

    def start(self) -> None:
        super().start()
        self._progress.add_task(
            visible(f"downloading {self._repo_id} (the server reports no progress)"), total=None
        )


class RichFleetView(_Live):
    """Live bars: one overall, plus one per node for small fleets."""

    def __init__(
        self, total: int, title: str, *, stderr: bool = False, max_node_bars: int = 30
    ) -> None:
        self._console = Console(file=terminal_stream(stderr=stderr))
        self._progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=self._console,
        )
        self._title = title
        self._total = total
        self._overall = self._progress.add_task(visible(title), total=total, state="")
        self._nodes: dict[str, TaskID] = {}
        self._max_node_bars = max_node_bars
        self._ok = 0
        self._failed = 0

    def set_total(self, total: int) -> None:
        self._total = total
        self._progress.update(self._overall, total=total)

    def _node_bar(self, node: str, total: int) -> TaskID | None:
        task = self._nodes.get(node)
        if task is None and self._total <= self._max_node_bars:
            task = self._progress.add_task(visible(f"  {node}"), total=total, state="")
            self._nodes[node] = task
        return task

    def event(self, node: str, event: ModelLoadResponse) -> None:
        task = self._node_bar(node, event.modules)
        if task is not None:
            self._progress.update(
                task,
                total=event.modules,
                completed=event.module,
                state=visible(f"{event.model_type} {event.status}"),
            )

    def done(self, result: NodeResult[object]) -> None:
        if result.ok:
            self._ok += 1
        else:
            self._failed += 1
        state = f"{self._ok} ok, {self._failed} failed"
        self._progress.update(self._overall, advance=1, state=state)
        task = self._nodes.get(result.node)
        if task is not None:
            self._progress.update(task, state=visible(result.status))
            self._progress.stop_task(task)

    def note(self, text: str) -> None:
        self._console.print(visible(text), markup=False, highlight=False)
