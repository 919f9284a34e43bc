"""Show the loaded model, its parameters and its props (slots, context length).

    TABBY_URL=http://127.0.0.1:5000 TABBY_API_KEY=... python examples/current_model.py

An api key is enough. When nothing is loaded (or a load is still running) the
server answers 503, which the SDK raises as ``ModelNotLoadedError``.
"""

from __future__ import annotations

import asyncio

from tabby_async import AsyncTabbyClient, ModelNotLoadedError


async def main() -> int:
    client = AsyncTabbyClient()  # TABBY_URL, TABBY_API_KEY, TABBY_ADMIN_KEY
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
        # No draft line: the server's card never says which draft is loaded.
    print(f"total_slots:    {props.total_slots}")
    print(f"context (n_ctx): {props.default_generation_settings.n_ctx}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
