"""Load a model (optionally with a draft model) and follow every progress event.

    TABBY_URL=... TABBY_ADMIN_KEY=... python examples/load_progress.py MODEL [DRAFT_MODEL]

The server loads the components in the order vision, draft, model; each
sends ``processing`` events and its own ``finished``. Only the main model's
``finished`` ends the load, and the stream ends there. A failure after the
stream started arrives as ``LoadFailedError``. Leaving the ``async with``
(or Ctrl-C) closes the stream; the server still finishes the load.
"""

from __future__ import annotations

import asyncio
import sys

from tabby_async import (
    AsyncTabbyClient,
    DraftModelLoadRequest,
    LoadFailedError,
    ModelLoadRequest,
)


async def main(model_name: str, draft_name: str | None) -> int:
    draft = DraftModelLoadRequest(draft_model_name=draft_name) if draft_name else None
    request = ModelLoadRequest(model_name=model_name, draft_model=draft)
    client = AsyncTabbyClient()  # TABBY_URL and TABBY_ADMIN_KEY from the environment
    async with client, client.models.load_stream(request) as stream:
        try:
            async for event in stream:
                bar = "#" * (20 * event.module // event.modules)
                step = f"{event.module}/{event.modules}"
                print(f"{event.model_type:<6} [{bar:<20}] {step} {event.status}")
        except LoadFailedError as err:
            print(f"load failed: {err.message}")
            return 1
    print("ready" if stream.finished else "stream ended early")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: load_progress.py MODEL [DRAFT_MODEL]")
    draft = sys.argv[2] if len(sys.argv) > 2 else None
    raise SystemExit(asyncio.run(main(sys.argv[1], draft)))
