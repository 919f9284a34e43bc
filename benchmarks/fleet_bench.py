"""Fleet benchmark: TabbyFleet against 200 and 1,000 emulated TabbyAPI servers.

Run from the repository root::

    .venv/bin/python -m benchmarks.fleet_bench            # the full run (about 75 s on 2 cores)
    .venv/bin/python -m benchmarks.fleet_bench --quick    # 50 nodes, a smoke run

What it does:

* ``serve`` processes (``--server-procs``, default 2) each run their share of
  the emulators (``tabby_async.testing.TabbyEmulator``, recording off, no
  pings) on 127.0.0.1, one port per node. Each emulated model loads in
  ``modules x delay`` seconds: the per-node load time T.
* For each fleet size N a fresh ``control`` process (so that its memory
  figures are its own) builds a :class:`~tabby_async.fleet.TabbyFleet` of the
  first N nodes and runs, for each scenario ``(c, T)``, one fleet load at
  concurrency c. Every load is a real one (models alternate, so the server
  never answers with its "already loaded" no-op). The figure of merit is
  ``wall / (ceil(N / c) x T)``; the target is at most 1.15.
* It then times a status sweep of all N nodes (``fleet.status()``: health,
  permission, model, embedding model per node) against a plain sequential
  loop making the same four calls node after node, on the same warm clients.
* Controller CPU is ``time.process_time()`` of the control process around
  each operation, divided by the node count. Memory per node is the control
  process's peak RSS minus its RSS before the fleet was built, over N.

Results go to stdout as Markdown tables (``--out FILE`` also writes them as
JSON); the exit code is 1 if a non-stress load missed the 1.15x bound.
Numbers and discussion: ``benchmarks/FLEET.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

API_KEY = "bench-api-key"
ADMIN_KEY = "bench-admin-key"
PAGE = os.sysconf("SC_PAGE_SIZE")
ROOT = Path(__file__).resolve().parent.parent

#: Model pairs by per-node load time T: (modules, delay per module).
#: Two names per T so that consecutive loads are real loads.
LOAD_TIMES: dict[str, tuple[int, float]] = {
    "t1": (4, 0.25),
    "t2": (4, 0.5),
    "t5": (5, 1.0),
}


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (1,000 nodes need ~2,000 fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- serve: many emulators in one process --------------------------------------------


async def serve(count: int) -> None:
    from tabby_async.testing import EmulatedModel, TabbyEmulator

    models = [
        EmulatedModel(f"{key}-{i}", modules=modules, delay=delay)
        for key, (modules, delay) in LOAD_TIMES.items()
        for i in (0, 1)
    ]
    emulators = [
        TabbyEmulator(
            models=models,
            embeddings=["embed"],
            api_key=API_KEY,
            admin_key=ADMIN_KEY,
            ping_interval=0,
            record=False,
        )
        for _ in range(count)
    ]
    for emulator in emulators:
        await emulator.start()
    print(json.dumps({"ports": [e.port for e in emulators]}), flush=True)
    # Commands on stdin, one per line, until the parent closes it:
    # "latency S" holds every request S seconds before it is handled (a
    # stand-in for network distance; 0 turns it off), answered with "ok".
    while line := await asyncio.to_thread(sys.stdin.readline):
        command, _, value = line.partition(" ")
        if command == "latency":
            seconds = float(value)
            for emulator in emulators:
                emulator.faults.clear()
                if seconds > 0:
                    emulator.faults.delay_head(seconds, n=None)
        print("ok", flush=True)
    await asyncio.gather(*(e.close() for e in emulators))


# --- control: the fleet under test --------------------------------------------------------


async def control(
    ports: list[int], scenarios: list[tuple[int, str, bool]], sweep_c: int
) -> dict[str, Any]:
    from tabby_async import ModelNotLoadedError
    from tabby_async.fleet import NodeSpec, TabbyFleet

    n = len(ports)
    specs = [
        NodeSpec(f"node-{i:04d}", f"http://127.0.0.1:{port}", api_key=API_KEY, admin_key=ADMIN_KEY)
        for i, port in enumerate(ports)
    ]
    top = max([c for c, _, _ in scenarios] + [sweep_c])
    rss_before = rss_bytes()
    out: dict[str, Any] = {"nodes": n, "loads": []}
    turn = dict.fromkeys(LOAD_TIMES, 0)
    async with TabbyFleet(
        specs, max_concurrency=top, connection_limit=4 * top, node_timeout=120
    ) as fleet:
        for c, key, stress in scenarios:
            modules, delay = LOAD_TIMES[key]
            per_node = modules * delay
            model = f"{key}-{turn[key] % 2}"
            turn[key] += 1
            cpu0, t0 = time.process_time(), time.perf_counter()
            result = await fleet.models.load(model_name=model, max_concurrency=c)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            if not result.ok:
                raise SystemExit(f"load failed: {result.summary()}")
            ideal = math.ceil(n / c) * per_node
            elapsed = [r.elapsed for r in result]
            node_mean = sum(elapsed) / n
            out["loads"].append(
                {
                    "c": c,
                    "T": per_node,
                    "stress": stress,
                    "ideal_s": ideal,
                    "wall_s": round(wall, 3),
                    "ratio": round(wall / ideal, 3),
                    # What one node's load took as the controller saw it, and
                    # how busy the c slots were: sum(elapsed) / (c x wall).
                    "node_mean_s": round(node_mean, 3),
                    "node_max_s": round(max(elapsed), 3),
                    "slot_use": round(sum(elapsed) / (min(c, n) * wall), 3),
                    "cpu_ms_per_node_op": round(cpu / n * 1000, 3),
                    "ok": wall <= 1.15 * ideal,
                }
            )
            print(json.dumps({"progress": out["loads"][-1] | {"n": n}}), file=sys.stderr)

        sweeps: dict[bool, tuple[float, float]] = {}
        for concurrent in (False, True):
            cpu0, t0 = time.process_time(), time.perf_counter()
            status = await fleet.status(max_concurrency=sweep_c, concurrent_probes=concurrent)
            sweeps[concurrent] = (time.perf_counter() - t0, time.process_time() - cpu0)
            if not status.ok:
                raise SystemExit(f"status failed: {status.summary()}")
        sweep_wall, sweep_cpu = sweeps[False]
        both_wall, both_cpu = sweeps[True]

        t0 = time.perf_counter()
        cpu0 = time.process_time()
        for client in fleet.clients.values():  # the naive loop: node after node
            await client.health()
            await client.permission()
            for probe in (client.models.get, client.models.get_embedding):
                with contextlib.suppress(ModelNotLoadedError):
                    await probe()
        seq_wall, seq_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        out["status"] = {
            "c": sweep_c,
            "fleet_s": round(sweep_wall, 3),
            "fleet_cpu_ms_per_node": round(sweep_cpu / n * 1000, 3),
            "sequential_s": round(seq_wall, 3),
            "sequential_cpu_ms_per_node": round(seq_cpu / n * 1000, 3),
            "speedup": round(seq_wall / sweep_wall, 1),
            "fleet_4probes_s": round(both_wall, 3),
            "fleet_4probes_cpu_ms_per_node": round(both_cpu / n * 1000, 3),
        }
        out["rss_during_kib"] = rss_bytes() // 1024
    peak = peak_rss_bytes()
    out["rss_before_kib"] = rss_before // 1024
    out["peak_rss_kib"] = peak // 1024
    out["kib_per_node"] = round((peak - rss_before) / 1024 / n, 1)
    return out


# --- the orchestrator --------------------------------------------------------------------


def start_servers(total: int, procs: int) -> tuple[list[subprocess.Popen[str]], list[int]]:
    share = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fleet_bench", "serve", "--count", str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for count in share
        if count
    ]
    ports: list[int] = []
    for server in servers:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            raise SystemExit("an emulator process failed to start")
        ports.extend(json.loads(line)["ports"])
    return servers, ports


def set_latency(servers: list[subprocess.Popen[str]], seconds: float) -> None:
    """Make every emulator hold each request ``seconds`` before handling it."""
    for server in servers:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(f"latency {seconds}\n")
        server.stdin.flush()
        if server.stdout.readline().strip() != "ok":
            raise SystemExit("an emulator process did not take the latency command")


def stop_servers(servers: list[subprocess.Popen[str]]) -> None:
    for server in servers:
        assert server.stdin is not None
        server.stdin.close()
    for server in servers:
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_control(
    ports: list[int], scenarios: list[tuple[int, str, bool]], sweep_c: int
) -> dict[str, Any]:
    spec = json.dumps({"ports": ports, "scenarios": scenarios, "sweep_c": sweep_c})
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fleet_bench", "control"],
        input=spec,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"the control process failed ({done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def markdown(
    results: list[dict[str, Any]], sweeps: list[dict[str, Any]], meta: dict[str, Any]
) -> str:
    lines = [
        f"Machine: {meta['cpus']} CPUs, Python {meta['python']}, "
        f"{meta['server_procs']} emulator processes; total run {meta['total_s']:.0f} s.",
        "",
        "| nodes N | concurrency c | T (s) | ideal ceil(N/c)*T (s) | wall (s) | wall/ideal "
        "| within 1.15x | one node's load, mean / max (s) | slot use "
        "| controller CPU per node-op (ms) |",
        "|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|",
    ]
    for r in results:
        for load in r["loads"]:
            verdict = "yes" if load["ok"] else "NO"
            if load["stress"]:
                verdict += " (stress)"
            lines.append(
                f"| {r['nodes']} | {load['c']} | {load['T']:.1f} | {load['ideal_s']:.1f} "
                f"| {load['wall_s']:.2f} | {load['ratio']:.3f} | {verdict} "
                f"| {load['node_mean_s']:.2f} / {load['node_max_s']:.2f} "
                f"| {load['slot_use']:.3f} | {load['cpu_ms_per_node_op']:.2f} |"
            )
    lines += [
        "",
        "| nodes N | added latency per request (ms) | c | status sweep, fleet (s) "
        "| same, 4 probes at once (s) | sequential loop (s) | speed-up "
        "| CPU per node: fleet / 4 at once / sequential (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [*results, *sweeps]:
        s = r["status"]
        latency = r.get("latency_ms", 0)
        lines.append(
            f"| {r['nodes']} | {latency:g} | {s['c']} | {s['fleet_s']:.2f} "
            f"| {s['fleet_4probes_s']:.2f} | {s['sequential_s']:.2f} | {s['speedup']:.1f}x "
            f"| {s['fleet_cpu_ms_per_node']:.2f} / {s['fleet_4probes_cpu_ms_per_node']:.2f} / "
            f"{s['sequential_cpu_ms_per_node']:.2f} |"
        )
    lines += [
        "",
        "| nodes N | controller RSS before fleet (MiB) | peak RSS (MiB) "
        "| peak memory per node (KiB) |",
        "|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['nodes']} | {r['rss_before_kib'] / 1024:.1f} | {r['peak_rss_kib'] / 1024:.1f} "
            f"| {r['kib_per_node']:.1f} |"
        )
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    raise_fd_limit()
    # (N, [(c, T key, stress?)], status sweep concurrency). Stress rows show
    # where the bound stops holding (T too short for c simultaneous starts on
    # this machine); they do not count for the exit code.
    plan: list[tuple[int, list[tuple[int, str, bool]], int]]
    if args.quick:
        plan = [(50, [(10, "t1", False), (50, "t1", False)], 50)]
    else:
        plan = [
            (200, [(50, "t2", False), (200, "t2", False)], 100),
            (
                1000,
                [(100, "t2", False), (250, "t2", False), (1000, "t5", False), (1000, "t1", True)],
                200,
            ),
        ]
    total = max(n for n, _, _ in plan)
    latency = args.latency_ms / 1000
    servers, ports = start_servers(total, args.server_procs)
    sweeps: list[dict[str, Any]] = []
    try:
        results = [run_control(ports[:n], scenarios, sweep) for n, scenarios, sweep in plan]
        if latency > 0:  # the status sweep again, with every request held `latency`
            set_latency(servers, latency)
            n, _, sweep = plan[-1]
            sweeps.append(run_control(ports[:n], [], sweep) | {"latency_ms": args.latency_ms})
    finally:
        stop_servers(servers)
    meta = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "server_procs": args.server_procs,
        "total_s": time.perf_counter() - started,
        "command": "python -m benchmarks.fleet_bench" + (" --quick" if args.quick else ""),
        "latency_ms": args.latency_ms,
    }
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        document = {"meta": meta, "results": results, "latency_sweeps": sweeps}
        out.write_text(json.dumps(document, indent=2) + "\n")
    print(markdown(results, sweeps, meta))
    failed = [load for r in results for load in r["loads"] if not load["ok"] and not load["stress"]]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50 nodes: a smoke run")
    parser.add_argument("--server-procs", type=int, default=2, help="emulator processes")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=5.0,
        help="latency added to every request for the second status sweep (0: no such sweep)",
    )
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    sub = parser.add_subparsers(dest="role")
    serve_parser = sub.add_parser("serve", help="(internal) run emulators until stdin closes")
    serve_parser.add_argument("--count", type=int, required=True)
    sub.add_parser("control", help="(internal) run the fleet; the plan comes on stdin")
    args = parser.parse_args(argv)
    if args.role == "serve":
        raise_fd_limit()
        asyncio.run(serve(args.count))
        return 0
    if args.role == "control":
        raise_fd_limit()
        spec = json.loads(sys.stdin.read())
        scenarios = [(int(c), str(key), bool(stress)) for c, key, stress in spec["scenarios"]]
        result = asyncio.run(control(spec["ports"], scenarios, int(spec["sweep_c"])))
        print(json.dumps(result))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
