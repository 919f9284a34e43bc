"""The gateway benchmark's swap scenario: 3 models on 2 nodes, requests in random order.

Two emulated nodes (one process) each have the three model folders, none
loaded; each load takes ``--load-seconds``. The gateway in front of them gets
``--swap-requests`` requests for random models, chat and completions, streamed
and not, ``--swap-concurrency`` at once. Every answer must be a 200 whose
every token was made by the requested model (the emulator's token text is
``<card id>:<k>``, the card id the folder's name).

Whether a request for a loaded model ever waits behind another node's swap
is checked twice:

- **The random run.** The gateway's ``/status`` is read every 20 ms. A request
  counts as *held* when every reading from the last one before it was sent to
  the first one after its answer's head arrived shows its model on one node,
  that node neither swapping nor draining; it *overlaps* a swap when one of
  those readings shows the other node swapping. An overlapping held request
  that waited for that swap would take a good part of a load to get its head;
  the slowest must stay under half a load.
- **The probe.** Once the run is over and the gateway idle: node A holds X,
  node B holds Y. One request for X (so Y is the least recently used), then
  one for the third model Z starts B's swap (read back from ``/status``).
  While B loads, ``--probe`` requests for X are sent at once; when all are
  answered, ``/status`` must still show B swapping to Z: none waited for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

import aiohttp

from benchmarks.gateway_serve import JSON, Server, catalog_for

MODELS = ("alpha", "beta", "gamma")
POLL = 0.02


def body_of(model: str, chat: bool, stream: bool) -> bytes:
    fields: dict[str, Any] = {"model": model, "max_tokens": 8, "stream": stream}
    if chat:
        fields["messages"] = [{"role": "user", "content": "hi"}]
    else:
        fields["prompt"] = "hi"
    return json.dumps(fields).encode()


def text_of(data: bytes, chat: bool, stream: bool) -> str | None:
    """The answer's generated text; ``None`` for an error event or a malformed answer."""
    try:
        if not stream:
            choice = json.loads(data)["choices"][0]
            return str(choice["message"]["content"] if chat else choice["text"])
        parts = []
        for line in data.split(b"\n"):
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event or not event.get("choices"):
                if "error" in event:
                    return None
                continue  # the usage chunk
            choice = event["choices"][0]
            parts.append(
                (choice.get("delta") or {}).get("content") or ""
                if chat
                else choice.get("text") or ""
            )
        if not data.rstrip().endswith(b"data: [DONE]"):
            return None
        return "".join(parts)
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def right_model(text: str, card: str) -> bool:
    tokens = text.split()
    return (
        bool(tokens) and tokens[0] == f"{card}:1" and all(t.startswith(f"{card}:") for t in tokens)
    )


class Ask:
    """One request of the scenario and what came of it."""

    def __init__(self, model: str, chat: bool, stream: bool) -> None:
        self.model, self.chat, self.stream = model, chat, stream
        self.sent = self.head = self.done = 0.0
        self.status = 0
        self.right = False

    async def send(self, session: aiohttp.ClientSession, url: str) -> None:
        path = "/v1/chat/completions" if self.chat else "/v1/completions"
        self.sent = time.perf_counter()
        async with session.post(
            url + path, data=body_of(self.model, self.chat, self.stream), headers=JSON
        ) as r:
            self.head = time.perf_counter()
            self.status = r.status
            data = await r.read()
        self.done = time.perf_counter()
        text = text_of(data, self.chat, self.stream) if r.status == 200 else None
        self.right = text is not None and right_model(text, self.model)


def node_states(status: dict[str, Any]) -> dict[str, tuple[str | None, bool]]:
    """Per node: the model it holds when it is settled (not swapping, not draining), and
    whether it is swapping."""
    out = {}
    for node in status["nodes"]:
        slot = node["model"]
        settled = node["up"] and node["swapping"] is None and not slot["draining"]
        out[node["name"]] = (slot["model"] if settled else None, node["swapping"] is not None)
    return out


async def read_status(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url + "/status") as r:
        result: dict[str, Any] = await r.json()
        return result


