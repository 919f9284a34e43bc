"""Manage the embedding model: list, load, inspect, unload.

    TABBY_URL=... TABBY_ADMIN_KEY=... python examples/embeddings.py [EMBEDDING_MODEL]

Embedding loads answer with one plain JSON event (no progress stream). With
no name given, the first listed embedding model is used.
"""

from __future__ import annotations

import asyncio
import sys

from tabby_async import AsyncTabbyClient, EmbeddingModelLoadRequest, ModelNotLoadedError


async def main(name: str | None) -> int:
    # TABBY_URL and TABBY_ADMIN_KEY from the environment. When set, the admin key
    # is also sent on the listings: it sees every folder, an api key only the loaded one.
    client = AsyncTabbyClient()
    async with client:
        available = await client.models.list_embedding()
        print(f"embedding models: {', '.join(available.ids) or '(none)'}")
        if name is None:
            if not available.ids:
                return 1
            name = available.ids[0]

        try:
            current = await client.models.get_embedding()
            print(f"loaded before: {current.id}")
        except ModelNotLoadedError:
            print("loaded before: (none)")

        done = await client.models.load_embedding(
            EmbeddingModelLoadRequest(embedding_model_name=name, embeddings_device="cpu")
        )
        print(f"load {name}: {done.status} ({done.module}/{done.modules})")
        print(f"loaded now: {(await client.models.get_embedding()).id}")

        await client.models.unload_embedding()
        try:
            await client.models.get_embedding()
        except ModelNotLoadedError as err:
            print(f"after unload: {err.message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None)))
