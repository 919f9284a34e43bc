"""The benchmark runner: ``python -m benchmarks`` (or ``python benchmarks/run.py``).

It starts the TabbyAPI-shaped server (benchmarks/server.py) in its own process
on 127.0.0.1, pinned to one CPU, and each client in its own process, pinned to
another. For every scenario the clients run interleaved, round by round
(the order rotates each round: A B C, B C A, C A B, ...), and every figure
reported is the median over rounds; every ratio is the median of the per-round
ratios, so only numbers from the same round are ever compared.

See benchmarks/README.md for what each scenario does and the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import config, report
from benchmarks.config import FLOOR, HANDWRITTEN, SDK, SDK_OTEL, Scenario, Sizes

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results"
README = ROOT / "benchmarks" / "README.md"
IMPORT_MODULES = {
    FLOOR: "aiohttp",
    HANDWRITTEN: "aiohttp, msgspec",
    SDK: "tabby_async",
}
# What the git state in the results looks at (the results themselves are not code).
GIT_WATCHED = ("tabby_async", "benchmarks", ":!benchmarks/results", ":!benchmarks/README.md")
STEP_TIMEOUT = 900.0  # seconds any one worker step may take before the run gives up on it


class WorkerError(RuntimeError):
    pass


class Snapshot:
    """A copy of ``tabby_async`` and ``benchmarks`` that every child process runs from.

    The SDK is being worked on in the same tree while a run takes minutes; the
    children import the copy taken at the start (their working directory, first
    on sys.path), so one run measures one version.
    """

    def __init__(self) -> None:
        self.root = ROOT
        self._tmp: str | None = None

    def take(self) -> None:
        import shutil
        import tempfile

        self._tmp = tempfile.mkdtemp(prefix="tabby-bench-")
        root = Path(self._tmp)
        skip = shutil.ignore_patterns("__pycache__", "results", "*.pyc")
        for package in ("tabby_async", "benchmarks"):
            shutil.copytree(ROOT / package, root / package, ignore=skip)
        self.root = root

    def drop(self) -> None:
        import shutil

        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self.root = ROOT


SNAPSHOT = Snapshot()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(SNAPSHOT.root) + (os.pathsep + path if path else "")
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    # Write .pyc files as an installed package has them: without them every fresh
    # interpreter compiles tabby_async from source (an unfair import time).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def read_line(stream: IO[str], timeout: float, what: str) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise WorkerError(f"{what}: no answer within {timeout:.0f} s")
    line = stream.readline()
    if not line:
        raise WorkerError(f"{what}: process ended without an answer (see its stderr above)")
    return line


class Server:
    def __init__(self, sizes: Sizes, cpu: int | None, fleet: bool) -> None:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.server",
            "--models",
            ",".join(str(k) for k in sizes.models),
            "--events",
            str(sizes.events),
            "--fleet-nodes",
            str(sizes.fleet_nodes if fleet else 0),
        ]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=SNAPSHOT.root,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        info = json.loads(read_line(self.proc.stdout, 60, "server start"))
        self.ports: dict[str, int] = info["ports"]
        self.host: str = info["host"]
        self.fleet_urls = [f"http://{self.host}:{p}" for p in info["fleet_ports"]]

    def url(self, profile: str) -> str:
        return f"http://{self.host}:{self.ports[profile]}"

    def cpu_seconds(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the server stops when its stdin closes
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Worker:
    """A client process driven over stdin/stdout (see benchmarks/worker.py)."""

    def __init__(self, client: str, argv: list[str]) -> None:
        self.client = client
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", "--client", client, *argv],
            cwd=SNAPSHOT.root,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def answer(self, what: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = read_line(self.proc.stdout, STEP_TIMEOUT, f"{self.client} {what}")
        try:
            data: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkerError(f"{self.client} {what}: bad answer {line[:200]!r}") from exc
        return data

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def run(self) -> dict[str, Any]:
        self.send("run")
        return self.answer("run")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def combined(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One round from the shares its processes ran: times and counts add up, peaks don't."""
    round_: dict[str, Any] = {
        key: sum(p[key] for p in parts) for key in ("wall", "cpu", "calls", "units")
    }
    peaks = [p["maxrss_kib"] for p in parts if "maxrss_kib" in p]
    if peaks:
        round_["maxrss_kib"] = max(peaks)
    round_["processes"] = len(parts)
    return round_


def rotated(items: Sequence[str], by: int) -> list[str]:
    if not items:
        return []
    k = by % len(items)
    return [*items[k:], *items[:k]]


