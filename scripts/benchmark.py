#!/usr/bin/env python3
"""Benchmarks: each figure of the runtime next to a raw baseline measured in the same run.

    python scripts/benchmark.py            # every row (about three minutes on two cores)
    python scripts/benchmark.py --quick    # smaller sizes, for a smoke run
    python scripts/benchmark.py --only claims_redis,scale

Prints one JSON object: ``rows``, each with the figure, its baseline, their ratio and the target.
Machines here are shared and noisy, so ratios to a baseline of the same run are what to compare.
Redis comes from ``--redis-url`` or ``REDIS_URL`` (default redis://127.0.0.1:6379/0); its rows
are skipped, with the reason, when it cannot be reached.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoresearch_ray.brokers import MessageBroker, get_message_broker
from autoresearch_ray.claim_store import (
    _INSERT_CLAIM,
    CACHE_KIB,
    RECENT_LIMIT,
    SCHEMA,
    ClaimStore,
)
from autoresearch_ray.config import load_config
from autoresearch_ray.errors import BrokerUnavailable
from autoresearch_ray.executors import get_executor
from autoresearch_ray.hosting import Host, RayHost, ThreadHost, resolve
from autoresearch_ray.messages import PersistClaim
from autoresearch_ray.models import Claim, ClaimDraft, Source, bind_claim
from autoresearch_ray.monitor import ResourceMonitor
from autoresearch_ray.simulation import SimParams, run_batch

Row = dict[str, Any]


def row(
    figure: str,
    value: float,
    unit: str,
    baseline: str,
    base_value: float | None,
    target: str,
    meets: bool | None,
    **extra: Any,
) -> Row:
    ratio = None if not base_value else round(value / base_value, 3)
    return {
        "figure": figure,
        "value": round(value, 4),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": None if base_value is None else round(base_value, 4),
        "ratio": ratio,
        "target": target,
        "meets_target": meets,
        **extra,
    }


#: A Ray cluster to join (``--address``); None starts a private local Ray for each benchmark.
ADDRESS: str | None = None


def _start_ray() -> None:
    """Join ``ADDRESS``, or start a private local Ray on loopback as the executors do."""
    import ray

    if ADDRESS:
        ray.init(address=ADDRESS, logging_level="warning")
        return
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level="warning",
    )


def _noop() -> None:
    return None


def make_claims(n: int, run: str = "bench") -> list[PersistClaim]:
    return [
        PersistClaim(
            claim=bind_claim(
                run,
                i // 1000,
                "agent",
                ClaimDraft(
                    content=f"claim {i} about leases and acknowledgements",
                    sources=(Source(ref=f"synthetic://agent/{i}"),),
                    score=0.5,
                ),
            )
        )
        for i in range(n)
    ]


# -- seed simulation -------------------------------------------------------------------------


def bench_seed_sim(quick: bool) -> list[Row]:
    r = run_batch(SimParams(executor="ray", repeat=3 if quick else 5, address=ADDRESS))
    share_t, share_l = r["share_of_limit"]["throughput"], r["share_of_limit"]["latency"]
    return [
        row(
            "seed simulation throughput, ray executor",
            r["throughput"],
            "tasks/s",
            "batch limit",
            r["limit"]["throughput"],
            ">= 0.95 of limit (>= 173 tasks/s)",
            share_t >= 0.95,
            p95_latency_s=r["p95_latency_s"],
        ),
        row(
            "seed simulation mean latency, ray executor",
            r["avg_latency_s"],
            "s",
            "batch limit",
            r["limit"]["avg_latency_s"],
            "<= 0.068 s (limit/measured >= 0.95)",
            share_l >= 0.95,
        ),
    ]


# -- agent executions per second ---------------------------------------------------------------


def _noop_config(tmp: Path, executor: str, loops: int, agents: int) -> Any:
    specs = ", ".join(f"{{name: n{i:04d}, type: noop}}" for i in range(agents))
    broker = "ray" if executor == "ray" else "memory"
    return load_config(
        None,
        [
            f"storage.path={tmp / 'agents.db'}",
            f"loops={loops}",
            f"agents=[{specs}]",
            f"executor={executor}",
            f"message_broker={broker}",
            "num_cpus=2",
        ],
    )


def _ours_executions_per_s(executor: str, loops: int, agents: int) -> float:
    with (
        tempfile.TemporaryDirectory() as tmp,
        get_executor(_noop_config(Path(tmp), executor, loops, agents)) as ex,
    ):
        ex.run_query("warm-up")
        started = time.perf_counter()
        response = ex.run_query("bench")
        elapsed = time.perf_counter() - started
    assert response.metrics.agent_executions == loops * agents
    return loops * agents / elapsed


def _raw_ray_per_s(loops: int, agents: int) -> float:
    import ray

    task = ray.remote(num_cpus=1)(_noop)
    ray.get([task.remote() for _ in range(agents)])
    started = time.perf_counter()
    for _ in range(loops):
        pending = [task.remote() for _ in range(agents)]
        while pending:  # the same shape: take results as they complete
            ready, pending = ray.wait(pending, num_returns=1)
            ray.get(ready)
    return loops * agents / (time.perf_counter() - started)


def _raw_pool_per_s(loops: int, agents: int) -> float:
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_noop_arg, range(4)))
        started = time.perf_counter()
        for _ in range(loops):
            for future in cf.as_completed([pool.submit(_noop) for _ in range(agents)]):
                future.result()
        return loops * agents / (time.perf_counter() - started)


def _noop_arg(_: int) -> None:
    return None


def bench_agents_ray(quick: bool) -> list[Row]:
    import ray

    loops, agents = (3, 100) if quick else (5, 200)
    _start_ray()
    try:
        raw = _raw_ray_per_s(loops, agents)
        ours = _ours_executions_per_s("ray", loops, agents)
    finally:
        ray.shutdown()
    return [
        row(
            "agent executions/s, RayExecutor, noop agents",
            ours,
            "executions/s",
            f"raw async Ray tasks, {loops} loops x {agents}",
            raw,
            ">= 0.9 of raw",
            ours / raw >= 0.9,
        )
    ]


def bench_agents_process(quick: bool) -> list[Row]:
    loops, agents = (3, 100) if quick else (5, 200)
    raw = _raw_pool_per_s(loops, agents)
    ours = _ours_executions_per_s("process", loops, agents)
    return [
        row(
            "agent executions/s, ProcessExecutor, noop agents",
            ours,
            "executions/s",
            f"raw multiprocessing pool, {loops} loops x {agents}",
            raw,
            ">= 0.9 of raw",
            ours / raw >= 0.9,
        )
    ]


# -- claims persisted and acknowledged per second ---------------------------------------------


def _end_to_end(
    broker: MessageBroker,
    messages: list[PersistClaim],
    batch: int,
    db: Path,
    host: Host | None = None,
) -> float:
    """Publish in batches while the claim store consumes; time until the last is committed.

    ``host`` places the store as the executors do: a Ray actor (its own process, as under
    RayExecutor) or, by default, threads of this process (as under ProcessExecutor).
    """
    host = host or ThreadHost()
    store = host.spawn(ClaimStore, str(db), name="bench-store", max_concurrency=4)
    resolve(store.start_consumer.remote(broker, batch))
    started = time.perf_counter()
    for i in range(0, len(messages), batch):
        broker.publish_batch(messages[i : i + batch])
    deadline = time.monotonic() + 300
    while resolve(store.persisted_count.remote()) < len(messages):
        if time.monotonic() > deadline:
            raise RuntimeError("not every claim was persisted within 300 s")
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    resolve(store.close.remote())
    host.kill(store)
    return len(messages) / elapsed


def bench_claims_memory(quick: bool) -> list[Row]:
    messages = make_claims(20_000 if quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        ours = _end_to_end(get_message_broker("memory"), messages, 1000, Path(tmp) / "c.db")
    return [
        row(
            "claims persisted+acked/s, memory broker",
            ours,
            "claims/s",
            "none (absolute)",
            None,
            ">= 50,000/s",
            ours >= 50_000,
        )
    ]


def bench_claims_ray(quick: bool) -> list[Row]:
    import ray
    from ray.util.queue import Queue

    messages = make_claims(20_000 if quick else 100_000)
    _start_ray()
    try:
        q = Queue()
        n = 500
        started = time.perf_counter()
        for m in messages[:n]:  # the per-item round trip of ray.util.queue
            q.put(m.model_dump_json())
        for _ in range(n):
            q.get()
        raw = n / (time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as tmp:
            broker = get_message_broker("ray")
            ours = _end_to_end(broker, messages, 1000, Path(tmp) / "c.db", RayHost())
            broker.close()
    finally:
        ray.shutdown()
    return [
        row(
            "claims persisted+acked/s, ray broker",
            ours,
            "claims/s",
            "ray.util.queue put+get per item",
            raw,
            ">= 30,000/s",
            ours >= 30_000,
        )
    ]


def bench_claims_redis(quick: bool, url: str) -> list[Row]:
    import redis

    messages = make_claims(20_000 if quick else 100_000)
    payloads = [m.model_dump_json() for m in messages]
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url)
    stream, group = f"{ns}:raw", "g"
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
        started = time.perf_counter()
        for i in range(0, len(payloads), 1000):
            pipe = client.pipeline(transaction=False)
            for p in payloads[i : i + 1000]:
                pipe.xadd(stream, {b"m": p.encode()})
            pipe.execute()
        read = 0
        while read < len(payloads):
            reply = client.xreadgroup(group, "c", {stream: ">"}, count=1000)
            ids = [entry_id for _, entries in reply for entry_id, _ in entries]
            client.xack(stream, group, *ids)
            read += len(ids)
        raw = len(payloads) / (time.perf_counter() - started)
        broker = get_message_broker("redis", url, namespace=ns)
        import ray

        _start_ray()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                ours = _end_to_end(broker, messages, 1000, Path(tmp) / "c.db", RayHost())
        finally:
            ray.shutdown()
        broker.purge()  # type: ignore[attr-defined]
        broker.close()
    finally:
        keys = list(client.scan_iter(f"{ns}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    return [
        row(
            "claims persisted+acked/s, redis broker",
            ours,
            "claims/s",
            "redis-py pipelined XADD + XREADGROUP + XACK (no store)",
            raw,
            ">= 30,000/s",
            ours >= 30_000,
        )
    ]


def bench_claim_store(quick: bool) -> list[Row]:
    messages = make_claims(20_000 if quick else 100_000)
    claims: list[Claim] = [m.claim for m in messages]
    with tempfile.TemporaryDirectory() as tmp:
        raw_db = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        raw_db.execute("PRAGMA journal_mode=WAL")
        raw_db.execute("PRAGMA synchronous=NORMAL")
        raw_db.executescript(SCHEMA)
        started = time.perf_counter()
        now = time.time()
        for i in range(0, len(claims), 1000):
            rows = [
                (
                    c.claim_id,
                    c.run_id,
                    c.loop,
                    c.agent,
                    c.kind,
                    c.content,
                    json.dumps([s.model_dump(mode="json") for s in c.sources]),
                    c.score,
                    json.dumps(c.metadata),
                    now,
                )
                for c in claims[i : i + 1000]
            ]
            raw_db.execute("BEGIN")
            raw_db.executemany(_INSERT_CLAIM, rows)
            raw_db.execute("COMMIT")
        raw = len(claims) / (time.perf_counter() - started)
        raw_db.close()
        store = ClaimStore(Path(tmp) / "store.db")
        started = time.perf_counter()
        for i in range(0, len(messages), 1000):
            store.persist(messages[i : i + 1000])
        ours = len(messages) / (time.perf_counter() - started)
        store.close()
    return [
        row(
            "ClaimStore.persist claims/s (batches of 1000)",
            ours,
            "claims/s",
            "raw sqlite3 executemany, same schema and rows",
            raw,
            ">= 0.5 of raw",
            ours / raw >= 0.5,
        )
    ]


# -- cost as work grows -------------------------------------------------------------------------


def bench_scale(quick: bool) -> list[Row]:
    sizes = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    queue_size = 10_000
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            broker = get_message_broker("memory", maxsize=queue_size)
            store = ClaimStore(Path(tmp) / "scale.db")
            store.start_consumer(broker)
            monitor = ResourceMonitor(interval=0.05).start()

            def produce(n: int = n, broker: MessageBroker = broker) -> None:
                # Claims are made as they are published, as agents do, not held all at once.
                for i in range(0, n, 1000):
                    broker.publish_batch(make_claims(min(1000, n - i), run=f"scale-{i}"))

            started = time.perf_counter()
            producer = threading.Thread(target=produce)
            producer.start()
            producer.join()
            while store.persisted < n:
                time.sleep(0.002)
            elapsed = time.perf_counter() - started
            report = monitor.stop()
            store.close()
        results.append(
            {
                "claims": n,
                "us_per_claim": 1e6 * elapsed / n,
                "peak_memory_mb": report.memory_mb_peak,
            }
        )
    base = results[0]["us_per_claim"]
    worst = max(r["us_per_claim"] for r in results[1:])
    mem_growth = results[-1]["peak_memory_mb"] - results[1]["peak_memory_mb"]
    # What may grow, by construction: the page cache, the ack-id cap (~100 bytes an id in a set)
    # and a full queue of claims (~2 KB each as objects), whatever the number of claims.
    bound = CACHE_KIB / 1024 + RECENT_LIMIT * 100 / 1e6 + queue_size * 2_000 / 1e6
    return [
        row(
            f"time per claim at {sizes[-1]:,} vs {sizes[0]:,} claims",
            worst,
            "us/claim",
            f"time per claim at {sizes[0]:,}",
            base,
            "within 1.5x",
            worst / base <= 1.5,
            table=[{k: round(v, 2) for k, v in r.items()} for r in results],
        ),
        row(
            f"peak memory growth {sizes[1]:,} -> {sizes[-1]:,} claims, queue_size={queue_size}",
            mem_growth,
            "MB",
            "fixed caches: SQLite page cache + remembered ack ids + a full queue",
            bound,
            "bounded by fixed caches and the queue, not the claim count",
            mem_growth <= bound,
        ),
    ]


BENCHES: dict[str, Callable[..., list[Row]]] = {
    "seed_sim": bench_seed_sim,
    "agents_ray": bench_agents_ray,
    "agents_process": bench_agents_process,
    "claims_memory": bench_claims_memory,
    "claims_ray": bench_claims_ray,
    "claims_redis": bench_claims_redis,
    "claim_store": bench_claim_store,
    "scale": bench_scale,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument(
        "--address", default=None, help="Ray cluster to join (e.g. auto); default: a local Ray"
    )
    ns = p.parse_args(argv)
    global ADDRESS
    ADDRESS = ns.address
    names = [n for n in ns.only.split(",") if n] or list(BENCHES)
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr)
        try:
            if name == "claims_redis":
                rows += bench_claims_redis(ns.quick, ns.redis_url)
            else:
                rows += BENCHES[name](ns.quick)
        except BrokerUnavailable as exc:
            skipped[name] = str(exc)
    print(
        json.dumps(
            {"rows": rows, "skipped": skipped, "quick": ns.quick, "cpus": os.cpu_count()}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
