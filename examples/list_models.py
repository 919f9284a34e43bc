"""List the models of a TabbyAPI server.

    TABBY_URL=http://127.0.0.1:5000 TABBY_ADMIN_KEY=... python examples/list_models.py

TabbyAPI lists every model folder to the admin key but only the loaded model
to an api key, so pass the admin key (or only TABBY_API_KEY to see what an
ordinary key sees).
"""

from __future__ import annotations

import asyncio
import os

from tabby_async import AsyncTabbyClient


async def main() -> None:
    url = os.environ.get("TABBY_URL", "http://127.0.0.1:5000")
    admin_key = os.environ.get("TABBY_ADMIN_KEY") or None
    api_key = os.environ.get("TABBY_API_KEY") or None
    # The admin key works on the read routes too; use it there when we have it.
    async with AsyncTabbyClient(url, api_key=admin_key or api_key, admin_key=admin_key) as client:
        models = await client.models.list()
        drafts = await client.models.list_draft()
    print(f"{len(models.data)} models:")
    for model_id in sorted(models.ids):
        print(f"  {model_id}")
    print(f"{len(drafts.data)} draft models:")
    for model_id in sorted(drafts.ids):
        print(f"  {model_id}")


if __name__ == "__main__":
    asyncio.run(main())
