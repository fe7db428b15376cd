"""The orchestrator simulation: real executors running ``sleep`` agents, measured against limits.

A *batch* is ``tasks`` sleep agents of ``task_time`` seconds on ``workers`` workers, each held
``network_latency`` seconds in flight before it reaches the executor (a delay that occupies no
worker, so dispatch overlaps execution). Its limit is a makespan of ``d + ceil(n/w)·t`` and a mean
latency of ``d + t·(mean queue position)``. An *open-loop* workload (``--model``) has Poisson
arrivals and exponential task times, the M/M/c queue, whose Erlang-C prediction sits next to the
measurement. A batch of fixed sleeps is not M/M/c: its limit above is exact, the model is not.
"""

from __future__ import annotations

import math
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import ConfigModel, load_config
from .executors import get_executor
from .executors.base import BaseExecutor
from .models import QueryResponse
from .monitor import ResourceMonitor


@dataclass(frozen=True)
class SimParams:
    """One simulation's parameters."""

    workers: int = 2
    tasks: int = 20
    network_latency: float = 0.01
    task_time: float = 0.01
    executor: str = "ray"
    broker: str | None = None
    broker_url: str | None = None
    address: str | None = None
    repeat: int = 3
    seed: int = 0

    @property
    def message_broker(self) -> str:
        """The broker, defaulting to the executor's native one."""
        return self.broker or ("ray" if self.executor == "ray" else "memory")


def batch_limit(tasks: int, workers: int, latency: float, task_time: float) -> dict[str, float]:
    """The best any scheduler can do for a batch: perfect packing, zero overhead."""
    rounds = math.ceil(tasks / workers)
    makespan = latency + rounds * task_time
    # Task i (0-based) finishes in round i // workers + 1.
    mean_position = sum(i // workers + 1 for i in range(tasks)) / tasks
    return {
        "makespan_s": makespan,
        "throughput": tasks / makespan,
        "avg_latency_s": latency + task_time * mean_position,
    }


def mmc_prediction(
    arrival_rate: float, task_time: float, workers: int, latency: float
) -> dict[str, float]:
    """Erlang-C steady state of M/M/c (Poisson arrivals, exponential service of mean task_time),
    plus the in-flight latency. Raises ValueError when the queue is unstable (rho >= 1)."""
    mu = 1.0 / task_time
    c = workers
    a = arrival_rate / mu
    rho = a / c
    if rho >= 1:
        raise ValueError(
            f"unstable: arrival rate {arrival_rate}/s >= capacity {c * mu:.1f}/s (rho={rho:.2f})"
        )
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / (math.factorial(c) * (1 - rho))
    p_wait = tail / (head + tail)
    wq = p_wait / (c * mu - arrival_rate)
    return {
        "utilization": rho,
        "p_wait": p_wait,
        "mean_wait_s": wq,
        "avg_latency_s": latency + wq + task_time,
        "throughput": arrival_rate,
    }


def sim_config(params: SimParams, storage: Path, task_times: Sequence[float]) -> ConfigModel:
    """A one-loop config with one sleep agent per task."""
    agents = ", ".join(
        f"{{name: t{i:05d}, type: sleep, params: {{task_time: {tt!r}}}}}"
        for i, tt in enumerate(task_times)
    )
    overrides = [
        f"storage.path={storage}",
        "loops=1",
        f"agents=[{agents}]",
        f"executor={params.executor}",
        f"message_broker={params.message_broker}",
        f"num_cpus={params.workers}",
        "agent_num_cpus=1",
        "namespace=sim",
    ]
    if params.broker_url:
        overrides.append(f"broker_url={params.broker_url}")
    if params.address:
        overrides.append(f"address={params.address}")
    return load_config(None, overrides)


def _latencies(response: QueryResponse, latency: float) -> tuple[list[float], float]:
    """Per-task latency (driver-observed completion minus dispatch start) and the makespan."""
    starts = [r.submitted_at - latency for r in response.records]
    ends = [r.received_at for r in response.records]
    return [e - s for s, e in zip(starts, ends, strict=True)], max(ends) - min(starts)


def _measure(
    executor: BaseExecutor, params: SimParams, offsets: list[float], repeat: int
) -> dict[str, Any]:
    latencies: list[float] = []
    throughputs: list[float] = []
    monitor = ResourceMonitor(interval=0.05)
    with monitor:
        for i in range(repeat):
            response = executor.run_query(
                "simulation", run_id=f"sim-{time.time_ns()}-{i}", dispatch_offsets=offsets
            )
            if response.metrics.agent_errors:
                raise RuntimeError(f"simulation tasks failed: {response.errors[0].error}")
            lat, makespan = _latencies(response, params.network_latency)
            latencies.extend(lat)
            throughputs.append(len(lat) / makespan)
    report = monitor.report()
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "avg_latency_s": statistics.fmean(latencies),
        "throughput": statistics.fmean(throughputs),
        "cpu_percent": report.cpu_percent_mean,
        "memory_mb": report.memory_mb_mean,
        "p50_latency_s": quantiles[49],
        "p95_latency_s": quantiles[94],
        "throughput_runs": throughputs,
        "resources": report.as_dict(),
    }


