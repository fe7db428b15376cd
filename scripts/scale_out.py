#!/usr/bin/env python3
"""Scale-out on one machine: the sleep workload on loopback Ray clusters of 1, 2, 3... worker nodes.

    python scripts/scale_out.py --nodes 1,2,3,4 --tasks 40 --task-time 0.2

For each node count, a cluster (a CPU-less head plus that many 1-CPU worker nodes, every node on
127.0.0.1, see autoresearch_ray/local_cluster.py) is started, the simulation joins it by address
(as ``distributed_orchestrator_sim.py --address`` does on a real cluster), and the figures are
printed as a Markdown table next to the limit ``d + ceil(n/w)·t``, then as JSON.

Sleep agents use no CPU, so on two cores this measures what the runtime adds per node, not what a
CPU-bound agent would gain: the point is that throughput grows with nodes and by how much.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from autoresearch_ray.local_cluster import loopback_cluster
from autoresearch_ray.simulation import SimParams, run_batch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", default="1,2,3,4", help="comma-separated worker-node counts")
    p.add_argument("--tasks", type=int, default=40)
    p.add_argument("--task-time", type=float, default=0.2)
    p.add_argument("--network-latency", type=float, default=0.0)
    p.add_argument("--repeat", type=int, default=3)
    ns = p.parse_args(argv)
    try:
        counts = [int(n) for n in ns.nodes.split(",") if n]
    except ValueError:
        p.error(f"--nodes takes comma-separated integers, not {ns.nodes!r}")
    if not counts or min(counts) < 1:
        p.error("--nodes needs worker-node counts of at least 1")
    rows: list[dict[str, Any]] = []
    for nodes in counts:
        print(f"{nodes} worker node(s) ...", file=sys.stderr)
        with loopback_cluster(worker_nodes=nodes) as cluster:
            params = SimParams(
                workers=nodes,
                tasks=ns.tasks,
                task_time=ns.task_time,
                network_latency=ns.network_latency,
                address=cluster.address,
                repeat=ns.repeat,
            )
            result = run_batch(params)
        rows.append(
            {
                "nodes": nodes,
                "throughput": result["throughput"],
                "limit": result["limit"]["throughput"],
                "share": result["share_of_limit"]["throughput"],
                "avg_latency_s": result["avg_latency_s"],
            }
        )
    print("| worker nodes | tasks/s | limit | share of limit | mean latency (s) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['nodes']} | {r['throughput']} | {r['limit']} | {r['share']} "
            f"| {r['avg_latency_s']} |"
        )
    print(json.dumps({"rows": rows, "tasks": ns.tasks, "task_time": ns.task_time}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
