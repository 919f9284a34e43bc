"""Exporter benchmark: how long one Prometheus scrape of ``tabby-async fleet exporter`` takes.

Run from the repository root::

    .venv/bin/python -m benchmarks.exporter_bench               # 1, 64 and 1,000 nodes
    .venv/bin/python -m benchmarks.exporter_bench --nodes 1,64 --scrapes 3

What it does:

* The emulators run in their own processes (``benchmarks.fleet_bench serve``:
  ``TabbyEmulator`` instances on 127.0.0.1, one port per node, recording off),
  as many nodes as the largest size asks for.
* For each size N, a :class:`~tabby_async.exporter.FleetCollector` of the first
  N nodes (``min_interval=0``: every scrape sweeps; the defaults otherwise:
  64 nodes at once, 5 s per node) is registered with a fresh
  ``CollectorRegistry`` and served by ``prometheus_client.start_http_server``
  on loopback, as the command serves it.
* One untimed scrape opens the connections; then ``--scrapes`` scrapes are
  timed, each a plain HTTP GET of ``/metrics`` (a full sweep of the N nodes
  and the exposition). Reported per N: the median, smallest and largest wall
  time of a scrape, the exporter's own sweep time (``tabby_scrape_duration_seconds``),
  the exporter process's CPU per scrape, and the size of the answer.

Nothing here decides a target: the figures are for the closing note and the
README (a scrape of 1,000 nodes must fit well inside Prometheus's default
10 s scrape timeout).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import urllib.request
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.fleet_bench import API_KEY, raise_fd_limit, start_servers, stop_servers


def _sweep_seconds(body: str) -> float:
    for line in body.splitlines():
        if line.startswith("tabby_scrape_duration_seconds "):
            return float(line.split()[1])
    raise SystemExit("no tabby_scrape_duration_seconds in the scrape")


def measure(ports: list[int], scrapes: int) -> dict[str, Any]:
    """Time ``scrapes`` scrapes of an exporter in front of the nodes at ``ports``."""
    from prometheus_client import CollectorRegistry, start_http_server

    from tabby_async.exporter import FleetCollector
    from tabby_async.fleet import NodeSpec

    specs = [
        NodeSpec(f"node-{i:04d}", f"http://127.0.0.1:{port}", api_key=API_KEY)
        for i, port in enumerate(ports)
    ]
    with FleetCollector(specs, min_interval=0) as collector:
        registry = CollectorRegistry()
        registry.register(collector)
        server, thread = start_http_server(0, "127.0.0.1", registry)
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=300) as answer:
                warm = answer.read().decode()
            if f'tabby_up{{node="node-{len(ports) - 1:04d}"}} 1.0' not in warm:
                raise SystemExit(f"a node was down in the warm-up scrape of {len(ports)} nodes")
            walls, sweeps = [], []
            cpu0 = time.process_time()
            for _ in range(scrapes):
                started = time.perf_counter()
                with urllib.request.urlopen(url, timeout=300) as answer:
                    body = answer.read().decode()
                walls.append(time.perf_counter() - started)
                sweeps.append(_sweep_seconds(body))
            cpu = (time.process_time() - cpu0) / scrapes
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
    return {
        "nodes": len(ports),
        "scrapes": scrapes,
        "wall_ms": [round(w * 1000, 1) for w in walls],
        "median_ms": round(statistics.median(walls) * 1000, 1),
        "min_ms": round(min(walls) * 1000, 1),
        "max_ms": round(max(walls) * 1000, 1),
        "sweep_median_ms": round(statistics.median(sweeps) * 1000, 1),
        "cpu_ms_per_scrape": round(cpu * 1000, 1),
        "answer_kib": round(len(body.encode()) / 1024, 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| nodes | scrape, median | fastest | slowest | sweep, median | exporter CPU / scrape "
        "| answer |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            f"{r['nodes']:,}",
            *(f"{r[k]:,} ms" for k in ("median_ms", "min_ms", "max_ms", "sweep_median_ms")),
            f"{r['cpu_ms_per_scrape']:,} ms",
            f"{r['answer_kib']} KiB",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time scrapes of the fleet exporter.")
    parser.add_argument("--nodes", default="1,64,1000", help="fleet sizes, comma-separated")
    parser.add_argument("--scrapes", type=int, default=7, help="timed scrapes per size")
    parser.add_argument("--server-procs", type=int, default=2, help="emulator processes")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.nodes.split(",") if n]
    if not sizes or min(sizes) < 1 or args.scrapes < 1:
        raise SystemExit("--nodes takes positive sizes and --scrapes at least 1")
    raise_fd_limit()
    servers, ports = start_servers(max(sizes), args.server_procs)
    try:
        rows = [measure(ports[:n], args.scrapes) for n in sizes]
    finally:
        stop_servers(servers)
    python = sys.version.split()[0]
    print(f"{args.scrapes} timed scrapes per size, after one untimed one; Python {python}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
