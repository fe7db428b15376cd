#!/usr/bin/env python3
"""Orchestrator simulation: run the real executors with sleep agents and print the figures.

    python scripts/distributed_orchestrator_sim.py --workers 2 --tasks 20 \
        --network-latency 0.01 --task-time 0.01

prints the seed's keys (avg_latency_s, throughput, cpu_percent, memory_mb) first, then p50/p95
latency, the configuration, the limit for the same parameters and the measured share of it.
``--model`` adds the M/M/c prediction for an open arrival stream next to a real open-loop run;
``--sweep-workers 1,2,4,8`` writes a table and an SVG plot against the number of workers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autoresearch_ray.simulation import (
    SimParams,
    batch_limit,
    run_batch,
    run_open_loop,
    write_sweep_svg,
)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--network-latency", type=float, default=0.01, help="in-flight delay, seconds")
    p.add_argument("--task-time", type=float, default=0.01, help="work per task, seconds")
    p.add_argument("--executor", choices=["ray", "process"], default="ray")
    p.add_argument("--broker", choices=["memory", "redis", "ray"], default=None)
    p.add_argument("--broker-url", default=None, help="redis:// URL for --broker redis")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: a local Ray)")
    p.add_argument("--repeat", type=int, default=3, help="measured runs after one warm-up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", action="store_true", help="also run and model an open-loop stream")
    p.add_argument(
        "--arrival-rate",
        type=float,
        default=None,
        help="open-loop arrivals per second (default: 70%% of capacity)",
    )
    p.add_argument("--sweep-workers", default=None, help="comma-separated worker counts")
    p.add_argument("--out", default="sim_results", help="directory for the sweep table and plot")
    ns = p.parse_args(argv)
    for name in ("workers", "tasks", "repeat"):
        if getattr(ns, name) < 1:
            p.error(f"--{name} must be >= 1")
    if ns.task_time <= 0 or ns.network_latency < 0:
        p.error("--task-time must be > 0 and --network-latency >= 0")
    return ns


def main(argv: list[str] | None = None) -> int:
    ns = parse(argv)
    params = SimParams(
        workers=ns.workers,
        tasks=ns.tasks,
        network_latency=ns.network_latency,
        task_time=ns.task_time,
        executor=ns.executor,
        broker=ns.broker,
        broker_url=ns.broker_url,
        address=ns.address,
        repeat=ns.repeat,
        seed=ns.seed,
    )
    if ns.sweep_workers:
        return sweep(params, [int(w) for w in ns.sweep_workers.split(",")], Path(ns.out))
    result = run_batch(params)
    if ns.model:
        rate = ns.arrival_rate or 0.7 * params.workers / params.task_time
        result["open_loop"] = run_open_loop(params, rate)
    print(json.dumps(result, indent=2))
    return 0


def sweep(base: SimParams, workers: list[int], out: Path) -> int:
    rows = []
    for w in workers:
        params = SimParams(**{**base.__dict__, "workers": w})
        r = run_batch(params)
        limit = batch_limit(params.tasks, w, params.network_latency, params.task_time)
        rows.append(
            {
                "workers": w,
                "throughput": r["throughput"],
                "limit_throughput": limit["throughput"],
                "share": r["share_of_limit"]["throughput"],
                "avg_latency_s": r["avg_latency_s"],
                "limit_avg_latency_s": limit["avg_latency_s"],
                "p95_latency_s": r["p95_latency_s"],
                "cpu_percent": r["cpu_percent"],
                "memory_mb": r["memory_mb"],
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    header = "| " + " | ".join(rows[0]) + " |"
    lines = [header, "|" + "---|" * len(rows[0])]
    lines += [
        "| "
        + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values())
        + " |"
        for row in rows
    ]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    (out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_sweep_svg(rows, out / "sweep.svg")
    print("\n".join(lines))
    print(f"wrote {out / 'sweep.md'}, {out / 'sweep.json'} and {out / 'sweep.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
