"""Load a model with some parameters and wait until it is ready.

    TABBY_URL=... TABBY_ADMIN_KEY=... python examples/load_model.py MODEL_NAME [MAX_SEQ_LEN]

``models.load`` sends ``POST /v1/model/load`` once and returns the model's
``finished`` event. Loading needs the admin key. If the server already has
this model loaded it does nothing and ignores the new parameters: unload
first to change them.
"""

from __future__ import annotations

import asyncio
import sys
import time

from tabby_async import AsyncTabbyClient, ModelLoadRequest


async def main(model_name: str, max_seq_len: int | None) -> None:
    request = ModelLoadRequest(model_name=model_name, max_seq_len=max_seq_len, cache_mode="Q8")
    client = AsyncTabbyClient()  # TABBY_URL and TABBY_ADMIN_KEY from the environment
    async with client:
        started = time.monotonic()
        done = await client.models.load(request)
        card = await client.models.get()
    seconds = time.monotonic() - started
    print(
        f"{done.model_type} {done.status} ({done.module}/{done.modules} modules, {seconds:.1f} s)"
    )
    assert card.parameters is not None
    print(
        f"loaded {card.id}: max_seq_len={card.parameters.max_seq_len} "
        f"cache_mode={card.parameters.cache_mode}"
    )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: load_model.py MODEL_NAME [MAX_SEQ_LEN]")
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
