"""The nodes file ``tabby-async emulator --nodes N`` writes for its emulators.

The file is an ordinary nodes file (the fleet's format) naming each emulator
by its loopback URL, with the keys taken from ``TABBY_API_KEY`` and
``TABBY_ADMIN_KEY``: the emulators share one pair of keys, which the command
prints in its ``export`` line, so the file itself holds no secret. Its first
line marks it as the emulator's own, so a later run may replace it while a
nodes file of the user's is never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .common import EXIT_USAGE, CliError

__all__ = ["MARK", "node_names", "nodes_toml", "remove_nodes_file", "write_nodes_file"]

#: The first line of every nodes file the emulator writes.
MARK = "# Written by `tabby-async emulator --nodes`: its emulators on loopback."


def node_names(count: int) -> list[str]:
    """``gpu-01`` ... for ``count`` nodes (wider numbers past 99)."""
    width = max(2, len(str(count)))
    return [f"gpu-{number:0{width}d}" for number in range(1, count + 1)]


def nodes_toml(urls: Sequence[str]) -> str:
    """The nodes file's text for emulators at ``urls``, named by :func:`node_names`."""
    lines = [
        MARK,
        "# It is removed when they stop. The keys come from the variables the",
        "# command printed: export them in the shell that uses this file.",
        "[defaults]",
        'api_key_env = "TABBY_API_KEY"',
        'admin_key_env = "TABBY_ADMIN_KEY"',
    ]
    for name, url in zip(node_names(len(urls)), urls, strict=True):
        lines += ["", "[[nodes]]", f'name = "{name}"', f'url = "{url}"']
    return "\n".join(lines) + "\n"


def _is_ours(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as file:
            return file.readline().rstrip("\n") == MARK
    except (OSError, UnicodeDecodeError):
        return False


def write_nodes_file(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (absolute), refusing to replace a file not written here."""
    path = path.absolute()
    if path.exists() and not _is_ours(path):
        raise CliError(
            f"{path} exists and was not written by the emulator; "
            "pass --nodes-file with another name",
            exit_code=EXIT_USAGE,
        )
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write the nodes file {path}: {exc.strerror or exc}") from None
    return path


def remove_nodes_file(path: Path, text: str) -> None:
    """Remove the file written by :func:`write_nodes_file`, unless someone changed it since."""
    try:
        if path.read_text(encoding="utf-8") == text:
            os.unlink(path)
    except OSError:
        pass  # already gone, or unreadable: nothing of ours to remove
