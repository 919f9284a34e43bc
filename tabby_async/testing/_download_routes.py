"""The download route: ``POST /v1/download`` "fetches" a repo into a new folder.

Only the repos the emulator was given as downloadable succeed, after their
delay; any other fails as on a server without network. The target folder is
``folder_name`` or the part after ``/`` in ``repo_id``; an existing model
or LoRA folder is a "file exists" 400 (checked after the repo lookup, before
the wait). A LoRA repo goes to ``loras/``: a LoRA folder, not a model. One long request with
no progress: a client that disconnects cancels it, and nothing is added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from ._guards import Guards
from ._models import EmulatedModel
from ._schemas import DOWNLOAD_SCHEMA
from ._wire import MSG_OFFLINE, detail, encode, json_response

__all__ = ["DownloadRoute"]


class DownloadRoute:
    """The handler of ``POST /v1/download`` (one emulator's)."""

    __slots__ = ("_downloadable", "_failure_delay", "_guards")

    def __init__(
        self, guards: Guards, downloadable: Mapping[str, float], failure_delay: float
    ) -> None:
        self._guards = guards
        self._downloadable = dict(downloadable)
        self._failure_delay = failure_delay

    async def download(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        """POST ``/v1/download``: 200 ``{"download_path": ...}`` or a 400 with the reason."""
        fields = self._guards.body(request, body, DOWNLOAD_SCHEMA)
        if isinstance(fields, web.Response):
            return fields
        repo_id: str = fields["repo_id"]
        delay = self._downloadable.get(repo_id)
        if delay is None:
            if self._failure_delay > 0:
                await asyncio.sleep(self._failure_delay)
            return json_response(400, detail(MSG_OFFLINE))
        folder: str | None = fields["folder_name"] or None
        if folder is None:
            parts = repo_id.split("/")
            if len(parts) < 2:
                return json_response(400, detail("list index out of range"))
            folder = parts[1]
        state = self._guards.state
        is_lora = fields["repo_type"] == "lora"
        target = f"{'loras' if is_lora else 'models'}/{folder}"
        if folder in ((state.loras or ()) if is_lora else state.models):
            return json_response(400, detail(f"[Errno 17] File exists: '{target}'"))
        # A client disconnect cancels this handler mid-sleep: nothing gets added.
        if delay > 0:
            await asyncio.sleep(delay)
        if not is_lora:
            state.models[folder] = EmulatedModel(name=folder)
        elif state.loras is not None:
            state.loras.append(folder)
        return json_response(200, encode({"download_path": target}))
