"""Gateway benchmark: the gateway beside a hand-written proxy and the node itself, in one run.

Run from the repository root::

    .venv/bin/python -m benchmarks.gateway_bench              # the full run
    .venv/bin/python -m benchmarks.gateway_bench --quick      # small sizes (the smoke test)

What it does, each server in a process of its own on 127.0.0.1:

* **node**: a ``TabbyEmulator`` (recording off, one model loaded, no token delay);
* **proxy**: a minimal hand-written aiohttp pass-through (one ClientSession;
  reads the body, forwards it, streams the answer chunk by chunk), the
  baseline any proxy pays;
* **gateway**: :func:`tabby_async.gateway.create_app` over a one-node fleet,
  served with handler cancellation, as ``tabby-async gateway`` serves it.

Each server process answers ``GET /_cpu`` with its own ``time.process_time()``
and ``GET /_rss`` with its resident memory (``/proc/self/status``), so a
figure is the server's own CPU, not the load generator's. The load generator
is this process. Figures, each measured the same way for the proxy and the
gateway, back to back:

1. CPU per streamed event: streamed chat completions of ``--tokens`` tokens;
   the server's CPU over the run divided by the events it passed on.
2. CPU per non-streamed request.
3. Time to first byte, direct, through the proxy and through the gateway:
   p50 and p99 of sequential streamed requests, and what each adds.
4. Memory per open stream: ``--streams`` streams held open at once (a slow
   token delay), the gateway's RSS growth divided by their number.
5. The swap scenario: 3 models on 2 nodes (loads that take time), a few
   hundred requests in random order; every answer checked for its model
   (the emulator's tokens name the model that made them). A probe sends
   requests for a model that is loaded on a node not swapping, while the
   others swap: its slowest answer must stay under one load's time.
6. Capacity: streamed events per second through one gateway process at
   saturation, and what that means in streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp
from aiohttp import web

RESULTS = Path(__file__).parent / "results" / "gateway.json"
CPU_RATIO = 1.25
STREAM_MEMORY = 64 * 1024


# ------------------------------------------------------------------ the servers


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _meter(app: web.Application) -> web.Application:
    async def cpu(_: web.Request) -> web.Response:
        return web.json_response({"cpu": time.process_time()})

    async def rss(_: web.Request) -> web.Response:
        return web.json_response({"rss": _rss()})

    app.router.add_get("/_cpu", cpu)
    app.router.add_get("/_rss", rss)
    return app


def _proxy_app(upstream: str, api_key: str) -> web.Application:
    """The baseline: what a minimal hand-written aiohttp pass-through does."""
    session: dict[str, aiohttp.ClientSession] = {}

    async def start(_: web.Application) -> None:
        session["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def stop(_: web.Application) -> None:
        await session["s"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Content-Type": "application/json", "x-api-key": api_key}
        async with session["s"].post(upstream + request.path, data=body, headers=headers) as up:
            if up.content_type != "text/event-stream":
                return web.Response(
                    body=await up.read(), status=up.status, content_type=up.content_type
                )
            response = web.StreamResponse(
                status=up.status, headers={"Content-Type": up.content_type}
            )
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_post("/v1/completions", forward)
    return _meter(app)


async def _serve(kind: str, args: argparse.Namespace) -> None:
    from tabby_async.testing import EmulatedModel, TabbyEmulator

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if kind == "node":
        models = [EmulatedModel(m, modules=4, delay=args.load_delay / 4) for m in args.models]
        emulator = TabbyEmulator(
            models=models,
            record=False,
            reply_tokens=args.tokens,
            token_delay=args.token_delay,
            api_key="bench-api",
            admin_key="bench-admin",
            ping_interval=3600,
        )
        if args.preload:
            emulator.preload(args.preload, prompt_template="chatml")
        async with emulator:
            print(json.dumps({"url": emulator.url}), flush=True)
            await stop.wait()
        return
    if kind == "proxy":
        app = _proxy_app(args.upstream[0], "bench-api")
    else:
        from tabby_async.gateway import create_app

        folder = Path(tempfile.mkdtemp())
        nodes = folder / "nodes.toml"
        nodes.write_text(
            "".join(
                f'[[nodes]]\nname = "n{i}"\nurl = "{u}"\n'
                'api_key = "bench-api"\nadmin_key = "bench-admin"\n'
                for i, u in enumerate(args.upstream)
            )
        )
        catalog = folder / "catalog.toml"
        pins = dict(p.split("@") for p in args.pin)
        catalog.write_text(
            "".join(
                f'[models."{m}"]\n'
                + (f'pinned = true\nnodes = ["{pins[m]}"]\n' if m in pins else "")
                for m in args.models
            )
            + "[gateway]\nqueue_size = 10000\nqueue_timeout = 600\n"
        )
        # The meter's routes beside the gateway's own, as a user's app would add them.
        app = _meter(create_app(nodes, catalog))
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    print(json.dumps({"url": base, "meter": base}), flush=True)
    await stop.wait()
    await runner.cleanup()


class Server:
    """A server process of this benchmark: its URL, and its meter's."""

    def __init__(self, kind: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.gateway_bench", "--serve", kind, *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = json.loads(self.proc.stdout.readline())
        self.url: str = line["url"]
        self.meter: str = line.get("meter", line["url"])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


async def _read(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        return await r.json()


# ------------------------------------------------------------------ the load


def _chat(model: str, stream: bool) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


HEADERS = {"x-api-key": "bench-api"}


async def _drive(
    http: aiohttp.ClientSession,
    url: str,
    model: str,
    requests: int,
    concurrency: int,
    stream: bool,
) -> int:
    """Send ``requests`` chat completions, ``concurrency`` at a time; the events seen."""
    events = 0
    left = iter(range(requests))

    async def worker() -> None:
        nonlocal events
        for _ in left:
            async with http.post(
                url + "/v1/chat/completions", json=_chat(model, stream), headers=HEADERS
            ) as r:
                assert r.status == 200, (r.status, await r.text())
                if stream:
                    async for line in r.content:
                        if line.startswith(b"data:"):
                            events += 1
                else:
                    await r.read()
                    events += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return events


async def _cpu_per(
    http: aiohttp.ClientSession,
    server: Server,
    model: str,
    requests: int,
    concurrency: int,
    stream: bool,
) -> float:
    await _drive(http, server.url, model, max(10, requests // 10), concurrency, stream)  # warm
    before = (await _read(http, server.meter + "/_cpu"))["cpu"]
    events = await _drive(http, server.url, model, requests, concurrency, stream)
    after = (await _read(http, server.meter + "/_cpu"))["cpu"]
    return (after - before) / events


async def _ttfb(http: aiohttp.ClientSession, url: str, model: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        async with http.post(
            url + "/v1/chat/completions", json=_chat(model, True), headers=HEADERS
        ) as r:
            await r.content.readany()
            times.append(time.perf_counter() - started)
            await r.read()
    return times


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def _memory(http: aiohttp.ClientSession, gateway: Server, model: str, streams: int) -> float:
    before = (await _read(http, gateway.meter + "/_rss"))["rss"]
    opened: list[aiohttp.ClientResponse] = []
    firsts = []
    for _ in range(streams):
        firsts.append(
            http.post(
                gateway.url + "/v1/chat/completions", json=_chat(model, True), headers=HEADERS
            )
        )
    responses = await asyncio.gather(*firsts)
    for r in responses:
        assert r.status == 200
        await r.content.readany()  # the stream is open and flowing
        opened.append(r)
    during = (await _read(http, gateway.meter + "/_rss"))["rss"]
    for r in opened:
        r.close()
    return (during - before) / streams


async def _swaps(http: aiohttp.ClientSession, args: argparse.Namespace) -> dict[str, Any]:
    models = ["alpha", "beta", "gamma"]
    nodes = [
        Server("node", "--models", *models, "--tokens", "4", "--load-delay", str(args.load_delay))
        for _ in range(2)
    ]
    # A third node holds a pinned model that never swaps: its requests must
    # never wait behind the swaps of the other two.
    nodes.append(Server("node", "--models", "delta", "--preload", "delta", "--tokens", "4"))
    gateway = Server(
        "gateway",
        "--models",
        *models,
        "delta",
        "--pin",
        "delta@n2",
        "--upstream",
        *(n.url for n in nodes),
    )
    try:
        rng = random.Random(7)
        order = [rng.choice(models) for _ in range(args.swap_requests)]
        failed = wrong = 0
        left = iter(order)

        async def worker() -> None:
            nonlocal failed, wrong
            for model in left:
                body = {"model": model, "prompt": "x", "max_tokens": 4}
                async with http.post(gateway.url + "/v1/completions", json=body) as r:
                    data = await r.json(content_type=None)
                    if r.status != 200:
                        failed += 1
                    elif not data["choices"][0]["text"].startswith(f"{model}:1 "):
                        wrong += 1

        probes: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:
            body = {"model": "delta", "prompt": "x", "max_tokens": 1}
            while not done.is_set():
                started = time.perf_counter()
                async with http.post(gateway.url + "/v1/completions", json=body) as r:
                    await r.read()
                    assert r.status == 200
                probes.append(time.perf_counter() - started)

        prober = asyncio.ensure_future(probe())
        await asyncio.gather(*(worker() for _ in range(args.swap_concurrency)))
        done.set()
        await prober
        metrics = await (await http.get(gateway.url + "/metrics")).text()
    finally:
        gateway.stop()
        for n in nodes:
            n.stop()
    swaps = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("tabby_gateway_swaps_total{")
    )
    waits = [
        line
        for line in metrics.splitlines()
        if line.startswith("tabby_gateway_queue_wait_seconds_count")
    ]
    waited = sum(float(line.split()[-1]) for line in waits)
    wait_sum = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("tabby_gateway_queue_wait_seconds_sum")
    )
    return {
        "requests": len(order),
        "failed": failed,
        "wrong_model": wrong,
        "swaps": swaps,
        "queued": waited,
        "mean_queue_wait_s": wait_sum / waited if waited else 0.0,
        "probes": len(probes),
        "probe_max_s": max(probes) if probes else None,
        "load_s": args.load_delay,
    }


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    model = "bench-model"
    node = Server("node", "--models", model, "--preload", model, "--tokens", str(args.tokens))
    proxy = Server("proxy", "--upstream", node.url)
    gateway = Server("gateway", "--models", model, "--upstream", node.url)
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            for server in (proxy, gateway):  # warm both, the gateway's state read
                await _drive(http, server.url, model, 5, 1, True)
            rows = {}
            for label, stream, count in (
                ("event", True, args.requests),
                ("request", False, args.requests * 4),
            ):
                p = await _cpu_per(http, proxy, model, count, args.concurrency, stream)
                g = await _cpu_per(http, gateway, model, count, args.concurrency, stream)
                rows[label] = {"proxy_us": p * 1e6, "gateway_us": g * 1e6, "ratio": g / p}
            results["cpu"] = rows
            ttfb = {}
            targets = (("direct", node.url), ("proxy", proxy.url), ("gateway", gateway.url))
            for label, url in targets:
                times = await _ttfb(http, url, model, args.ttfb)
                ttfb[label] = {"p50_ms": _pct(times, 0.5) * 1e3, "p99_ms": _pct(times, 0.99) * 1e3}
            results["ttfb"] = ttfb
        node.stop()
        proxy.stop()
        gateway.stop()
        # Memory: a slow node, so that the streams stay open.
        slow = Server(
            "node",
            "--models",
            model,
            "--preload",
            model,
            "--tokens",
            "100000",
            "--token-delay",
            "0.5",
        )
        gateway = Server("gateway", "--models", model, "--upstream", slow.url)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                await _drive(http, gateway.url, model, 0, 1, True)
                results["memory_per_stream"] = await _memory(http, gateway, model, args.streams)
        finally:
            gateway.stop()
            slow.stop()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            results["swap"] = await _swaps(http, args)
    finally:
        for server in (node, proxy, gateway):
            if server.proc.poll() is None:
                server.stop()
    return results


def _report(results: dict[str, Any]) -> bool:
    cpu = results["cpu"]
    ok = True
    rows = []

    def row(figure: str, value: str, target: str, passed: bool | None) -> None:
        nonlocal ok
        ok = ok and passed is not False
        verdict = "reported" if passed is None else ("PASS" if passed else "FAIL")
        rows.append((figure, value, target, verdict))

    for label in ("event", "request"):
        r = cpu[label]
        row(
            f"CPU per streamed {label}" if label == "event" else "CPU per non-streamed request",
            f"{r['gateway_us']:.1f} us vs proxy {r['proxy_us']:.1f} us = {r['ratio']:.2f}x",
            f"<= {CPU_RATIO}x",
            r["ratio"] <= CPU_RATIO,
        )
    t = results["ttfb"]
    for q in ("p50", "p99"):
        row(
            f"added time to first byte, {q}",
            f"gateway +{t['gateway'][q + '_ms'] - t['direct'][q + '_ms']:.2f} ms, "
            f"proxy +{t['proxy'][q + '_ms'] - t['direct'][q + '_ms']:.2f} ms "
            f"(direct {t['direct'][q + '_ms']:.2f} ms)",
            "reported",
            None,
        )
    mem = results["memory_per_stream"]
    row("memory per open stream", f"{mem / 1024:.1f} KiB", "<= 64 KiB", mem <= STREAM_MEMORY)
    s = results["swap"]
    row(
        "swap scenario",
        f"{s['requests']} requests: {s['failed']} failed, "
        f"{s['wrong_model']} wrong-model; {s['swaps']:.0f} swaps, {s['queued']:.0f} queued "
        f"(mean wait {s['mean_queue_wait_s']:.2f} s)",
        "0 failed, 0 wrong",
        s["failed"] == 0 and s["wrong_model"] == 0,
    )
    if s["probes"]:
        row(
            "loaded model during swaps elsewhere",
            f"{s['probes']} probes, slowest {s['probe_max_s'] * 1e3:.0f} ms",
            f"< one load ({s['load_s'] * 1e3:.0f} ms)",
            s["probe_max_s"] < s["load_s"],
        )
    events = 1 / (cpu["event"]["gateway_us"] / 1e6)
    row(
        "capacity of one gateway process",
        f"~{events:,.0f} streamed events/s per core (~{events / 20:,.0f} streams at 20 tokens/s)",
        "reported",
        None,
    )
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in [("figure", "value", "target", "verdict"), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", choices=["node", "proxy", "gateway"])
    parser.add_argument("--models", nargs="*", default=[])
    parser.add_argument("--preload", default=None)
    parser.add_argument("--upstream", nargs="*", default=[])
    parser.add_argument("--pin", nargs="*", default=[], help="MODEL@NODE: pinned there")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--load-delay", type=float, default=0.4)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--ttfb", type=int, default=300)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--swap-requests", type=int, default=300)
    parser.add_argument("--swap-concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="small sizes (the smoke test)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args))
        return 0
    if args.quick:
        args.tokens, args.requests, args.ttfb, args.streams = 20, 20, 10, 20
        args.swap_requests, args.load_delay = 20, 0.1
    results = asyncio.run(_bench(args))
    ok = _report(results)
    RESULTS.parent.mkdir(exist_ok=True)
    if not args.quick:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