class Runner:
    def __init__(self, sizes: Sizes, clients: list[str], cpus: tuple[int | None, int | None]):
        self.sizes = sizes
        self.clients = clients
        self.server_cpu, self.client_cpu = cpus
        self.server: Server | None = None

    def worker_argv(self, scen: Scenario, mode: str, share_of: int = 1) -> list[str]:
        """The worker's arguments; with ``share_of`` = n it makes 1/n of the round's calls."""
        s = self.sizes
        assert self.server is not None
        if scen.kind == "stream":
            calls, conc = s.streams, s.stream_concurrency
        elif scen.kind == "open":
            calls, conc = s.open_streams, 1
        elif scen.models == s.models[1] and scen.op == "list_models":
            calls, conc = s.calls_large, s.concurrency
        elif scen.profile == "fleet":
            calls, conc = s.fleet_sweeps, 1
        else:
            calls, conc = s.calls, s.concurrency
        calls = -(-calls // share_of)  # rounded up: a round never does fewer calls
        pool = s.open_streams + 16 if scen.kind == "open" else conc
        fleet = scen.profile == "fleet"
        url = self.server.fleet_urls[0] if fleet else self.server.url(scen.profile)
        argv = [
            "--op",
            scen.op,
            "--mode",
            mode,
            "--base-url",
            url,
            "--pool-limit",
            str(pool),
            "--models",
            str(scen.models),
            "--events",
            str(s.events),
            "--calls",
            str(calls),
            "--min-seconds",
            str(s.min_seconds),
            "--concurrency",
            str(conc),
            "--warmup",
            str(s.warmup),
            "--open",
            str(s.open_streams),
            "--nodes",
            ",".join(self.server.fleet_urls) if fleet else "",
            "--fleet-concurrency",
            str(s.fleet_concurrency),
        ]
        if self.client_cpu is not None:
            argv += ["--cpu", str(self.client_cpu)]
        return argv

    def run_rounds(self, scen: Scenario, clients: list[str]) -> dict[str, Any]:
        """Interleaved rounds; with ``fresh_workers`` every round has new processes.

        Two processes of one client can differ by 10-25% (memory layout, hash
        seeds, the shared VM) while one process is steady from round to round.
        So in a full run every round starts ``workers`` fresh processes per
        client, each doing an equal share of the round's calls, and runs the
        shares client by client in turn (A B C, then B C A, ...): a round's
        figure is the sum over its processes, which averages that variation
        within the round, and the median over rounds deals with the rest.
        """
        out: dict[str, Any] = {c: {"rounds": []} for c in clients}
        procs = self.sizes.workers if self.sizes.fresh_workers else 1
        workers: dict[str, list[Worker]] = {}

        def drop(c: str, exc: WorkerError) -> None:
            out[c]["error"] = str(exc)
            for w in workers.pop(c, []):
                w.close()

        def start() -> None:
            argv = {c: self.worker_argv(scen, "rounds", procs) for c in clients}
            for c in clients:
                if "error" not in out[c]:
                    workers[c] = [Worker(c, argv[c]) for _ in range(procs)]
            for c in list(workers):  # every warm-up is done before anything is timed
                try:
                    for w in workers[c]:
                        w.answer("start")
                except WorkerError as exc:
                    drop(c, exc)

        def stop() -> None:
            for c in list(workers):
                for w in workers.pop(c):
                    w.close()

        try:
            for r in range(self.sizes.rounds):
                if r == 0 or self.sizes.fresh_workers:
                    stop()
                    start()
                shares: dict[str, list[dict[str, Any]]] = {c: [] for c in workers}
                for i in range(procs):
                    for c in rotated(clients, r + i):
                        if c not in workers:
                            continue
                        try:
                            shares[c].append(workers[c][i].run())
                        except WorkerError as exc:
                            drop(c, exc)
                for c, parts in shares.items():
                    if c in workers:
                        out[c]["rounds"].append(combined(parts))
                progress(f"  {scen.name}: round {r + 1}/{self.sizes.rounds}")
        finally:
            stop()
        return out

    def run_open(self, scen: Scenario, clients: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {c: {"rounds": []} for c in clients}
        for r in range(self.sizes.rounds):
            for c in rotated(clients, r):
                if "error" in out[c]:
                    continue
                w = Worker(c, self.worker_argv(scen, "open"))
                try:
                    out[c]["rounds"].append(w.answer("open streams"))
                except WorkerError as exc:
                    out[c]["error"] = str(exc)
                finally:
                    w.close()
                time.sleep(0.2)  # let the server notice the closed streams
            progress(f"  {scen.name}: round {r + 1}/{self.sizes.rounds}")
        return out

    def run_import(self, scen: Scenario, clients: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {c: {"rounds": [], "module": IMPORT_MODULES[c]} for c in clients}
        code = (
            "import time\n"
            "t0 = time.perf_counter(); c0 = time.process_time()\n"
            "import {mods}\n"
            "print(time.perf_counter() - t0, time.process_time() - c0)\n"
        )
        pin = ["taskset", "-c", str(self.client_cpu)] if self.client_cpu is not None else []
        if pin and not _has("taskset"):
            pin = []
        env = child_env()
        for c in clients:  # write the .pyc files before timing anything (child_env)
            subprocess.run(
                [sys.executable, "-c", "import " + IMPORT_MODULES[c]],
                cwd=SNAPSHOT.root,
                env=env,
                check=True,
            )
        for r in range(self.sizes.rounds):
            times: dict[str, list[tuple[float, float]]] = {c: [] for c in clients}
            for i in range(self.sizes.import_reps):
                for c in rotated(clients, r + i):
                    proc = subprocess.run(
                        [*pin, sys.executable, "-c", code.format(mods=IMPORT_MODULES[c])],
                        cwd=SNAPSHOT.root,
                        env=env,
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if proc.returncode != 0:
                        out[c]["error"] = proc.stderr.strip()[-500:]
                        continue
                    wall, cpu = (float(x) for x in proc.stdout.split())
                    times[c].append((wall, cpu))
            for c in clients:
                if times[c]:
                    walls = [t[0] for t in times[c]]
                    cpus = [t[1] for t in times[c]]
                    out[c]["rounds"].append(
                        {
                            "wall": statistics.median(walls),
                            "cpu": statistics.median(cpus),
                            "calls": len(walls),
                            "units": 1,
                            "samples": walls,
                        }
                    )
            progress(f"  {scen.name}: round {r + 1}/{self.sizes.rounds}")
        return out

    def run(self, scenarios: list[Scenario]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        needs_server = any(s.kind in ("calls", "stream", "open") for s in scenarios)
        if needs_server:
            fleet = any(s.profile == "fleet" for s in scenarios)
            self.server = Server(self.sizes, self.server_cpu, fleet)
        try:
            for scen in scenarios:
                clients = [c for c in scen.clients if c in self.clients]
                entry: dict[str, Any] = {
                    "kind": scen.kind,
                    "unit": scen.unit,
                    "description": scen.description,
                    "clients": {},
                }
                results[scen.name] = entry
                if scen.profile == "fleet" and SDK in clients and not fleet_available():
                    clients.remove(SDK)
                    entry["note"] = "tabby_async.fleet (TabbyFleet, NodeSpec) is not importable"
                    progress(f"{scen.name}: without tabby_async: {entry['note']}")
                progress(f"{scen.name}: {', '.join(clients)}")
                t0 = time.perf_counter()
                cpu0 = self.server.cpu_seconds() if self.server else 0.0
                if scen.kind == "open":
                    entry["clients"] = self.run_open(scen, clients)
                elif scen.kind == "import":
                    entry["clients"] = self.run_import(scen, clients)
                else:
                    entry["clients"] = self.run_rounds(scen, clients)
                entry["seconds"] = time.perf_counter() - t0
                if self.server:
                    entry["server_cpu_seconds"] = self.server.cpu_seconds() - cpu0
        finally:
            if self.server:
                self.server.stop()
        return results


def fleet_available() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "from tabby_async.fleet import NodeSpec, TabbyFleet"],
        cwd=SNAPSHOT.root,
        env=child_env(),
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def sdk_fingerprint(root: Path) -> str:
    """A hash of the SDK's source under ``root``."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((root / "tabby_async").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _has(tool: str) -> bool:
    from shutil import which

    return which(tool) is not None


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pick_cpus() -> tuple[int | None, int | None]:
    """Server on one CPU, clients on another (when there are two to use)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def machine_git() -> str:
    git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", *GIT_WATCHED],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return git + ("-dirty" if dirty else "")


def machine(cpus: tuple[int | None, int | None], git: str) -> dict[str, Any]:
    from importlib import metadata

    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in (
        "tabby-async",
        "aiohttp",
        "msgspec",
        "aiohttp-sse-client",
        "yarl",
        "httpx",
        "httpx-sse",
        "pydantic",
        "pydantic-core",
        "openai",
        "httpx2",
        "ollama",
        "matplotlib",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "server_cpu": cpus[0],
        "client_cpu": cpus[1],
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": versions,
        "git": git,
    }


def the_command(argv: Sequence[str]) -> str:
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    prefix = "python benchmarks/run.py" if script == "run.py" else "python -m benchmarks"
    return " ".join([prefix, *(shlex.quote(a) for a in argv)])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark tabby_async against aiohttp, msgspec, httpx, openai and ollama.",
    )
    p.add_argument("--quick", action="store_true", help="about a minute; not for deciding")
    p.add_argument("--rounds", type=int, help="interleaved rounds (targets need >= 9)")
    p.add_argument(
        "--clients",
        default=",".join(config.ALL_CLIENTS),
        help="comma-separated, from: " + ", ".join(config.ALL_CLIENTS),
    )
    p.add_argument("--scenarios", default="", help="comma-separated names or prefixes")
    p.add_argument("--models", help="the two K values, e.g. 50,1000")
    p.add_argument("--calls", type=int, help="R for list (small K), get and get_props")
    p.add_argument("--calls-large", type=int, help="R for list (large K)")
    p.add_argument("--concurrency", type=int, help="C for the call scenarios")
    p.add_argument("--streams", type=int, help="load streams per round")
    p.add_argument("--stream-concurrency", type=int, help="load streams at once")
    p.add_argument("--events", type=int, help="M events per load stream")
    p.add_argument("--open-streams", type=int, help="streams held open at once")
    p.add_argument("--import-reps", type=int, help="fresh interpreters per module per round")
    p.add_argument("--fleet-nodes", type=int, help="nodes in the fleet status sweep")
    p.add_argument("--fleet-sweeps", type=int, help="fleet sweeps per round")
    p.add_argument("--fleet-concurrency", type=int, help="nodes probed at once")
    p.add_argument("--warmup", type=int, help="calls before each timed round (default C)")
    p.add_argument(
        "--workers",
        type=int,
        help="client processes per round, each doing an equal share (default 3; 1 with --quick)",
    )
    p.add_argument(
        "--min-seconds",
        type=float,
        help="least CPU seconds of each process's timed section (default 0.5; 0 with --quick)",
    )
    p.add_argument(
        "--fresh-workers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="new client processes every round (default: yes for full runs, no for --quick)",
    )
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: redo the figures, chart and README from a results JSON",
    )
    p.add_argument("--name", help="results file stem (default: full or quick)")
    p.add_argument("--no-chart", action="store_true", help="write no PNG")
    p.add_argument(
        "--readme",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite benchmarks/README.md (default: yes for full runs, no for --quick)",
    )
    return p.parse_args(argv)


def build_sizes(args: argparse.Namespace) -> Sizes:
    sizes = replace(config.QUICK if args.quick else config.FULL)
    overrides = {
        "rounds": args.rounds,
        "calls": args.calls,
        "calls_large": args.calls_large,
        "concurrency": args.concurrency,
        "streams": args.streams,
        "stream_concurrency": args.stream_concurrency,
        "events": args.events,
        "open_streams": args.open_streams,
        "import_reps": args.import_reps,
        "warmup": args.warmup,
        "fleet_nodes": args.fleet_nodes,
        "fleet_sweeps": args.fleet_sweeps,
        "fleet_concurrency": args.fleet_concurrency,
        "workers": args.workers,
    }
    for key, value in overrides.items():
        if value is not None:
            if value < (0 if key == "warmup" else 1):
                raise SystemExit(f"--{key.replace('_', '-')} must be positive")
            setattr(sizes, key, value)
    if args.fresh_workers is not None:
        sizes.fresh_workers = args.fresh_workers
    if args.min_seconds is not None:
        if args.min_seconds < 0:
            raise SystemExit("--min-seconds must be 0 or more")
        sizes.min_seconds = args.min_seconds
    if args.models:
        ks = tuple(int(x) for x in args.models.split(","))
        if len(ks) != 2 or min(ks) < 1 or ks[0] == ks[1]:
            raise SystemExit("--models takes two different K values, e.g. 50,1000")
        sizes.models = (ks[0], ks[1])
    return sizes


def check_clients(clients: list[str]) -> None:
    unknown = [c for c in clients if c not in config.ALL_CLIENTS]
    if unknown:
        raise SystemExit(f"unknown clients: {', '.join(unknown)}")
    if SDK in clients:
        probe = subprocess.run(
            [sys.executable, "-c", "from tabby_async import AsyncTabbyClient, ModelLoadRequest"],
            cwd=SNAPSHOT.root,
            env=child_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            raise SystemExit(
                "tabby_async does not export AsyncTabbyClient/ModelLoadRequest yet "
                f"({probe.stderr.strip().splitlines()[-1:]}); "
                f"run without it: --clients {','.join(c for c in clients if c != SDK)}"
            )


def count_otel_cost(
    sizes: Sizes, clients: list[str], results: dict[str, Any]
) -> dict[str, Any] | None:
    """``benchmarks.otel_cost``'s exact counts, when the run measured the OpenTelemetry rows.

    The CPU ratio of two processes moves by more than the 3% to be shown
    (see benchmarks/README.md); the bytecode count does not, so it decides.
    """
    if SDK not in clients or SDK_OTEL not in clients:
        return None
    if not any(SDK_OTEL in entry.get("clients", {}) for entry in results.values()):
        return None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tabby-otel-cost-") as out:
        progress("otel_cost: bytecodes per call, opentelemetry imported vs absent")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.otel_cost",
                "--calls",
                str(min(20, sizes.calls)),
                "--events",
                str(sizes.events),
                "--models",
                ",".join(str(k) for k in sizes.models),
                "--out-dir",
                out,
            ],
            cwd=SNAPSHOT.root,
            env=child_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        path = Path(out) / "otel_cost.json"
        if proc.returncode not in (0, 1) or not path.exists():  # 1: a row over its limit
            progress(f"otel_cost failed:\n{proc.stderr[-2000:]}")
            return None
        counts: dict[str, Any] = json.loads(path.read_text())
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.from_json:
        return publish(args, json.loads(args.from_json.read_text()), rerun=True)
    sizes = build_sizes(args)
    clients = [c for c in args.clients.split(",") if c]
    wanted = [w for w in args.scenarios.split(",") if w]
    scens = [
        s
        for s in config.scenarios(sizes)
        if not wanted or any(s.name == w or s.name.startswith(w) for w in wanted)
    ]
    if not scens:
        raise SystemExit("no scenario matches --scenarios")
    cpus = pick_cpus()
    name = args.name or ("quick" if args.quick else "full")
    started = time.time()
    git_state = machine_git()
    SNAPSHOT.take()
    measured = sdk_fingerprint(SNAPSHOT.root)
    progress(f"benchmarks: {name}, {sizes.rounds} round(s), clients {', '.join(clients)}")
    try:
        check_clients(clients)
        results = Runner(sizes, clients, cpus).run(scens)
        otel_cost = count_otel_cost(sizes, clients, results)
    finally:
        SNAPSHOT.drop()
    doc: dict[str, Any] = {
        "schema": 1,
        "name": name,
        "command": the_command(argv),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(cpus, git_state),
        "sizes": sizes.as_dict(),
        "clients": clients,
        "labels": config.CLIENT_LABELS,
        "scenarios": results,
        "sdk_source": {"measured": measured, "tree_at_end": sdk_fingerprint(ROOT)},
    }
    if otel_cost is not None:
        doc["otel_cost"] = otel_cost
    if measured != doc["sdk_source"]["tree_at_end"]:
        progress("note: tabby_async changed in the tree during the run; the run used its snapshot")
    return publish(args, doc, rerun=False)


def publish(args: argparse.Namespace, doc: dict[str, Any], *, rerun: bool) -> int:
    """Figures, targets, the results JSON, the chart and the README section."""
    report.summarize(doc)
    doc["targets"] = report.targets(doc)
    name = doc["name"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.out_dir / f"{name}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    tmp.replace(json_path)
    chart: Path | None = None
    if not args.no_chart:
        chart = report.chart(doc, args.out_dir / f"{name}.png")
    quick = doc["sizes"]["rounds"] < report.MIN_ROUNDS_TO_DECIDE if rerun else args.quick
    write_readme = args.readme if args.readme is not None else not quick
    if write_readme:
        link = os.path.relpath(chart, README.parent) if chart else None
        report.update_readme(README, report.markdown(doc, link))
    print(report.markdown(doc, None))
    progress(f"results: {json_path}" + (f", chart: {chart}" if chart else ""))
    errors = [
        f"{s}/{c}: {v['error']}"
        for s, e in doc["scenarios"].items()
        for c, v in e.get("clients", {}).items()
        if "error" in v
    ]
    if errors:
        progress("errors:\n  " + "\n  ".join(errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
