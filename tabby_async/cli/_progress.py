"""Progress displays for loads and downloads: live (rich), plain lines, or nothing.

A live display needs a terminal and the optional ``rich`` package (the
``cli`` extra). Without either, loads print one plain line per event, which
is what logs and scripts want, and downloads print a line when they start
and one when they end. :func:`load_progress` and :func:`download_progress`
choose; with ``--json`` and no terminal they show nothing (a ``NullView``).
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

from ..types import ModelLoadResponse
from ._view import Display, NullView, View
from .common import live_display

__all__ = [
    "DownloadProgress",
    "LoadProgress",
    "PlainDownloadProgress",
    "PlainLoadProgress",
    "download_progress",
    "load_progress",
]


class LoadProgress(Display, Protocol):
    """Shows the events of one load; used as a context manager around the stream."""

    def update(self, event: ModelLoadResponse) -> None:
        """Show one progress event."""


#: A download's display: the server reports no byte progress, so only that it runs.
DownloadProgress = Display


class PlainLoadProgress(View):
    """One line per event: ``model  3/10 modules  processing  0.4 s``."""

    def __init__(self, file: TextIO | None = None, *, indent: str = "") -> None:
        self._file = file
        self._indent = indent
        self._started = time.monotonic()

    def start(self) -> None:
        self._started = time.monotonic()

    def update(self, event: ModelLoadResponse) -> None:
        out = self._file if self._file is not None else sys.stdout
        elapsed = time.monotonic() - self._started
        width = len(str(event.modules))
        out.write(
            f"{self._indent}{event.model_type:<6} {event.module:>{width}}/{event.modules} "
            f"modules  {event.status:<10}  {elapsed:.1f} s\n"
        )
        out.flush()


class PlainDownloadProgress(View):
    """A line when the download starts; the caller prints the result."""

    def __init__(self, repo_id: str, file: TextIO | None = None) -> None:
        self._repo_id = repo_id
        self._file = file

    def start(self) -> None:
        out = self._file if self._file is not None else sys.stdout
        out.write(f"downloading {self._repo_id} (the server reports no progress)...\n")
        out.flush()


def load_progress(*, json_output: bool = False, indent: str = "") -> LoadProgress:
    """The best display for a load here.

    Human output: live bars on a terminal with rich, else plain lines on
    stdout. ``--json``: stdout is kept for the JSON result, so the live bars go
    to stderr when that is a terminal, and nothing is shown otherwise.
    """
    if live_display(json_output=json_output):
        from ._rich import RichLoadProgress

        return RichLoadProgress(stderr=json_output)
    if json_output:
        return NullView()
    return PlainLoadProgress(indent=indent)


def download_progress(repo_id: str, *, json_output: bool = False) -> DownloadProgress:
    """A spinner with the elapsed time on a terminal, else a plain start line."""
    if live_display(json_output=json_output):
        from ._rich import RichDownloadProgress

        return RichDownloadProgress(repo_id, stderr=json_output)
    if json_output:
        return NullView()  # keep a script's stderr for errors
    return PlainDownloadProgress(repo_id)
