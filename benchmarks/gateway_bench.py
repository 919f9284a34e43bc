"""Gateway benchmark: an emulated node directly, through a hand-written proxy, through the gateway.

Run from the repository root::

    .venv/bin/python -m benchmarks.gateway_bench          # the full run (minutes on 2 cores)
    .venv/bin/python -m benchmarks.gateway_bench --quick  # tiny sizes (the smoke test)
    .venv/bin/python -m benchmarks.gateway_bench --help   # the sizes

Every server runs in its own process (``benchmarks.gateway_serve``): the
emulated node (``TabbyEmulator``, recording off, the model preloaded,
``--tokens`` tokens per answer, no token delay), the hand-written aiohttp
pass-through proxy in front of it, and the gateway (one node, a catalog of
that model, served with ``handler_cancellation=True`` as the CLI serves it).
This process is the load generator. CPU is each server process's
utime + stime from ``/proc/<pid>/stat`` around a timed section; memory is its
RSS from ``/proc/<pid>/statm``.

- ``stream``: ``--streams`` streamed chat completions of ``--tokens`` tokens,
  ``--stream-concurrency`` at once, per path and round; the figure is the
  server process's CPU per SSE event the client received.
- ``whole``: ``--requests`` non-streamed chat completions of ``--whole-tokens``
  tokens, ``--concurrency`` at once; CPU per request.
- Each round runs the three paths (direct, proxy, gateway) one after the
  other in a rotating order; a ratio is the median of the per-round ratios.
- ``latency``: ``--latency-requests`` streamed requests one at a time, the
  paths interleaved request by request; the time to the first body chunk
  (the first token's event), p50 and p99 per path, and the differences.
- ``memory``: fresh processes over a node whose tokens never come: after a
  warm-up, ``--open-streams`` streams opened at once and held; the server's
  RSS with them open minus its RSS before, per stream (proxy and gateway).
- ``swap``: two nodes, three models that each take ``--load-seconds`` to
  load, ``--swap-requests`` requests (chat and completions, streamed and
  not) for random models, ``--swap-concurrency`` at once: every answer must be
  a 200 whose every token is the requested model's (the emulator's tokens
  are ``<card id>:<k>``). The gateway's ``/status`` is read every 20 ms meanwhile,
  and then a probe: see :func:`swap_probe`. Swaps and queue waits come from its ``/metrics``.
- ``capacity`` (issue 20 §8): what one core of a gateway process passes on,
  from its own CPU per event and per request above.

Results: a table on stdout and ``--out`` (default benchmarks/results/gateway.json).
The exit code is 1 when a target failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.fleet_bench import raise_fd_limit
from benchmarks.gateway_report import PATHS, capacity, ratio_row, table, targets
from benchmarks.gateway_serve import JSON, MODEL, ROOT, Server, catalog_for, chat
from benchmarks.gateway_swap import swap_scenario


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    """One streamed request read to its end; the SSE events received."""
    events = 0
    last = b""
    async with session.post(url, data=body, headers=JSON) as r:
        if r.status != 200:
            raise SystemExit(f"{url}: {r.status} {(await r.read())[:200]!r}")
        async for chunk in r.content.iter_any():
            events += chunk.count(b"data: ")
            last = chunk
    if b"[DONE]" not in last:
        raise SystemExit(f"{url}: a stream ended without [DONE]")
    return events


async def one_whole(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    async with session.post(url, data=body, headers=JSON) as r:
        data = await r.read()
    if r.status != 200 or b'"choices"' not in data:
        raise SystemExit(f"{url}: {r.status} {data[:200]!r}")
    return 1


async def pool(count: int, concurrency: int, job: Callable[[], Awaitable[int]]) -> int:
    """Run ``job`` ``count`` times, ``concurrency`` at once; the sum of what they return."""
    left = count
    total = 0

    async def worker() -> None:
        nonlocal left, total
        while left > 0:
            left -= 1
            got = await job()  # (not `total += await job()`: that reads total before the await)
            total += got

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return total


async def throughput(
    args: argparse.Namespace, servers: dict[str, Server], urls: dict[str, str]
) -> dict[str, Any]:
    """The stream and whole rounds: per path and round, each server's CPU per unit."""
    limit = max(args.stream_concurrency, args.concurrency) * 2
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit)) as session:
        stream_body = chat(args.tokens, True)
        whole_body = chat(args.whole_tokens, False)
        for url in urls.values():  # warm-up: connections, code paths
            await pool(
                args.stream_concurrency,
                args.stream_concurrency,
                partial(one_stream, session, url + "/v1/chat/completions", stream_body),
            )
            await pool(
                args.concurrency,
                args.concurrency,
                partial(one_whole, session, url + "/v1/chat/completions", whole_body),
            )
        result: dict[str, Any] = {"stream": [], "whole": []}
        for n in range(args.rounds):
            order = PATHS[n % 3 :] + PATHS[: n % 3]
            for scenario in ("stream", "whole"):
                row: dict[str, Any] = {}
                for path in order:
                    url = urls[path] + "/v1/chat/completions"
                    if scenario == "stream":
                        count, conc = args.streams, args.stream_concurrency
                        job = partial(one_stream, session, url, stream_body)
                    else:
                        count, conc = args.requests, args.concurrency
                        job = partial(one_whole, session, url, whole_body)
                    cpu0 = {k: s.cpu() for k, s in servers.items()}
                    faults0 = {k: s.faults() for k, s in servers.items()}
                    t0 = time.perf_counter()
                    units = await pool(count, conc, job)
                    wall = time.perf_counter() - t0
                    used = {k: s.cpu() - cpu0[k] for k, s in servers.items()}
                    faults = {k: s.faults() - faults0[k] for k, s in servers.items()}
                    server = "node" if path == "direct" else path
                    row[path] = {
                        "units": units,
                        "wall_s": wall,
                        "cpu_s": used[server],
                        "node_cpu_s": used["node"],
                        "us_per_unit": used[server] / units * 1e6,
                        "faults_per_unit": faults[server] / units,
                        "units_per_s": units / wall,
                        "cpu_share": used[server] / wall,
                    }
                result[scenario].append(row)
                print(
                    json.dumps(
                        {
                            "progress": scenario,
                            "round": n + 1,
                            **{p: round(row[p]["us_per_unit"], 1) for p in PATHS},
                        }
                    ),
                    file=sys.stderr,
                )
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def latency(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    """Time to the first body chunk, one request at a time, the paths interleaved."""
    body = chat(4, True)
    seen: dict[str, list[float]] = {p: [] for p in PATHS}
    async with aiohttp.ClientSession() as session:
        for n in range(args.latency_requests + 5):
            for path in PATHS[n % 3 :] + PATHS[: n % 3]:
                t0 = time.perf_counter()
                async with session.post(
                    urls[path] + "/v1/chat/completions", data=body, headers=JSON
                ) as r:
                    first = await r.content.readany()
                    took = time.perf_counter() - t0
                    await r.read()
                if r.status != 200 or b"data: " not in first:
                    raise SystemExit(f"{path}: {r.status} {first[:200]!r}")
                if n >= 5:  # the first five open the connections
                    seen[path].append(took * 1000)
    out: dict[str, Any] = {}
    for path in PATHS:
        out[path] = {"p50_ms": percentile(seen[path], 50), "p99_ms": percentile(seen[path], 99)}
    for path in ("proxy", "gateway"):
        for q in ("p50_ms", "p99_ms"):
            out[f"{path}_added_{q}"] = out[path][q] - out["direct"][q]
    for q in ("p50_ms", "p99_ms"):
        out[f"gateway_vs_proxy_added_{q}"] = out["gateway"][q] - out["proxy"][q]
    out["requests"] = args.latency_requests
    return out


async def gateway_in_flight(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/status") as r:
        status = await r.json()
    return sum(n["model"]["in_flight"] for n in status["nodes"])


async def memory(args: argparse.Namespace) -> dict[str, Any]:
    """RSS per open stream of a fresh proxy and a fresh gateway, over a node that never answers."""
    hold = Server(
        "node",
        {
            "emulators": [
                {
                    "models": [{"name": MODEL, "modules": 1, "delay": 0}],
                    "preload": MODEL,
                    "reply_tokens": 4,
                    "token_delay": 3600.0,
                    "ping_interval": 0,
                }
            ]
        },
    )
    node_url = hold.info["urls"][0]
    out: dict[str, Any] = {"streams": args.open_streams}
    try:
        for kind in ("proxy", "gateway"):
            spec = (
                {"node": node_url}
                if kind == "proxy"
                else {"nodes": [node_url], "catalog": catalog_for([MODEL])}
            )
            server = Server(kind, {**spec, "plain_proxy": args.plain_proxy})
            try:
                out[kind] = await hold_open(server, args.open_streams)
            finally:
                server.stop()
    finally:
        hold.stop()
    return out


async def hold_open(server: Server, count: int) -> dict[str, Any]:
    body = chat(4, True)
    url = server.url + "/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def open_some(n: int) -> list[aiohttp.ClientResponse]:
            answers = await asyncio.gather(
                *(session.post(url, data=body, headers=JSON) for _ in range(n))
            )
            bad = [a.status for a in answers if a.status != 200]
            if bad:
                raise SystemExit(f"{server.kind}: open streams answered {bad[:5]}")
            return list(answers)

        async def settle() -> None:  # every warm-up stream's end seen by the server
            if server.kind == "gateway":
                # Another process's state, read over HTTP: no event to await.
                while await gateway_in_flight(session, server.url):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)

        for _ in range(2):  # warm-up: code paths, the pools' first connections
            for answer in await open_some(20):
                answer.close()
            await settle()
        before = server.rss()
        answers = await open_some(count)
        if server.kind == "gateway":
            held = await gateway_in_flight(session, server.url)
            if held != count:
                raise SystemExit(f"the gateway holds {held} streams, not {count}")
        await asyncio.sleep(0.5)
        after = server.rss()
        for answer in answers:
            answer.close()
    return {
        "rss_before_kib": before // 1024,
        "rss_open_kib": after // 1024,
        "kib_per_stream": (after - before) / 1024 / count,
    }


async def profile_gateway(
    args: argparse.Namespace, servers: dict[str, Server], urls: dict[str, str]
) -> None:
    """cProfile the proxy and the gateway: ``{kind}-stream.prof`` and ``{kind}-whole.prof``."""
    out = Path(args.profile)
    runs = {
        "stream": (args.streams, args.stream_concurrency, one_stream, chat(args.tokens, True)),
        "whole": (args.requests, args.concurrency, one_whole, chat(args.whole_tokens, False)),
    }
    async with aiohttp.ClientSession() as session:
        for kind in ("proxy", "gateway"):
            url = urls[kind] + "/v1/chat/completions"
            for name, (count, concurrency, one, body) in runs.items():
                servers[kind].command("prof-on")
                await pool(count, concurrency, partial(one, session, url, body))
                servers[kind].command(f"prof-off {out / f'{kind}-{name}.prof'}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    node = Server(
        "node",
        {
            "emulators": [
                {
                    "models": [{"name": MODEL, "modules": 1, "delay": 0}],
                    "preload": MODEL,
                    "reply_tokens": max(args.tokens, args.whole_tokens),
                    "token_delay": 0.0,
                }
            ]
        },
    )
    node_url = node.info["urls"][0]
    servers = {"node": node}
    try:
        servers["proxy"] = Server("proxy", {"node": node_url, "plain_proxy": args.plain_proxy})
        servers["gateway"] = Server(
            "gateway", {"nodes": [node_url], "catalog": catalog_for([MODEL])}
        )
        urls = {
            "direct": node_url,
            "proxy": servers["proxy"].url,
            "gateway": servers["gateway"].url,
        }
        tp = await throughput(args, servers, urls)
        lat = await latency(args, urls)
        if args.profile:
            await profile_gateway(args, servers, urls)
    finally:
        for server in servers.values():
            server.stop()
    doc: dict[str, Any] = {
        "stream": ratio_row(tp["stream"], "us_per_unit"),
        "whole": ratio_row(tp["whole"], "us_per_unit"),
        "rounds": tp,
        "latency": lat,
    }
    doc["memory"] = await memory(args)
    doc["swap"] = await swap_scenario(args)
    doc["capacity"] = capacity(tp, args)
    return doc


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="The gateway next to a node and a hand-written proxy.")
    add = p.add_argument
    add("--rounds", type=int, default=5, help="rounds of the stream and whole runs")
    add("--streams", type=int, default=200, help="streamed requests per path and round")
    add("--stream-concurrency", type=int, default=20)
    add("--tokens", type=int, default=200, help="tokens per streamed answer")
    add("--requests", type=int, default=1000, help="non-streamed requests per path and round")
    add("--concurrency", type=int, default=20, help="non-streamed requests at once")
    add("--whole-tokens", type=int, default=16, help="tokens per non-streamed answer")
    add("--latency-requests", type=int, default=300, help="timed first bytes per path")
    add("--open-streams", type=int, default=1000)
    add("--swap-requests", type=int, default=300)
    add("--swap-concurrency", type=int, default=12)
    add("--load-seconds", type=float, default=0.4, help="each swap model's load time")
    add("--probe", type=int, default=10, help="requests of the swap probe")
    add("--seed", type=int, default=20)
    add(
        "--node-tokens-per-s",
        type=int,
        default=1000,
        help="a node's token rate, for the nodes-per-core figure (§8)",
    )
    add(
        "--plain-proxy",
        action="store_true",
        help="the proxy keeps glibc's start mmap threshold (the gateway raises it itself)",
    )
    add("--profile", default="", help="a folder: cProfile the proxy and the gateway into it")
    add("--out", default=str(ROOT / "benchmarks" / "results" / "gateway.json"))
    add(
        "--quick",
        action="store_true",
        help="tiny sizes (the smoke test; decides nothing); writes gateway-quick.json",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.streams, args.tokens, args.requests = 1, 4, 10, 10
        args.stream_concurrency = args.concurrency = 2
        args.latency_requests, args.open_streams = 5, 20
        args.swap_requests, args.swap_concurrency, args.load_seconds, args.probe = 30, 4, 0.3, 3
        if args.out == p.get_default("out"):
            args.out = str(ROOT / "benchmarks" / "results" / "quick.gateway.json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_fd_limit()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    doc = asyncio.run(run(args))
    rows = targets(doc, args)
    command = "python -m benchmarks.gateway_bench" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:]) if (argv or sys.argv[1:]) else ""
    )
    doc["targets"] = rows
    doc["meta"] = {
        "command": command.strip(),
        "sizes": {k: v for k, v in vars(args).items() if k not in ("out", "profile")},
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "total_s": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"{doc['meta']['command']}: {doc['meta']['total_s']:.0f} s, "
        f"{doc['meta']['cpus']} CPUs, Python {doc['meta']['python']}"
    )
    print(table(rows))
    return 1 if any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