def held_figures(
    asks: list[Ask], readings: list[tuple[float, dict[str, Any]]], load: float
) -> dict[str, Any]:
    """The random run's check: held requests that overlapped another node's swap."""
    times = [t for t, _ in readings]
    held = overlapping = 0
    heads: list[float] = []
    for ask in asks:
        first = max(0, next((i for i, t in enumerate(times) if t > ask.sent), len(times)) - 1)
        last = next((i for i, t in enumerate(times) if t > ask.head), None)
        if last is None:
            continue
        window = [node_states(s) for _, s in readings[first : last + 1]]
        homes = [{n for n, (m, _) in w.items() if m == ask.model} for w in window]
        home = set.intersection(*homes) if homes else set()
        if not home:
            continue
        held += 1
        if any(swapping for w in window for n, (_, swapping) in w.items() if n not in home):
            overlapping += 1
            heads.append((ask.head - ask.sent) * 1000)
    slowest = max(heads, default=0.0)
    return {
        "held": held,
        "overlapping": overlapping,
        "overlapping_p50_ms": sorted(heads)[len(heads) // 2] if heads else 0.0,
        "overlapping_max_ms": slowest,
        "limit_ms": load * 500,
        "ok": overlapping > 0 and slowest < load * 500,
    }


async def quiet(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The gateway's status once nothing is swapping, draining, waiting or in flight."""
    while True:
        status = await read_status(session, url)
        busy = any(
            n["swapping"] is not None or n["model"]["in_flight"] or n["model"]["draining"]
            for n in status["nodes"]
        ) or any(status["queues"].values())
        if not busy:
            return status
        await asyncio.sleep(POLL)


async def probe(
    session: aiohttp.ClientSession, url: str, count: int, load: float
) -> dict[str, Any]:
    status = await quiet(session, url)
    held = {n["name"]: n["model"]["model"] for n in status["nodes"]}
    a, b = sorted(held)
    if held[a] is None:
        a, b = b, a
    x = held[a]
    if x is None:  # nothing loaded: load one first
        x = MODELS[0]
        await Ask(x, False, False).send(session, url)
        status = await quiet(session, url)
        held = {n["name"]: n["model"]["model"] for n in status["nodes"]}
        a = next(n for n, m in held.items() if m == x)
        b = next(n for n in held if n != a)
    z = next(m for m in MODELS if m not in held.values())
    await Ask(x, False, False).send(session, url)  # B's model is now the least recently used
    trigger = asyncio.ensure_future(Ask(z, False, False).send(session, url))
    started = time.perf_counter()
    while True:
        swapping = {n["name"]: n["swapping"] for n in (await read_status(session, url))["nodes"]}
        if swapping.get(b) == z or swapping.get(a) == z:
            break
        await asyncio.sleep(0.005)
    asks = [Ask(x, False, stream=bool(i % 2)) for i in range(count)]
    await asyncio.gather(*(ask.send(session, url) for ask in asks))
    after = {n["name"]: n["swapping"] for n in (await read_status(session, url))["nodes"]}
    await trigger
    answered = sum(1 for ask in asks if ask.status == 200 and ask.right)
    valid = swapping.get(b) == z  # the gateway chose the LRU node, as it should
    return {
        "sent": count,
        "answered": answered if after.get(b) == z else 0,
        "slowest_ms": max((ask.done - ask.sent) * 1000 for ask in asks),
        "load_ms": load * 1000,
        "swap_seen_after_ms": (asks[0].sent - started) * 1000,
        "swap_on_lru_node": valid,
        "ok": valid and after.get(b) == z and answered == count,
    }


def metric_lines(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    rows = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            pairs = dict(p.split("=", 1) for p in labels.split(",") if p)
            rows.append(({k: v.strip('"') for k, v in pairs.items()}, float(value)))
    return rows


async def swap_scenario(args: argparse.Namespace) -> dict[str, Any]:
    load = args.load_seconds
    models = [{"name": m, "modules": 4, "delay": load / 4} for m in MODELS]
    nodes = Server(
        "node",
        {
            "emulators": [
                {"models": models, "preload": None, "reply_tokens": 8, "token_delay": 0.005}
                for _ in range(2)
            ]
        },
    )
    try:
        gateway = Server(
            "gateway", {"nodes": nodes.info["urls"], "catalog": catalog_for(list(MODELS))}
        )
        try:
            return await drive(args, gateway.url, load)
        finally:
            gateway.stop()
    finally:
        nodes.stop()


async def drive(args: argparse.Namespace, url: str, load: float) -> dict[str, Any]:
    rng = random.Random(args.seed)
    asks = [
        Ask(rng.choice(MODELS), rng.random() < 0.5, rng.random() < 0.5)
        for _ in range(args.swap_requests)
    ]
    readings: list[tuple[float, dict[str, Any]]] = []
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        running = True

        async def poll() -> None:
            while running:
                status = await read_status(session, url)
                readings.append((time.perf_counter(), status))
                await asyncio.sleep(POLL)

        poller = asyncio.ensure_future(poll())
        queue = iter(asks)

        async def worker() -> None:
            for ask in queue:
                await ask.send(session, url)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.swap_concurrency)))
        wall = time.perf_counter() - started
        await asyncio.sleep(POLL * 2)  # a reading after the last head
        running = False
        await poller
        async with session.get(url + "/metrics") as r:  # before the probe's own swap
            metrics = await r.text()
        probed = await probe(session, url, args.probe, load)
    swaps: dict[str, float] = {}
    for labels, value in metric_lines(metrics, "tabby_gateway_swaps_total"):
        swaps[labels["reason"]] = swaps.get(labels["reason"], 0) + value
    counts = dict(
        (lab["model"], v)
        for lab, v in metric_lines(metrics, "tabby_gateway_queue_wait_seconds_count")
    )
    sums = dict(
        (lab["model"], v)
        for lab, v in metric_lines(metrics, "tabby_gateway_queue_wait_seconds_sum")
    )
    queued = sum(counts.values())
    return {
        "requests": len(asks),
        "wall_s": wall,
        "failed": sum(1 for a in asks if a.status != 200),
        "wrong_model": sum(1 for a in asks if a.status == 200 and not a.right),
        "swaps": swaps,
        "swaps_total": sum(swaps.values()),
        "queued": int(queued),
        "queue_wait_mean_ms": sum(sums.values()) / queued * 1000 if queued else 0.0,
        "queue_wait_by_model": {
            m: {
                "count": int(counts[m]),
                "mean_ms": sums[m] / counts[m] * 1000 if counts[m] else 0.0,
            }
            for m in counts
        },
        "load_s": load,
        "readings": len(readings),
        "held": held_figures(asks, readings, load),
        "probe": probed,
    }
