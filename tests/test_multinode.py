"""Several Ray nodes on one machine (``ray.cluster_utils.Cluster``, all on 127.0.0.1): agents
spread over worker nodes, the backbone stays on the head, and a worker node removed mid-run
costs nothing but a re-run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoresearch_ray.executors import RayExecutor
from autoresearch_ray.local_cluster import loopback_cluster

from .conftest import make_config
from .ledger import Ledger, drain


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head with no CPUs (so agents cannot run there) and three 1-CPU worker nodes."""
    with loopback_cluster(worker_nodes=3) as cluster:
        yield cluster


def node_of(handle: Any) -> str:
    """The node id an actor runs on."""
    import ray

    return str(
        ray.get(handle.__ray_call__.remote(lambda _self: ray.get_runtime_context().get_node_id()))
    )


@pytest.mark.parametrize("broker", ["ray", "redis"])
def test_agents_spread_over_worker_nodes_backbone_on_head(
    cluster: Any, tmp_path: Path, broker: str, request: pytest.FixtureRequest
) -> None:
    agents = ", ".join(
        f"{{name: s{i}, type: sleep, params: {{task_time: 0.2, claims: 3}}}}" for i in range(6)
    )
    extra = []
    if broker == "redis":
        extra = [
            f"broker_url={request.getfixturevalue('redis_url')}",
            f"namespace={request.getfixturevalue('redis_namespace')}",
        ]
    cfg = make_config(
        tmp_path,
        "executor=ray",
        f"message_broker={broker}",
        "loops=2",
        f"agents=[{agents}]",
        *extra,
    )
    head = cluster.head_node.node_id
    workers = {node.node_id for node in cluster.worker_nodes}
    with RayExecutor(cfg) as ex:
        response = ex.run_query("spread", run_id="spread")
        assert node_of(ex.store) == node_of(ex.coordinator) == head
        assert ex.broker is not None
        if broker == "ray":
            assert node_of(ex.broker.actor) == head  # type: ignore[attr-defined]
        stats = drain(ex.broker, 10)
    nodes = {r.node_id for r in response.records}
    assert len(nodes) >= 2, nodes
    assert nodes <= workers  # no agent on the CPU-less head
    assert set(response.metrics.nodes) == nodes
    ledger = Ledger(f"multi-node run ({broker})", cfg.storage.resolved(), ["spread"])
    ledger.broker_stats = stats
    ledger.attempted = ledger.acknowledged = {c.claim_id for c in response.claims}
    assert len(ledger.acknowledged) == 2 * 6 * 3
    ledger.check()


@pytest.mark.chaos
def test_worker_node_removed_mid_run(
    cluster: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:

    log = tmp_path / "executions.jsonl"
    # Five 1 s agents on three 1-CPU nodes: every node is busy when one is removed.
    agents = ", ".join(
        f"{{name: a{i}, type: sleep, params: {{task_time: 1.0, claims: 25, log_path: '{log}'}}}}"
        for i in range(5)
    )
    cfg = make_config(
        tmp_path,
        "executor=ray",
        "message_broker=ray",
        "loops=3",
        "lease_seconds=2",
        f"agents=[{agents}]",
    )
    victim = sorted(cluster.worker_nodes, key=lambda node: node.node_id)[0]
    removal: list[threading.Thread] = []

    def remove_a_node_in_loop_1(loop: int, agent: str) -> None:
        if loop == 1 and not removal:
            # From another thread, so the loop keeps taking results while the node goes.
            removal.append(threading.Thread(target=_remove_later, args=(cluster, victim)))
            removal[0].start()

    ledger = Ledger("worker node removed mid-run", cfg.storage.resolved(), ["node-loss"])
    with RayExecutor(cfg) as ex:
        response = ex.run_query(
            "q", run_id="node-loss", callbacks={"on_agent_start": remove_a_node_in_loop_1}
        )
        assert ex.broker is not None
        ledger.broker_stats = drain(ex.broker, 20)
    removal[0].join()
    assert not victim.any_processes_alive()  # its raylet and everything under it are gone
    assert response.metrics.agent_errors == 0, response.errors
    assert len(response.claims) == 3 * 5 * 25
    ledger.attempts_from(log)
    ledger.acknowledged_from(c.claim_id for c in response.claims)
    ledger.republished = response.metrics.republished
    line = ledger.check()
    # Work on the removed node was really lost (mid-run or queued there) and run elsewhere.
    assert any("worker lost" in r.getMessage() for r in caplog.records), line
    # The other loops ran on the nodes that were left, and loop 2 never saw the removed one.
    assert victim.node_id not in {r.node_id for r in response.records if r.loop == 2}


def _remove_later(cluster: Any, node: Any) -> None:
    time.sleep(0.4)
    cluster.remove_node(node, allow_graceful=False)
