"""The fault campaign: thousands of mixed operations against a faulty server.

Every outcome must be a success or a typed TabbyError; no load is ever sent
twice; afterwards no connection is held, no task is left and no
ResourceWarning was raised (warnings are errors in this test run).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import random
import warnings
from collections.abc import Awaitable, Callable

from tabby_async import AsyncTabbyClient, TabbyError
from tabby_async.testing import EmulatedModel, TabbyEmulator
from tests.helpers import ConnectionCounter

OPERATIONS = 5_000
CONCURRENCY = 100
SEED = 20261124
LOAD = "/v1/model/load"
READ_PATHS = [
    "/v1/model/list",
    "/v1/model",
    "/props",
    "/v1/model/draft/list",
    "/v1/model/embedding/list",
    "/v1/model/embedding",
    "/health",
]


def _arm(server: TabbyEmulator) -> None:
    faults = server.faults
    faults.seed(SEED)
    for path in READ_PATHS:
        faults.reset_mid_body(None, path=path, probability=0.05)
        faults.malformed_json(None, path=path, probability=0.04)
        faults.fail_next(None, status=502, detail="bad gateway", path=path, probability=0.05)
        faults.fail_next(None, status=500, detail="boom", path=path, probability=0.02)
        faults.fail_next(
            None,
            status=429,
            detail="slow down",
            path=path,
            headers={"Retry-After": "0.05"},
            probability=0.03,
        )
        faults.delay_head(1.5, None, path=path, probability=0.01)
    for path in ("/v1/model/unload", "/v1/model/embedding/load", "/v1/model/embedding/unload"):
        faults.fail_next(None, status=503, detail="proxy down", path=path, probability=0.05)
        faults.reset_mid_body(None, path=path, probability=0.05)
    faults.drop_stream(after_events=1, n=None, stop_load=False, probability=0.2)
    faults.fail_next(None, status=502, detail="bad gateway", path=LOAD, probability=0.05)


async def test_fault_campaign(connections: ConnectionCounter) -> None:
    rng = random.Random(SEED)
    outcomes: collections.Counter[str] = collections.Counter()
    unexpected: list[BaseException] = []
    loads_started = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with TabbyEmulator(
            models=[EmulatedModel(name=f"m{i}", modules=2) for i in range(3)],
            drafts=["d"],
            embeddings=["e1", "e2"],
        ) as server:
            _arm(server)
            client = AsyncTabbyClient(server.url, admin_key=server.admin_key, timeout=1.0)
            m = client.models

            async def follow(i: int) -> None:
                async with m.load_stream(model_name=f"m{i % 3}", prompt_template=f"op{i}") as s:
                    async for _ in s:
                        pass

            def pick(i: int) -> Callable[[], Awaitable[object]]:
                nonlocal loads_started
                roll = rng.random()
                if roll < 0.15:
                    loads_started += 1
                    return lambda: follow(i)
                if roll < 0.20:
                    loads_started += 1
                    return lambda: m.load(model_name=f"m{i % 3}", prompt_template=f"op{i}")
                choices: list[Callable[[], Awaitable[object]]] = [
                    m.list,
                    m.get,
                    m.get_props,
                    m.list_draft,
                    m.list_embedding,
                    m.get_embedding,
                    client.health,
                    client.permission,
                    m.unload,
                    lambda: m.load_embedding(embedding_model_name=f"e{1 + i % 2}"),
                    m.unload_embedding,
                ]
                weights = [25, 10, 8, 5, 5, 5, 5, 5, 4, 4, 4]
                return rng.choices(choices, weights)[0]

            async def run(
                i: int, op: Callable[[], Awaitable[object]], cancel_after: float | None
            ) -> None:
                task = asyncio.ensure_future(op())
                if cancel_after is not None:
                    await asyncio.sleep(cancel_after)
                    task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    outcomes["cancelled"] += 1
                except TabbyError as err:
                    outcomes[err.code] += 1
                except BaseException as exc:  # the campaign's whole point
                    unexpected.append(exc)
                else:
                    outcomes["ok"] += 1

            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(OPERATIONS):
                queue.put_nowait(i)

            async def worker() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    cancel = rng.uniform(0, 0.02) if rng.random() < 0.05 else None
                    await run(i, pick(i), cancel)

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            held = connections.held
            await client.aclose()
            fired = sum(f.fired for f in server.faults.pending)
            markers = collections.Counter(
                r.body.get("prompt_template")
                for r in server.requests
                if r.path == LOAD and isinstance(r.body, dict)
            )
        gc.collect()

    total = sum(outcomes.values()) + len(unexpected)
    print(
        f"\nfault campaign: {total} operations, {fired} faults fired, "
        f"{outcomes['cancelled']} cancelled, {loads_started} loads"
    )
    for code, count in sorted(outcomes.items(), key=lambda kv: -kv[1]):
        print(f"  {code:22} {count}")
    assert unexpected == []
    assert total == OPERATIONS
    assert (fired + outcomes["cancelled"]) / OPERATIONS >= 0.20
    assert outcomes["ok"] > OPERATIONS // 3
    assert markers and max(markers.values()) == 1  # no load was ever sent twice
    assert sum(markers.values()) <= loads_started
    assert held == 0
