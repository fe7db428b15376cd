"""Fault injection on one local Ray: workers, agents, the claim store and the queue die mid-run;
every scenario balances its ledger (nothing lost, nothing duplicated) and prints its summary.

The backbone actors are killed from the inside, at exact points, by failpoints
(``autoresearch_ray.failpoints``): the Ray instance of this module passes the failpoint directory
to every worker, and a test arms a point by writing a file there.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoresearch_ray import failpoints
from autoresearch_ray.config import ConfigModel
from autoresearch_ray.executors import get_executor

from .conftest import free_port, make_config, start_local_ray, start_redis, stop_process
from .ledger import Ledger, drain, executions

pytestmark = pytest.mark.chaos

#: Short leases, so a batch left by a dead consumer comes back within seconds.
LEASE = "lease_seconds=2"


@pytest.fixture(scope="module")
def chaos_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private local Ray whose every worker sees the failpoint directory; yields it."""
    import ray

    directory = tmp_path_factory.mktemp("failpoints")
    start_local_ray(runtime_env={"env_vars": {failpoints.ENV: str(directory)}})
    yield directory
    ray.shutdown()


@pytest.fixture
def points(chaos_ray: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The failpoint directory, armed for this test only (the driver sees it too)."""
    monkeypatch.setenv(failpoints.ENV, str(chaos_ray))
    yield chaos_ray
    for path in chaos_ray.iterdir():
        path.unlink() if path.is_file() else shutil.rmtree(path)


def agents(log: Path, count: int = 25, n: int = 4, extra: str = "") -> str:
    """``n`` claims agents of ``count`` claims each, all logging their executions to ``log``."""
    specs = [
        f"{{name: a{i}, type: claims, params: {{count: {count}, log_path: '{log}'}}}}"
        for i in range(n)
    ]
    return "agents=[" + ", ".join(specs + ([extra] if extra else [])) + "]"


def config(tmp_path: Path, executor: str, broker: str, *extra: str) -> ConfigModel:
    return make_config(tmp_path, f"executor={executor}", f"message_broker={broker}", LEASE, *extra)


def run_and_check(
    scenario: str, cfg: ConfigModel, log: Path, run_id: str, drain_s: float = 20.0
) -> tuple[Any, Ledger]:
    """Run, drain the broker, balance the books; returns the response and the ledger."""
    ledger = Ledger(scenario, cfg.storage.resolved(), [run_id])
    with get_executor(cfg) as ex:
        response = ex.run_query("what survives a crash?", run_id=run_id)
        assert ex.broker is not None
        ledger.broker_stats = drain(ex.broker, drain_s)
    ledger.attempts_from(log)
    ledger.acknowledged_from(c.claim_id for c in response.claims)
    ledger.republished = response.metrics.republished
    ledger.check()
    return response, ledger


@pytest.mark.parametrize("executor", ["ray", "process"])
def test_worker_sigkilled_mid_task(chaos_ray: Path, tmp_path: Path, executor: str) -> None:
    log = tmp_path / "executions.jsonl"
    crasher = (
        f"{{name: crasher, type: crash, params: {{marker_dir: '{tmp_path / 'marks'}', "
        f"count: 25, log_path: '{log}'}}}}"
    )
    broker = "ray" if executor == "ray" else "memory"
    cfg = config(tmp_path, executor, broker, "loops=2", agents(log, n=3, extra=crasher))
    response, ledger = run_and_check(f"worker SIGKILL ({executor})", cfg, log, f"kill-{executor}")
    assert response.metrics.agent_errors == 0, response.errors
    assert len(list((tmp_path / "marks").iterdir())) == 2  # it really died once per loop
    # and its executions ran again, once per loop. (A process pool that loses a process fails
    # every execution it held, so a neighbour's may have been re-run too: reruns >= 2.)
    crasher_runs = [r for r in executions(log, f"kill-{executor}") if r["agent"] == "crasher"]
    assert sorted((r["loop"], r["attempt"]) for r in crasher_runs) == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
    ]
    assert ledger.reruns >= 2
    assert len(response.claims) == 2 * 4 * 25


def test_retryable_error_is_retried_and_a_fatal_one_recorded(
    chaos_ray: Path, tmp_path: Path
) -> None:
    log = tmp_path / "executions.jsonl"
    flaky = (
        "{name: flaky, type: flaky, params: {retryable_failures: 1, count: 5}}, "
        "{name: fatal, type: flaky, params: {retryable_failures: 1, then: fatal}}"
    )
    cfg = config(
        tmp_path, "ray", "ray", "loops=2", "agent_retries=2", agents(log, n=3, extra=flaky)
    )
    # The flaky agents do not log, so the ledger counts their claims as acknowledged only.
    ledger = Ledger("retryable then fatal agent error", cfg.storage.resolved(), ["flaky"])
    with get_executor(cfg) as ex:
        response = ex.run_query("q", run_id="flaky")
        assert ex.broker is not None
        ledger.broker_stats = drain(ex.broker, 10)
    by_agent = {(r.loop, r.agent): r for r in response.records}
    fatal = [by_agent[(loop, "fatal")] for loop in (0, 1)]
    assert all(r.status == "error" and r.error_type == "ValueError" for r in fatal)
    assert all("permanent failure on attempt 2" in (r.error or "") for r in fatal)
    assert not [c for c in response.claims if c.agent == "fatal"]
    assert all(by_agent[(loop, "flaky")].status == "ok" for loop in (0, 1))
    assert len([c for c in response.claims if c.agent == "flaky"]) == 10
    ledger.attempts_from(log)
    ledger.attempted.update(c.claim_id for c in response.claims if c.agent == "flaky")
    ledger.acknowledged_from(c.claim_id for c in response.claims)
    ledger.check()


@pytest.mark.parametrize("point", ["claim_store.before_commit", "claim_store.after_commit"])
def test_claim_store_actor_killed(points: Path, tmp_path: Path, point: str) -> None:
    failpoints.arm(points, point)
    log = tmp_path / "executions.jsonl"
    cfg = config(tmp_path, "ray", "ray", "loops=3", agents(log))
    when = point.split(".")[1].replace("_", " ")
    response, ledger = run_and_check(f"claim store killed {when}", cfg, log, "store-kill")
    assert failpoints.fired(points, point), "the claim store was never killed"
    assert response.metrics.agent_errors == 0
    assert len(response.claims) == 3 * 4 * 25
    assert ledger.redelivered + ledger.republished > 0  # the dead store's batch came back


def test_queue_actor_killed_with_messages_buffered(points: Path, tmp_path: Path) -> None:
    failpoints.arm(points, "queue.before_get")
    log = tmp_path / "executions.jsonl"
    cfg = config(tmp_path, "ray", "ray", "loops=3", agents(log))
    response, _ = run_and_check("queue actor killed holding messages", cfg, log, "queue-kill")
    assert failpoints.fired(points, "queue.before_get"), "the queue actor was never killed"
    # What it held was gone with it. Two paths bring messages back: a put whose reply the dead
    # actor never sent is retried by Ray on the new incarnation, and everything else still
    # unacknowledged is republished by the coordinator (metrics.republished, in the ledger line).
    assert len(response.claims) == 3 * 4 * 25


def test_redis_consumer_killed_after_reading_before_ack(
    points: Path, tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    failpoints.arm(points, "claim_store.before_commit")
    log = tmp_path / "executions.jsonl"
    cfg = config(
        tmp_path,
        "ray",
        "redis",
        f"broker_url={redis_url}",
        f"namespace={redis_namespace}",
        "loops=3",
        agents(log),
    )
    response, ledger = run_and_check("redis consumer killed before ack", cfg, log, "redis-kill")
    assert failpoints.fired(points, "claim_store.before_commit")
    assert len(response.claims) == 3 * 4 * 25
    # The restarted store reads as a new consumer: the old one's entries came by XAUTOCLAIM.
    assert ledger.redelivered > 0
    assert executions(log, "redis-kill")


class DurableRedis:
    """A private redis-server (AOF fsynced on every write, unless ``appendonly=False``) that a
    test can SIGKILL and start again on the same port and files."""

    def __init__(self, workdir: Path, appendonly: bool = True) -> None:
        self.appendonly = appendonly
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = self._start()
        self.restarts = 0

    def _start(self) -> subprocess.Popen[bytes]:
        if not self.appendonly:  # nothing on disk: a restart starts empty
            return start_redis(self.port, self.workdir)
        return start_redis(
            self.port, self.workdir, "--appendonly", "yes", "--appendfsync", "always"
        )

    def crash_and_restart(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = self._start()
        self.restarts += 1

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[DurableRedis]:
    server = DurableRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


def test_redis_server_killed_and_restarted_with_aof(
    chaos_ray: Path, tmp_path: Path, durable_redis: DurableRedis
) -> None:
    from autoresearch_ray.brokers.redis_broker import RedisBroker
    from autoresearch_ray.messages import PersistClaim
    from autoresearch_ray.models import ClaimDraft, bind_claim

    # 1. Every message the server acknowledged (XADD returned) survives a SIGKILL of it.
    drafts = [ClaimDraft(content=f"durable {i}") for i in range(300)]
    claims = [bind_claim("aof", 0, "writer", d) for d in drafts]
    with RedisBroker(durable_redis.url, namespace="aof", lease_seconds=2) as broker:
        broker.publish_batch([PersistClaim(claim=c) for c in claims])
        durable_redis.crash_and_restart()
        # The same client object carries on: it reconnects with backoff on its own.
        assert broker.stats()["ready"] == 300
        got = broker.get_batch(1000, timeout=1)
        assert sorted(d.message.message_id for d in got) == sorted(c.claim_id for c in claims)
        broker.ack([d.delivery_id for d in got])

    # 2. A run whose Redis dies mid-loop (after some results were published) completes.
    log = tmp_path / "executions.jsonl"
    cfg = config(
        tmp_path,
        "process",
        "redis",
        f"broker_url={durable_redis.url}",
        "namespace=aof-run",
        "loops=3",
        agents(log),
    )
    seen: list[Any] = []

    def crash_redis_once(record: Any) -> None:
        seen.append(record)
        if record.loop == 1 and durable_redis.restarts == 1:
            durable_redis.crash_and_restart()

    ledger = Ledger("redis-server killed and restarted (AOF)", cfg.storage.resolved(), ["aof"])
    with get_executor(cfg) as ex:
        response = ex.run_query("q", run_id="aof", callbacks={"on_agent_result": crash_redis_once})
        assert ex.broker is not None
        ledger.broker_stats = drain(ex.broker, 20)
    assert durable_redis.restarts == 2
    assert response.metrics.agent_errors == 0
    assert len(response.claims) == 3 * 4 * 25
    ledger.attempts_from(log)
    ledger.acknowledged_from(c.claim_id for c in response.claims)
    ledger.republished = response.metrics.republished
    ledger.check()


class _WritesAFile:
    """Unpickling this creates a file: proof, if it ever exists, that a pickle was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.write_text, (self.path, "pickle executed"))


