"""The server processes of the gateway benchmark: emulated nodes, a hand-written proxy, the gateway.

Each runs in its own process (``python -m benchmarks.gateway_serve KIND SPEC``,
SPEC a JSON object), so that ``/proc/<pid>/stat`` and ``/proc/<pid>/statm``
give the CPU and the memory of that server alone. On start it prints one JSON
line (its URLs); then it takes commands on stdin, one per line, each answered
with ``ok``, until stdin closes:

- ``cpu``: answered with ``time.process_time()`` of this process instead;
- ``prof-on``: start cProfile in this process;
- ``prof-off PATH``: stop it and write its stats to PATH.

The hand-written proxy is the fair baseline the gateway is compared with:
what an expert writes for "forward this POST to that node and pass the
answer on" with aiohttp and nothing else: one ``ClientSession``, the body
read once and sent as it is, a stream passed on chunk by chunk
(``iter_any()`` and ``write``), a whole answer read and sent in one
``Response``. It does no routing, no queueing, no accounting.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.fleet_bench import ADMIN_KEY, API_KEY, raise_fd_limit
from tabby_async.gateway._proxy import raise_mmap_threshold

SSE = "text/event-stream"
ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
MODEL = "bench-model"


async def _commands(profile: list[cProfile.Profile]) -> None:
    """Answer stdin's commands until it closes."""
    while line := await asyncio.to_thread(sys.stdin.readline):
        command, _, value = line.strip().partition(" ")
        if command == "prof-on":
            profile.append(cProfile.Profile())
            profile[-1].enable()
        elif command == "prof-off" and profile:
            done = profile.pop()
            done.disable()
            done.dump_stats(value)
        elif command == "cpu":  # the process's own user + system time, every thread
            print(repr(time.process_time()), flush=True)
            continue
        print("ok", flush=True)


async def _serve_app(app: web.Application, info: dict[str, Any]) -> None:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(json.dumps({**info, "url": f"http://127.0.0.1:{runner.addresses[0][1]}"}), flush=True)
    try:
        await _commands([])
    finally:
        await runner.cleanup()


# --- nodes -------------------------------------------------------------------------------


async def node(spec: dict[str, Any]) -> None:
    """Emulated TabbyAPI nodes: ``{"emulators": [{models, preload, reply_tokens, ...}]}``."""
    from tabby_async.testing import EmulatedModel, TabbyEmulator

    emulators = []
    for one in spec["emulators"]:
        models = [
            EmulatedModel(m["name"], modules=m["modules"], delay=m["delay"]) for m in one["models"]
        ]
        emulator = TabbyEmulator(
            models=models,
            api_key=API_KEY,
            admin_key=ADMIN_KEY,
            ping_interval=one.get("ping_interval", 0),
            record=False,
            reply_tokens=one["reply_tokens"],
            token_delay=one["token_delay"],
        )
        if one.get("preload"):
            emulator.preload(one["preload"], prompt_template="chatml")
        emulators.append(await emulator.start())
    print(json.dumps({"urls": [e.url for e in emulators]}), flush=True)
    try:
        await _commands([])
    finally:
        await asyncio.gather(*(e.close() for e in emulators))


# --- the hand-written proxy --------------------------------------------------------------


async def proxy(spec: dict[str, Any]) -> None:
    """A minimal aiohttp pass-through to one node: ``{"node": URL}``."""
    target = spec["node"]
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    session: aiohttp.ClientSession | None = None

    async def forward(request: web.Request) -> web.StreamResponse:
        assert session is not None
        body = await request.read()
        async with session.post(target + request.path, data=body, headers=headers) as upstream:
            if upstream.content_type != SSE:
                data = await upstream.read()
                return web.Response(
                    body=data, status=upstream.status, content_type=upstream.content_type
                )
            response = web.StreamResponse(
                status=upstream.status, headers={"Content-Type": SSE, "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def life(_: web.Application) -> Any:
        nonlocal session
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await session.close()

    app = web.Application()
    app.add_routes(
        [web.post("/v1/chat/completions", forward), web.post("/v1/completions", forward)]
    )
    app.cleanup_ctx.append(life)
    if not spec.get("plain_proxy"):
        # The same footing as the gateway, which does this itself.
        raise_mmap_threshold()
    await _serve_app(app, {})


# --- the gateway -------------------------------------------------------------------------


async def gateway(spec: dict[str, Any]) -> None:
    """The gateway over ``{"nodes": [URL, ...], "catalog": TOML text}`` (nodes node-1, ...)."""
    from tabby_async.fleet import NodeSpec, TabbyFleet
    from tabby_async.gateway import Gateway, gateway_pool, parse_catalog

    specs = [
        NodeSpec(f"node-{i}", url, api_key=API_KEY, admin_key=ADMIN_KEY)
        for i, url in enumerate(spec["nodes"], 1)
    ]
    catalog = parse_catalog(tomllib.loads(spec["catalog"]))
    fleet = TabbyFleet(specs, **gateway_pool({}))
    app = Gateway(fleet, catalog, close_fleet=True).app()
    await _serve_app(app, {})


# --- the parent's side -------------------------------------------------------------------


class Server:
    """One server process of the bench, its CPU and memory read from /proc."""

    def __init__(self, kind: str, spec: dict[str, Any]) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.gateway_serve", kind, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {kind} process failed to start")
        self.info: dict[str, Any] = json.loads(line)

    @property
    def url(self) -> str:
        return str(self.info["url"])

    def cpu(self) -> float:
        """User + system CPU seconds of the process so far, as it reports them itself.

        (``/proc/<pid>/stat`` counts in clock ticks, 10 ms here: too coarse for short runs.)
        """
        return float(self.ask("cpu"))

    def faults(self) -> int:
        """Minor page faults of the process so far (``/proc/<pid>/stat``)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def ask(self, line: str) -> str:
        """Send one command; its answer line."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer:
            raise SystemExit(f"the {self.kind} process did not answer {line.split()[0]!r}")
        return answer

    def command(self, line: str) -> None:
        if self.ask(line) != "ok":
            raise SystemExit(f"the {self.kind} process did not take {line.split()[0]!r}")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def chat(tokens: int, stream: bool, model: str = MODEL) -> bytes:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": tokens,
        "stream": stream,
    }
    return json.dumps(body).encode()


def catalog_for(models: list[str], policy: str = "") -> str:
    tables = "".join(f'[models."{m}"]\nprompt_template = "chatml"\n\n' for m in models)
    return f"[gateway]\n{policy}\n\n{tables}"


#: What the load generator sends: the node checks the api key; the proxy and the gateway
#: (no client keys) ignore it.
JSON = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}


KINDS = {"node": node, "proxy": proxy, "gateway": gateway}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in KINDS:
        raise SystemExit(f"usage: python -m benchmarks.gateway_serve {{{','.join(KINDS)}}} SPEC")
    raise_fd_limit()
    asyncio.run(KINDS[args[0]](json.loads(args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
