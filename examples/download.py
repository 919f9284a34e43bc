"""Have the server download a Hugging Face repository into its model folder.

    TABBY_URL=... TABBY_ADMIN_KEY=... [HF_TOKEN=...] python examples/download.py ORG/REPO [FOLDER]

``POST /v1/download`` is one long request with no progress (the server sends
nothing until the download ends), so this shows a ticking clock while it
waits. Cancelling the request (Ctrl-C) cancels the download on the server.
The Hugging Face token is sent to the server but never printed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from tabby_async import AsyncTabbyClient, DownloadRequest, TabbyError


async def tick(started: float) -> None:
    while True:
        await asyncio.sleep(1)
        print(f"  ... {time.monotonic() - started:.0f} s", flush=True)


async def main(repo_id: str, folder: str | None) -> int:
    request = DownloadRequest(
        repo_id=repo_id,
        folder_name=folder,
        token=os.environ.get("HF_TOKEN") or None,
        include=["*.json", "*.safetensors", "tokenizer.model"],
    )
    client = AsyncTabbyClient()  # TABBY_URL and TABBY_ADMIN_KEY from the environment
    print(f"downloading {repo_id} ...", flush=True)
    started = time.monotonic()
    clock = asyncio.create_task(tick(started))
    try:
        async with client:
            result = await client.models.download(request)
    except TabbyError as err:
        print(f"download failed: {err}")
        return 1
    finally:
        clock.cancel()
    print(f"saved to {result.download_path} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: download.py ORG/REPO [FOLDER]")
    folder = sys.argv[2] if len(sys.argv) > 2 else None
    raise SystemExit(asyncio.run(main(sys.argv[1], folder)))