def poison_payloads(marker: Path) -> list[tuple[str, str | bytes]]:
    """(kind, payload) of every sort of bad message a wire can carry."""
    import pickle

    from autoresearch_ray.messages import MAX_MESSAGE_BYTES

    claim = {"action": "persist_claim", "claim": {"claim_id": "x"}}
    return [
        ("invalid JSON", '{"action": "persist_claim", '),
        ("wrong types", json.dumps({**claim, "claim": {"claim_id": 7, "run_id": []}})),
        ("unknown action", json.dumps({"action": "drop_tables"})),
        ("extra field", json.dumps({"action": "stop", "sudo": True})),
        ("oversized", json.dumps({"action": "stop", "pad": "x" * MAX_MESSAGE_BYTES})),
        ("pickle", pickle.dumps(_WritesAFile(marker))),
    ]


@pytest.mark.parametrize("broker_name", ["ray", "redis"])
def test_poison_messages_are_dead_lettered_and_never_executed(
    chaos_ray: Path, tmp_path: Path, broker_name: str, request: pytest.FixtureRequest
) -> None:
    from autoresearch_ray.brokers import get_message_broker
    from autoresearch_ray.claim_store import ClaimStore
    from autoresearch_ray.messages import PersistClaim
    from autoresearch_ray.models import ClaimDraft, bind_claim

    options: dict[str, Any] = {"lease_seconds": 2, "max_deliveries": 3}
    url = None
    if broker_name == "redis":
        url = request.getfixturevalue("redis_url")
        options["namespace"] = request.getfixturevalue("redis_namespace")
    broker = get_message_broker(broker_name, url, **options)
    marker = tmp_path / "executed"
    poison = poison_payloads(marker)
    claims = [bind_claim("poison", 0, "w", ClaimDraft(content=f"valid {i}")) for i in range(300)]
    bad = len(poison) - (broker_name != "redis")
    ledger = Ledger(
        f"{bad} poison messages among valid ones ({broker_name})",
        tmp_path / "claims.db",
        ["poison"],
    )
    store = ClaimStore(tmp_path / "claims.db", consume_from=broker, batch_size=50)
    try:
        # Bad payloads interleaved with good ones, straight onto the wire.
        for i, chunk in enumerate(range(0, 300, 50)):
            broker.publish_batch([PersistClaim(claim=c) for c in claims[chunk : chunk + 50]])
            _, payload = poison[i]
            if isinstance(payload, bytes):
                # Only Redis carries bytes as they are; the ray broker admits text only.
                if broker_name != "redis":
                    continue
                broker._redis.xadd(broker.keys.stream, {b"m": payload})  # type: ignore[attr-defined]
            else:
                broker.put_raw([payload])
        ids = [c.claim_id for c in claims]
        assert store.wait_for("poison", 0, ids, timeout=30) == []
        ledger.broker_stats = drain(broker, 10)
        dead = broker.dead_letters()
        assert store.consumer_error() is None  # the consumer kept going
    finally:
        store.close()
        broker.close()
    assert len(dead) == bad
    assert all(d["reason"] for d in dead)
    reasons = " | ".join(d["reason"] for d in dead)
    assert "oversized" in reasons and "JSON" in reasons
    assert not marker.exists()  # the pickle was never unpickled
    ledger.attempted = ledger.acknowledged = set(ids)
    ledger.check()