def _warm_and_measure(
    params: SimParams,
    task_times: list[float],
    offsets: list[float],
    executor: BaseExecutor | None,
) -> dict[str, Any]:
    """One warm-up run, then ``params.repeat`` measured ones, on the given or a new executor."""
    with tempfile.TemporaryDirectory() as tmp:
        own = executor is None
        ex = executor or get_executor(sim_config(params, Path(tmp) / "sim.db", task_times))
        try:
            ex.start()
            # Warm-up: worker processes start and import, the actors settle; not measured.
            ex.run_query("warm-up", run_id=f"warm-{time.time_ns()}", dispatch_offsets=offsets)
            return _measure(ex, params, offsets, params.repeat)
        finally:
            if own:
                ex.shutdown()


def run_batch(params: SimParams, executor: BaseExecutor | None = None) -> dict[str, Any]:
    """Measure the batch workload; returns the seed's keys first, then detail and the limit."""
    task_times = [params.task_time] * params.tasks
    offsets = [params.network_latency] * params.tasks
    measured = _warm_and_measure(params, task_times, offsets, executor)
    limit = batch_limit(params.tasks, params.workers, params.network_latency, params.task_time)
    out: dict[str, Any] = {
        k: _round(measured[k])
        for k in (
            "avg_latency_s",
            "throughput",
            "cpu_percent",
            "memory_mb",
            "p50_latency_s",
            "p95_latency_s",
        )
    }
    out["config"] = {
        **asdict(params),
        "message_broker": params.message_broker,
        "broker_url": None if not params.broker_url else "(set)",
    }
    out["limit"] = {k: _round(v) for k, v in limit.items()}
    out["share_of_limit"] = {
        "throughput": _round(measured["throughput"] / limit["throughput"]),
        "latency": _round(limit["avg_latency_s"] / measured["avg_latency_s"]),
    }
    out["throughput_runs"] = [_round(t) for t in measured["throughput_runs"]]
    out["resources"] = measured["resources"]
    return out


def run_open_loop(
    params: SimParams, arrival_rate: float, executor: BaseExecutor | None = None
) -> dict[str, Any]:
    """Poisson arrivals at ``arrival_rate``/s, exponential task times: measured next to M/M/c."""
    model = mmc_prediction(arrival_rate, params.task_time, params.workers, params.network_latency)
    rng = random.Random(params.seed)
    task_times = [rng.expovariate(1.0 / params.task_time) for _ in range(params.tasks)]
    arrivals, clock = [], 0.0
    for _ in range(params.tasks):
        clock += rng.expovariate(arrival_rate)
        arrivals.append(clock)
    offsets = [a + params.network_latency for a in arrivals]
    measured = _warm_and_measure(params, task_times, offsets, executor)
    return {
        "arrival_rate": arrival_rate,
        "measured": {
            k: _round(measured[k])
            for k in ("avg_latency_s", "p50_latency_s", "p95_latency_s", "throughput")
        },
        "mmc_model": {k: _round(v) for k, v in model.items()},
        "latency_ratio_measured_to_model": _round(
            measured["avg_latency_s"] / model["avg_latency_s"]
        ),
    }


def _round(value: float) -> float:
    return round(value, 4 if abs(value) < 10 else 2)


def write_sweep_svg(rows: list[dict[str, Any]], path: Path) -> None:
    """Two small line charts (throughput, mean latency against workers): measured vs limit."""
    width, height, pad = 360, 260, 48
    panels = [
        ("throughput (tasks/s)", "throughput", "limit_throughput"),
        ("mean latency (s)", "avg_latency_s", "limit_avg_latency_s"),
    ]
    workers = [r["workers"] for r in rows]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{2 * width}" height="{height}" fill="white"/>',
    ]
    for index, (title, measured_key, limit_key) in enumerate(panels):
        x0 = index * width
        values = [r[measured_key] for r in rows] + [r[limit_key] for r in rows]
        top = max(values) * 1.1 or 1.0

        def point(w: float, v: float, x0: int = x0, top: float = top) -> str:
            span = (max(workers) - min(workers)) or 1
            x = x0 + pad + (w - min(workers)) / span * (width - 2 * pad)
            y = height - pad - v / top * (height - 2 * pad)
            return f"{x:.1f},{y:.1f}"

        parts.append(f'<text x="{x0 + width / 2}" y="18" text-anchor="middle">{title}</text>')
        parts.append(
            f'<line x1="{x0 + pad}" y1="{height - pad}" x2="{x0 + width - pad}" '
            f'y2="{height - pad}" stroke="black"/>'
            f'<line x1="{x0 + pad}" y1="{pad}" x2="{x0 + pad}" y2="{height - pad}" stroke="black"/>'
        )
        for w in workers:
            x, _ = point(w, 0).split(",")
            parts.append(f'<text x="{x}" y="{height - pad + 16}" text-anchor="middle">{w}</text>')
        parts.append(
            f'<text x="{x0 + pad - 6}" y="{pad}" text-anchor="end">{top:.3g}</text>'
            f'<text x="{x0 + width / 2}" y="{height - 8}" text-anchor="middle">workers</text>'
        )
        for key, colour, dash in ((measured_key, "#1f77b4", ""), (limit_key, "#d62728", "4 3")):
            pts = " ".join(point(r["workers"], r[key]) for r in rows)
            parts.append(
                f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2" '
                f'stroke-dasharray="{dash}"/>'
            )
        parts.append(
            f'<text x="{x0 + width - pad}" y="{pad - 8}" text-anchor="end" fill="#1f77b4">'
            "measured</text>"
            f'<text x="{x0 + width - pad}" y="{pad + 6}" text-anchor="end" fill="#d62728">'
            "limit</text>"
        )
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n")
