"""Build hook: keep the VCS ignore files out of the sdist.

Hatchling always copies the project's ``.gitignore`` into an sdist (so that a
wheel built from the sdist filters files the same way). This sdist lists its
contents explicitly (``only-include`` in pyproject.toml), so nothing in it
depends on that file, and it is dropped here.
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

VCS_FILES = frozenset({".gitignore", ".hgignore"})


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Removes the VCS ignore files from the sdist's forced includes."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        forced: dict[str, str] = build_data["force_include"]
        for source, target in list(forced.items()):
            if target in VCS_FILES:
                del forced[source]
