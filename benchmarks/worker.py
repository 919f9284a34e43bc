"""One client in its own process: ``python -m benchmarks.worker --client NAME ...``.

``--mode rounds``: start the client, warm up, print ``{"ready": true}``, then for
each ``run`` line on stdin do a short warm-up and one timed section (the
``--calls`` operations, repeated until ``--min-seconds`` of CPU are used) and print
its figures as one JSON line; ``quit`` closes the client and exits.

``--mode open``: open ``--open`` load streams at once, print the memory they took,
close them and exit (a fresh process per round, so RSS deltas mean something).

Client CPU is ``time.process_time()`` (user + sys of this process) around the
timed section only; wall time is ``time.perf_counter()``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.abc
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from benchmarks.clients import load
from benchmarks.clients.base import BenchClient, ClientConfig
from benchmarks.config import SDK

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size (not the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:  # not Linux: fall back to the peak
        return maxrss_kib() * 1024


def maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


async def drive(op: Callable[[], Awaitable[int]], calls: int, concurrency: int) -> int:
    """Run ``calls`` operations with ``concurrency`` tasks; return the units done."""
    remaining = calls
    units = 0

    async def lane() -> None:
        nonlocal remaining, units
        while remaining > 0:
            remaining -= 1
            done = await op()
            units += done

    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, calls)))))
    return units


class NoOpenTelemetry(importlib.abc.MetaPathFinder):
    """Makes ``opentelemetry`` impossible to import: the SDK as installed without ``otel``."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"{name} is blocked in this worker", name=name)
        return None


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def rounds_mode(client: BenchClient, args: argparse.Namespace) -> None:
    op: Callable[[], Awaitable[int]] = getattr(client, args.op)
    warmup = args.warmup or args.concurrency
    await drive(op, max(2 * warmup, 4), args.concurrency)  # first warm-up: imports, pools
    pin(args.cpu)  # only now: the workers of a scenario start up in parallel, unpinned
    emit({"ready": True, "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).strip()
        if line != b"run":
            break
        await drive(op, warmup, args.concurrency)  # re-open pooled connections
        gc.collect()
        t0 = time.perf_counter()
        c0 = time.process_time()
        units = calls = 0
        # The R calls, again until this process has used --min-seconds of CPU:
        # a fast client's R calls can take a few tens of milliseconds, where a
        # scheduler tick or a neighbour on the VM is a large part of the figure.
        while True:
            units += await drive(op, args.calls, args.concurrency)
            calls += args.calls
            if time.process_time() - c0 >= args.min_seconds:
                break
        cpu = time.process_time() - c0
        wall = time.perf_counter() - t0
        emit(
            {
                "wall": wall,
                "cpu": cpu,
                "calls": calls,
                "units": units,
                "maxrss_kib": maxrss_kib(),
            }
        )


async def open_mode(client: BenchClient, args: argparse.Namespace) -> None:
    # Warm-up: a few streams opened and closed, so lazy imports and pools exist.
    async with AsyncExitStack() as stack:
        for _ in range(5):
            await client.open_stream(stack)
    await asyncio.sleep(0.05)
    gc.collect()
    before = rss_bytes()
    sem = asyncio.Semaphore(64)  # bounded connect rate: no SYN storms
    c0 = time.process_time()
    t0 = time.perf_counter()
    async with AsyncExitStack() as stack:

        async def open_one() -> None:
            async with sem:
                await client.open_stream(stack)

        await asyncio.gather(*(open_one() for _ in range(args.open)))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        gc.collect()
        after = rss_bytes()
    emit(
        {
            "wall": wall,
            "cpu": cpu,
            "calls": args.open,
            "units": args.open,
            "rss_before": before,
            "rss_open": after,
            "bytes_per_stream": (after - before) / args.open,
            "maxrss_kib": maxrss_kib(),
        }
    )


async def amain(args: argparse.Namespace) -> None:
    cls = load(args.client)
    cfg = ClientConfig(
        base_url=args.base_url,
        pool_limit=args.pool_limit,
        models=args.models,
        events=args.events,
        nodes=tuple(n for n in args.nodes.split(",") if n),
        fleet_concurrency=args.fleet_concurrency,
    )
    client = cls(cfg)
    await client.start()
    try:
        if args.mode == "open":
            await open_mode(client, args)
        else:
            await rounds_mode(client, args)
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--client", required=True)
    parser.add_argument("--op", required=True)
    parser.add_argument("--mode", choices=("rounds", "open"), default="rounds")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--pool-limit", type=int, required=True)
    parser.add_argument("--models", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=0.0, help="CPU per timed section")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--open", type=int, default=0)
    parser.add_argument("--nodes", default="", help="comma-separated fleet base URLs")
    parser.add_argument("--fleet-concurrency", type=int, default=64)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args(argv)
    if args.client == SDK:  # the plain SDK: OpenTelemetry not even importable
        sys.meta_path.insert(0, NoOpenTelemetry())
    if args.mode == "open":
        pin(args.cpu)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
