"""List the models of a TabbyAPI server.

    TABBY_URL=http://127.0.0.1:5000 TABBY_ADMIN_KEY=... python examples/list_models.py

TabbyAPI lists every model folder to the admin key but only the loaded model
to an api key, so pass the admin key (or only TABBY_API_KEY to see what an
ordinary key sees).
"""

from __future__ import annotations

import asyncio

from tabby_async import AsyncTabbyClient


async def main() -> None:
    # TABBY_URL, TABBY_API_KEY and TABBY_ADMIN_KEY from the environment. The admin
    # key, when set, is sent on the read routes too.
    async with AsyncTabbyClient() as client:
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
