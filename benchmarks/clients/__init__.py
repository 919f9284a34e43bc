"""One module per benchmarked client; the worker imports only the one it runs.

Each module defines ``Client``, a subclass of :class:`benchmarks.clients.base.BenchClient`.
"""

from __future__ import annotations

import importlib

from benchmarks.clients.base import BenchClient

MODULES = {
    "aiohttp_raw": "benchmarks.clients.aiohttp_raw",
    "aiohttp_msgspec": "benchmarks.clients.aiohttp_msgspec",
    "httpx_pydantic": "benchmarks.clients.httpx_pydantic",
    "openai": "benchmarks.clients.openai_sdk",
    "ollama": "benchmarks.clients.ollama_sdk",
    "tabby_async": "benchmarks.clients.tabby",
    "tabby_async_otel": "benchmarks.clients.tabby_otel",
}


def load(name: str) -> type[BenchClient]:
    module = importlib.import_module(MODULES[name])
    cls: type[BenchClient] = module.Client
    return cls
