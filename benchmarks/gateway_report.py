"""The gateway benchmark's figures: ratios of the rounds, the capacity of one core, the table.

Each row of the table is a figure, what was measured, its target and PASS or
FAIL (``-`` for a figure that is only reported).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

PATHS = ("direct", "proxy", "gateway")


def ratio_row(per_round: list[dict[str, Any]], key: str, ratio: bool = True) -> dict[str, Any]:
    """Medians of a figure per path, and of the per-round ratios gateway/proxy."""
    out: dict[str, Any] = {}
    for path in PATHS:
        out[path] = statistics.median(r[path][key] for r in per_round)
    if not ratio:
        return out
    out["ratio"] = statistics.median(r["gateway"][key] / r["proxy"][key] for r in per_round)
    out["ratio_rounds"] = [round(r["gateway"][key] / r["proxy"][key], 3) for r in per_round]
    return out


def capacity(tp: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Issue 20 §8: what one core of the gateway process passes on, from its own CPU costs."""
    stream = ratio_row(tp["stream"], "us_per_unit")
    whole = ratio_row(tp["whole"], "us_per_unit")
    share = statistics.median(r["gateway"]["cpu_share"] for r in tp["stream"])
    events_per_core = 1e6 / stream["gateway"]
    per_node = args.node_tokens_per_s
    return {
        "events_per_s_per_core": events_per_core,
        "streams_per_s_per_core": events_per_core / (args.tokens + 2),
        "whole_requests_per_s_per_core": 1e6 / whole["gateway"],
        "gateway_cpu_share_in_stream_run": share,
        "node_tokens_per_s_assumed": per_node,
        "nodes_per_core": events_per_core / per_node,
    }


def targets(doc: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    s, w, lat, mem, swap = (doc[k] for k in ("stream", "whole", "latency", "memory", "swap"))
    cap = doc["capacity"]
    sf = ratio_row(doc["rounds"]["stream"], "faults_per_unit", ratio=False)
    wf = ratio_row(doc["rounds"]["whole"], "faults_per_unit", ratio=False)
    rows = [
        {
            "figure": "CPU per streamed event, gateway vs hand-written proxy",
            "value": f"{s['ratio']:.2f}x ({s['gateway']:.1f} vs {s['proxy']:.1f} us; "
            f"node {s['direct']:.1f} us; page faults per event {sf['gateway']:.2f} vs "
            f"{sf['proxy']:.2f})",
            "target": "<= 1.25x",
            "ok": s["ratio"] <= 1.25,
        },
        {
            "figure": "CPU per non-streamed request, gateway vs hand-written proxy",
            "value": f"{w['ratio']:.2f}x ({w['gateway']:.0f} vs {w['proxy']:.0f} us; "
            f"node {w['direct']:.0f} us; page faults per request {wf['gateway']:.1f} vs "
            f"{wf['proxy']:.1f})",
            "target": "<= 1.25x",
            "ok": w["ratio"] <= 1.25,
        },
    ]
    for q in ("p50", "p99"):
        d, p, g = (lat[x][f"{q}_ms"] for x in PATHS)
        rows.append(
            {
                "figure": f"time to first byte {q}: direct / proxy / gateway",
                "value": f"{d:.2f} / {p:.2f} / {g:.2f} ms (gateway adds {g - d:+.2f} ms "
                f"over direct, {g - p:+.2f} ms over the proxy)",
                "target": "reported",
                "ok": None,
            }
        )
    rows.append(
        {
            "figure": f"memory per open stream, {mem['streams']:,} open (gateway)",
            "value": f"{mem['gateway']['kib_per_stream']:.1f} KiB "
            f"(proxy {mem['proxy']['kib_per_stream']:.1f} KiB)",
            "target": "<= 64 KiB",
            "ok": mem["gateway"]["kib_per_stream"] <= 64,
        }
    )
    rows.append(
        {
            "figure": f"swap: {swap['requests']} requests, 3 models, 2 nodes",
            "value": f"{swap['failed']} failed, {swap['wrong_model']} wrong-model; "
            f"{swap['swaps_total']} swaps, queue wait mean "
            f"{swap['queue_wait_mean_ms']:.0f} ms over {swap['queued']} waits",
            "target": "0 failed, 0 wrong",
            "ok": swap["failed"] == 0 and swap["wrong_model"] == 0,
        }
    )
    held = swap["held"]
    probe = swap["probe"]
    rows.append(
        {
            "figure": "swap: a loaded model's requests never wait behind another node's swap",
            "value": f"probe: {probe['answered']}/{probe['sent']} answered while the "
            f"other node was still loading ({probe['slowest_ms']:.0f} ms "
            f"slowest, load {probe['load_ms']:.0f} ms); random run: "
            f"{held['overlapping']} such requests, slowest head "
            f"{held['overlapping_max_ms']:.0f} ms",
            "target": f"all, and < {args.load_seconds * 500:.0f} ms",
            "ok": probe["ok"] and held["ok"],
        }
    )
    rows.append(
        {
            "figure": "one gateway core (§8): events/s, streams/s, whole requests/s",
            "value": f"{cap['events_per_s_per_core']:,.0f} / "
            f"{cap['streams_per_s_per_core']:,.0f} ({args.tokens} tokens) / "
            f"{cap['whole_requests_per_s_per_core']:,.0f}; "
            f"= {cap['nodes_per_core']:,.0f} nodes at "
            f"{cap['node_tokens_per_s_assumed']:,} tokens/s each",
            "target": "reported",
            "ok": None,
        }
    )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| figure | measured | target | result |", "|---|---|---|---|"]
    for r in rows:
        verdict = "-" if r["ok"] is None else ("PASS" if r["ok"] else "FAIL")
        lines.append(f"| {r['figure']} | {r['value']} | {r['target']} | {verdict} |")
    return "\n".join(lines)