@pytest.mark.parametrize("lost_with", ["queue actor restart", "redis-server restart, no AOF"])
def test_coordinator_republishes_what_a_restarted_broker_lost(
    chaos_ray: Path, tmp_path: Path, lost_with: str
) -> None:
    """Deterministic: messages are published while no consumer runs, the broker then loses them
    (a restarted queue actor; a redis-server restarted without persistence), and only the
    coordinator's republishing lets the loop finish."""
    import ray

    from autoresearch_ray.brokers import get_message_broker
    from autoresearch_ray.claim_store import ClaimStore
    from autoresearch_ray.coordinator import Coordinator
    from autoresearch_ray.hosting import ThreadHost, resolve
    from autoresearch_ray.models import AgentOutput, AgentResult, ClaimDraft

    server = None
    if lost_with.startswith("redis"):
        server = DurableRedis(tmp_path / "redis", appendonly=False)
        broker = get_message_broker("redis", server.url, namespace="lost", lease_seconds=2)
    else:
        broker = get_message_broker("ray", lease_seconds=2)
    host = ThreadHost()
    store = host.spawn(ClaimStore, tmp_path / "claims.db", name="store", max_concurrency=4)
    coordinator = Coordinator(broker, store, ack_timeout_s=30, republish_after_s=60)
    ledger = Ledger(f"broker lost its messages ({lost_with})", tmp_path / "claims.db", ["lost"])
    try:
        coordinator.start_run("lost", "q", 1, ["writer"], {})
        drafts = tuple(ClaimDraft(content=f"kept {i}") for i in range(100))
        now = time.time()
        result = AgentResult(
            run_id="lost",
            loop=0,
            agent="writer",
            status="ok",
            output=AgentOutput(claims=drafts),
            started_at=now,
            finished_at=now,
        )
        coordinator.record_many([(result, now, now)])
        assert broker.stats()["ready"] == 101  # 100 claims and the agent's result, unconsumed
        before = broker.incarnation()
        if server is not None:
            server.crash_and_restart()
        else:
            ray.kill(broker.actor, no_restart=False)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while broker.incarnation() == before and time.monotonic() < deadline:
            time.sleep(0.1)  # Ray restarts the actor in the background
        assert broker.stats()["ready"] == 0  # gone with the old incarnation
        resolve(store.start_consumer.remote(broker, 1000, "test"))
        state = coordinator.finish_loop(0)
        ledger.broker_stats = drain(broker, 10)
    finally:
        resolve(store.close.remote())
        host.kill(store)
        broker.close()
        if server is not None:
            server.stop()
    assert coordinator.republished == 101
    assert len(state["claims"]) == 100
    ledger.attempted = ledger.acknowledged = {c["claim_id"] for c in state["claims"]}
    ledger.republished = coordinator.republished
    ledger.check()
