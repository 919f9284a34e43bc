"""Scenarios, clients and run sizes (no heavy imports: the runner and workers share it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FLOOR = "aiohttp_raw"
HANDWRITTEN = "aiohttp_msgspec"
HTTPX = "httpx_pydantic"
OPENAI = "openai"
OLLAMA = "ollama"
SDK = "tabby_async"
# tabby_async in an application that imported opentelemetry-api but set no tracer provider
# (the `SDK` worker cannot import opentelemetry at all): the cost of the SDK's own spans.
SDK_OTEL = "tabby_async_otel"

ALL_CLIENTS: tuple[str, ...] = (FLOOR, HANDWRITTEN, HTTPX, OPENAI, OLLAMA, SDK, SDK_OTEL)
CLIENT_LABELS = {
    FLOOR: "aiohttp, bytes only (floor)",
    HANDWRITTEN: "aiohttp + msgspec, hand-written",
    HTTPX: "httpx + pydantic",
    OPENAI: "openai-python",
    OLLAMA: "ollama-python",
    SDK: "tabby_async",
    SDK_OTEL: "tabby_async, opentelemetry-api imported (no provider)",
}
HTTP_CLIENTS: tuple[str, ...] = (FLOOR, HANDWRITTEN, HTTPX, SDK)


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "calls" | "stream" | "open" | "import"
    op: str  # the BenchClient method the worker drives
    profile: str  # which server port: a K value or "hold"
    clients: tuple[str, ...]
    unit: str  # what throughput counts: "call", "event", "stream", "import"
    models: int = 0
    description: str = ""


@dataclass
class Sizes:
    """How much work each client does per round (the same for every client)."""

    rounds: int = 9
    models: tuple[int, int] = (50, 1000)
    calls: int = 2000  # R for list (small K), get, get_props
    calls_large: int = 200  # R for list (large K)
    concurrency: int = 50  # C for the call scenarios
    streams: int = 300  # load streams per round
    stream_concurrency: int = 10
    events: int = 200  # M events per load stream
    open_streams: int = 1000  # streams held open at once
    import_reps: int = 10  # fresh interpreters per module per round
    fleet_nodes: int = 64  # nodes (server ports) in the fleet status sweep
    # Sweeps per round, one after the other. At 30 a round's ratio ran from 0.98
    # to 1.26 (a sweep is ~55 ms of CPU: a neighbour's burst is a large part of
    # a round); at 90 from 1.00 to 1.15, around the same median.
    fleet_sweeps: int = 90
    fleet_concurrency: int = 64  # nodes probed at once (TabbyFleet's max_concurrency)
    warmup: int = 0  # calls before each timed round; 0 means "concurrency"
    fresh_workers: bool = True  # new client processes every round (see run.py)
    workers: int = 3  # processes per client and round, each with an equal share of the calls
    min_seconds: float = 0.5  # CPU each process's timed section takes at least (calls repeated)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Sizes(
    rounds=3,
    calls=400,
    calls_large=40,
    streams=30,
    open_streams=1000,
    import_reps=4,
    fleet_sweeps=10,
    fresh_workers=False,
    workers=1,
    min_seconds=0.0,
)
FULL = Sizes()


def scenarios(sizes: Sizes) -> list[Scenario]:
    small, large = sizes.models
    list_clients = (FLOOR, HANDWRITTEN, HTTPX, OPENAI, OLLAMA, SDK, SDK_OTEL)
    return [
        Scenario(
            f"list_k{small}",
            "calls",
            "list_models",
            str(small),
            list_clients,
            "call",
            small,
            f"GET /v1/model/list, K = {small} cards (/v1/models for openai, /api/tags for ollama)",
        ),
        Scenario(
            f"list_k{large}",
            "calls",
            "list_models",
            str(large),
            list_clients,
            "call",
            large,
            f"GET /v1/model/list, K = {large} cards (/v1/models for openai, /api/tags for ollama)",
        ),
        Scenario(
            "get",
            "calls",
            "get_model",
            str(small),
            (*HTTP_CLIENTS, SDK_OTEL),
            "call",
            small,
            "GET /v1/model, one card with parameters (~2 KB template)",
        ),
        Scenario(
            "get_props",
            "calls",
            "get_props",
            str(small),
            HTTP_CLIENTS,
            "call",
            small,
            "GET /props",
        ),
        Scenario(
            "load_stream",
            "stream",
            "load_stream",
            str(small),
            (*HTTP_CLIENTS, SDK_OTEL),
            "event",
            small,
            f"POST /v1/model/load, {sizes.events} SSE events per stream, one per chunk",
        ),
        Scenario(
            "open_streams",
            "open",
            "open_stream",
            "hold",
            HTTP_CLIENTS,
            "stream",
            small,
            f"{sizes.open_streams} load streams open at once (first event read, pings)",
        ),
        Scenario(
            "import",
            "import",
            "",
            "",
            (FLOOR, HANDWRITTEN, SDK),
            "import",
            0,
            "fresh interpreter: import aiohttp vs import tabby_async",
        ),
        Scenario(
            "fleet_status",
            "calls",
            "fleet_sweep",
            "fleet",
            (FLOOR, HANDWRITTEN, SDK),
            "sweep",
            small,
            f"fleet status sweep of {sizes.fleet_nodes} nodes (one port each): per node "
            "/health, /v1/auth/permission, /v1/model, /v1/model/embedding (503), "
            f"{sizes.fleet_concurrency} nodes at once",
        ),
    ]
