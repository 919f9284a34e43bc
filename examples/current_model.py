"""Show the loaded model, its parameters and its props (slots, context length).

    TABBY_URL=http://127.0.0.1:5000 TABBY_API_KEY=... python examples/current_model.py

An api key is enough. When nothing is loaded (or a load is still running) the
server answers 503, which the SDK raises as ``ModelNotLoadedError``.
"""

from __future__ import annotations

import asyncio
import os

from tabby_async import AsyncTabbyClient, ModelNotLoadedError


async def main() -> int:
    client = AsyncTabbyClient(
        os.environ.get("TABBY_URL", "http://127.0.0.1:5000"),
        api_key=os.environ.get("TABBY_API_KEY") or None,
        admin_key=os.environ.get("TABBY_ADMIN_KEY") or None,
    )
    async with client:
        try:
            card = await client.models.get()
            props = await client.models.get_props()
        except ModelNotLoadedError:
            print("no model is loaded")
            return 1
    params = card.parameters
    print(f"model:          {card.id}")
    if params is not None:
        print(f"max_seq_len:    {params.max_seq_len}")
        print(f"cache_mode:     {params.cache_mode}")
        print(f"rope_alpha:     {params.rope_alpha}")
        print(f"draft:          {params.draft.id if params.draft else None}")
    print(f"total_slots:    {props.total_slots}")
    print(f"context (n_ctx): {props.default_generation_settings.n_ctx}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
