"""A minimal, fast TabbyAPI-shaped server for the benchmarks (aiohttp.web, low level).

Run as a separate process: ``python -m benchmarks.server --models 50,1000 --events 200``.
It serves precomputed bytes only and prints one JSON line with its ports:
one port per K ("list profile"), plus a ``hold`` port whose load stream sends one
event and then a ping every ``--ping-interval`` seconds until the client closes,
plus ``--fleet-nodes`` ports that each stand for one node of a fleet.
Auth headers are ignored. It stops on SIGTERM/SIGINT or when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from benchmarks import payloads

JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}
NOT_FOUND = b'{"detail":"Not Found"}'

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def make_handler(k: int, events: int, hold: bool, ping_interval: float) -> Handler:
    card = payloads.model_card()
    gets: dict[str, bytes] = {
        "/v1/model/list": payloads.model_list(k),
        "/v1/models": payloads.model_list(k),
        "/v1/model": card,
        "/props": payloads.props(),
        "/api/tags": payloads.ollama_tags(k),
        "/health": b'{"status":"healthy","issues":[]}',
        "/v1/auth/permission": b'{"permission":"admin"}',
    }
    # A server with no embedding model answers this 503 (the fleet status probe asks).
    errors: dict[str, tuple[int, bytes]] = {
        "/v1/model/embedding": (503, b'{"detail":"No embedding models are currently loaded."}'),
    }
    frames = payloads.load_frames(events)
    first = frames[0]

    async def stream_all(request: web.BaseRequest) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=SSE_HEADERS)
        await resp.prepare(request)
        for frame in frames:  # one event per HTTP chunk, as the real server does
            await resp.write(frame)
        await resp.write_eof()
        return resp

    async def stream_hold(request: web.BaseRequest) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=SSE_HEADERS)
        await resp.prepare(request)
        await resp.write(first)
        try:
            while True:
                await asyncio.sleep(ping_interval)
                await resp.write(payloads.PING_FRAME)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass  # the client closed the stream
        return resp

    load = stream_hold if hold else stream_all

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "GET":
            body = gets.get(request.path)
            if body is not None:
                return web.Response(body=body, headers=JSON_HEADERS)
            error = errors.get(request.path)
            if error is not None:
                return web.Response(status=error[0], body=error[1], headers=JSON_HEADERS)
        elif request.method == "POST" and request.path == "/v1/model/load":
            await request.read()
            return await load(request)
        return web.Response(status=404, body=NOT_FOUND, headers=JSON_HEADERS)

    return handler


async def serve(
    models: list[int], events: int, ping_interval: float, host: str, fleet_nodes: int
) -> None:
    runners: list[web.ServerRunner] = []
    ports: dict[str, int] = {}
    profiles: list[tuple[str, int, bool]] = [(str(k), k, False) for k in models]
    profiles.append(("hold", models[0], True))
    for name, k, hold in profiles:
        server = web.Server(make_handler(k, events, hold, ping_interval), access_log=None)
        runner = web.ServerRunner(server, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0, backlog=4096)
        await site.start()
        ports[name] = runner.addresses[0][1]
        runners.append(runner)
    # The fleet: one server, many ports (each port is a node with its own pool).
    fleet_ports: list[int] = []
    if fleet_nodes:
        server = web.Server(make_handler(models[0], events, False, ping_interval), access_log=None)
        runner = web.ServerRunner(server, handle_signals=False, access_log=None)
        await runner.setup()
        for _ in range(fleet_nodes):
            site = web.TCPSite(runner, host, 0, backlog=1024)
            await site.start()
        fleet_ports = [addr[1] for addr in runner.addresses]
        runners.append(runner)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        await reader.read()  # EOF: the runner went away
        stop.set()

    watcher = asyncio.create_task(watch_stdin())
    info = {"pid": os.getpid(), "host": host, "ports": ports, "fleet_ports": fleet_ports}
    print(json.dumps(info), flush=True)
    await stop.wait()
    watcher.cancel()
    for runner in runners:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="50,1000", help="comma-separated K values")
    parser.add_argument("--events", type=int, default=200, help="events per load stream")
    parser.add_argument("--ping-interval", type=float, default=2.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fleet-nodes", type=int, default=0, help="ports of the fleet profile")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    models = [int(x) for x in args.models.split(",") if x]
    asyncio.run(serve(models, args.events, args.ping_interval, args.host, args.fleet_nodes))


if __name__ == "__main__":
    main()
