"""Both executors end to end on real Ray, real Redis and a real SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoresearch_ray.claim_store import ClaimStore
from autoresearch_ray.config import ConfigModel
from autoresearch_ray.errors import ExecutorError
from autoresearch_ray.executors import ProcessExecutor, RayExecutor, get_executor
from autoresearch_ray.models import AgentRecord

from .conftest import make_config

FOUR_AGENTS = (
    "agents=[{name: a1, type: claims, params: {count: 2}}, {name: a2, type: claims}, "
    "{name: a3, type: claims, params: {count: 1}}, {name: a4, type: claims, params: {count: 3}}]"
)

PAIRS = [("ray", "ray"), ("ray", "redis"), ("process", "memory"), ("process", "redis")]


def config_for(
    request: pytest.FixtureRequest, tmp_path: Path, executor: str, broker: str, *extra: str
) -> ConfigModel:
    overrides = [f"executor={executor}", f"message_broker={broker}", *extra]
    if executor == "ray":
        request.getfixturevalue("ray_local")
    if broker == "redis":
        overrides += [
            f"broker_url={request.getfixturevalue('redis_url')}",
            f"namespace={request.getfixturevalue('redis_namespace')}",
        ]
    return make_config(tmp_path, *overrides)


def stored_ids(cfg: ConfigModel, run_id: str) -> list[str]:
    store = ClaimStore(cfg.storage.resolved(), readonly=True)
    try:
        return sorted(c.claim_id for c in store.claims(run_id))
    finally:
        store.close()


@pytest.mark.parametrize(("executor", "broker"), PAIRS)
def test_every_loop_every_agent_claims_stored_once(
    request: pytest.FixtureRequest, tmp_path: Path, executor: str, broker: str
) -> None:
    cfg = config_for(request, tmp_path, executor, broker, "loops=3", FOUR_AGENTS)
    cycles: list[int] = []
    with get_executor(cfg) as ex:
        response = ex.run_query(
            "what is a lease?",
            run_id="matrix",
            callbacks={"on_cycle_end": lambda i, s: cycles.append(i)},
        )
        assert cycles == [0, 1, 2]
        m = response.metrics
        assert (m.loops, m.agents, m.agent_executions, m.agent_errors) == (3, 4, 12, 0)
        assert m.claims == 3 * (2 + 2 + 1 + 3) == len(response.claims)
        assert sorted(c.claim_id for c in response.claims) == stored_ids(cfg, "matrix")
        assert {(r.loop, r.agent) for r in response.records} == {
            (loop, f"a{i}") for loop in range(3) for i in range(1, 5)
        }
        # Same run id again: the same claims, no duplicate rows.
        again = ex.run_query("what is a lease?", run_id="matrix")
    assert sorted(c.claim_id for c in again.claims) == stored_ids(cfg, "matrix")
    assert len(stored_ids(cfg, "matrix")) == 24
    store = ClaimStore(cfg.storage.resolved(), readonly=True)
    assert len(store.agent_results("matrix")) == 12
    assert store.run("matrix")["status"] == "completed"  # type: ignore[index]
    store.close()


@pytest.mark.parametrize("executor", ["ray", "process"])
def test_results_are_aggregated_as_they_complete(
    request: pytest.FixtureRequest, tmp_path: Path, executor: str
) -> None:
    broker = "ray" if executor == "ray" else "memory"
    agents = (
        "agents=[{name: slow, type: sleep, params: {task_time: 1.5, claims: 1}}, "
        "{name: f1, type: claims}, {name: f2, type: claims}, {name: f3, type: claims}]"
    )
    cfg = config_for(request, tmp_path, executor, broker, "loops=1", agents)
    arrivals: list[AgentRecord] = []
    with get_executor(cfg) as ex:
        response = ex.run_query("q", callbacks={"on_agent_result": arrivals.append})
    assert [r.agent for r in arrivals][-1] == "slow"
    slow = next(r for r in arrivals if r.agent == "slow")
    assert all(r.received_at < slow.received_at for r in arrivals if r.agent != "slow")
    # The merge is deterministic: configured order, not arrival order.
    assert [r.agent for r in response.records] == ["slow", "f1", "f2", "f3"]
    assert next(r.arrival for r in response.records) == 3


@pytest.mark.parametrize("executor", ["ray", "process"])
def test_failing_agents_are_recorded_and_others_kept(
    request: pytest.FixtureRequest, tmp_path: Path, executor: str
) -> None:
    broker = "ray" if executor == "ray" else "memory"
    agents = (
        "agents=[{name: good, type: claims, params: {count: 2}}, "
        "{name: raiser, type: fail, params: {error: boom, loops: [1]}}, "
        "{name: junk, type: garbage}, "
        "{name: badclaims, type: garbage, params: {kind: bad_claims}}, "
        "{name: stuck, type: sleep, params: {task_time: 30}}]"
    )
    cfg = config_for(request, tmp_path, executor, broker, "loops=2", agents, "agent_timeout_s=2")
    with get_executor(cfg) as ex:
        response = ex.run_query("q", run_id="faulty")
    errors = {(e.loop, e.agent): e for e in response.errors}
    assert set(errors) == {
        (1, "raiser"),
        (0, "junk"),
        (1, "junk"),
        (0, "badclaims"),
        (1, "badclaims"),
        (0, "stuck"),
        (1, "stuck"),
    }
    assert "ValueError: boom" in errors[(1, "raiser")].error
    assert "returned int" in errors[(0, "junk")].error
    assert "claims.0.content" in errors[(0, "badclaims")].error
    assert errors[(0, "stuck")].error_type == "TimeoutError"
    # The good agent's claims, and the raiser's from loop 0, are all there and stored.
    assert {(c.loop, c.agent) for c in response.claims} == {(0, "good"), (1, "good"), (0, "raiser")}
    assert sorted(c.claim_id for c in response.claims) == stored_ids(cfg, "faulty")


def test_a_failed_run_keeps_what_was_acknowledged(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cfg = config_for(request, tmp_path, "process", "memory", "loops=3", FOUR_AGENTS)

    def explode(loop: int, state: Any) -> None:
        if loop == 1:
            raise RuntimeError("driver crashed")

    with get_executor(cfg) as ex, pytest.raises(RuntimeError, match="driver crashed"):
        ex.run_query("q", run_id="halfway", callbacks={"on_cycle_end": explode})
    store = ClaimStore(cfg.storage.resolved(), readonly=True)
    assert {c.loop for c in store.claims("halfway")} == {0, 1}
    run = store.run("halfway")
    assert run is not None and run["status"] == "failed" and run["loops_completed"] == 2
    store.close()


def test_ray_executor_leaves_a_ray_it_did_not_start(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ray = request.getfixturevalue("ray_local")
    cfg = config_for(request, tmp_path, "ray", "ray", "loops=1")
    ex = RayExecutor(cfg)
    with ex:
        ex.run_query("q")
    ex.shutdown()  # idempotent
    assert ray.is_initialized()
    with pytest.raises(ExecutorError, match="shut down"):
        ex.run_query("q")


def test_process_executor_shutdown_is_idempotent(tmp_path: Path) -> None:
    ex = ProcessExecutor(make_config(tmp_path, "executor=process", "message_broker=memory"))
    ex.shutdown()  # never started
    ex.shutdown()
    with pytest.raises(ExecutorError):
        ex.start()


def test_local_executor_when_distribution_is_disabled(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        "enabled=false",
        "message_broker=memory",
        "executor=process",
        "loops=2",
        "agents=[{name: a, type: claims, params: {count: 3}}, {name: b, type: claims}]",
    )
    with get_executor(cfg) as ex:
        response = ex.run_query("q")
    assert response.metrics.executor == "local"
    assert response.metrics.claims == 2 * (3 + 2)


def test_unknown_callback_is_bad_input(tmp_path: Path) -> None:
    from autoresearch_ray.errors import BadInputError

    cfg = make_config(tmp_path, "enabled=false", "message_broker=memory")
    with get_executor(cfg) as ex, pytest.raises(BadInputError, match="on_cycle_ends"):
        ex.run_query("q", callbacks={"on_cycle_ends": print})


def test_resume_continues_after_the_last_checkpoint(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from autoresearch_ray.errors import BadInputError

    cfg = config_for(request, tmp_path, "process", "memory", "loops=3", FOUR_AGENTS)

    def crash_after_loop_1(loop: int, state: Any) -> None:
        if loop == 1:
            raise RuntimeError("driver crashed")

    with get_executor(cfg) as ex, pytest.raises(RuntimeError):
        ex.run_query("q", run_id="resumable", callbacks={"on_cycle_end": crash_after_loop_1})
    started: list[tuple[int, str]] = []
    with get_executor(cfg) as ex:
        response = ex.run_query(
            "q",
            run_id="resumable",
            resume=True,
            callbacks={"on_agent_start": lambda loop, agent: started.append((loop, agent))},
        )
        with pytest.raises(BadInputError, match="run id"):
            ex.run_query("q", resume=True)
    assert {loop for loop, _ in started} == {2}  # loops 0 and 1 were not run again
    assert response.metrics.loops == 3 and response.metrics.agent_executions == 12
    stored = stored_ids(cfg, "resumable")
    assert len(stored) == len(set(stored)) == 24
    assert sorted(c.claim_id for c in response.claims) == stored


def test_a_requested_stop_finishes_in_flight_work_and_can_be_resumed(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from autoresearch_ray.errors import RunInterrupted

    # Six agents on one worker: when the stop comes, some are running, the rest are not.
    names = [f"s{i}" for i in range(6)]
    specs = ", ".join(
        f"{{name: {n}, type: sleep, params: {{task_time: 0.2, claims: 1}}}}" for n in names
    )
    agents = f"agents=[{specs}]"
    cfg = config_for(request, tmp_path, "process", "memory", "loops=3", "num_cpus=1", agents)
    with get_executor(cfg) as ex:

        def stop_in_loop_1(record: AgentRecord) -> None:
            if record.loop == 1:
                ex.request_stop()

        with pytest.raises(RunInterrupted, match="--resume stoppable"):
            ex.run_query("q", run_id="stoppable", callbacks={"on_agent_result": stop_in_loop_1})
    store = ClaimStore(cfg.storage.resolved(), readonly=True)
    run = store.run("stoppable")
    assert run is not None and run["status"] == "interrupted" and run["loops_completed"] == 1
    partial = {(c.loop, c.agent) for c in store.claims("stoppable")}
    store.close()
    assert {a for loop, a in partial if loop == 0} == set(names)
    assert 1 <= len([1 for loop, _ in partial if loop == 1]) < 6  # in flight, not the rest
    with get_executor(cfg) as ex:
        response = ex.run_query("q", run_id="stoppable", resume=True)
    stored = stored_ids(cfg, "stoppable")
    assert len(stored) == len(set(stored)) == 18
    assert response.metrics.loops == 3
