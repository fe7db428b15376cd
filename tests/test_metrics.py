"""Run metrics reach Ray's Prometheus endpoint (a private Ray with a known export port)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch_ray.executors import get_executor

from .conftest import free_port, make_config


@pytest.fixture(scope="module")
def ray_with_metrics() -> Iterator[int]:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _metrics_export_port=port,
        _system_config={"metrics_report_interval_ms": 500},
        logging_level="warning",
    )
    yield port
    ray.shutdown()


@pytest.mark.slow
def test_agent_latency_and_claims_are_exported(ray_with_metrics: int, tmp_path: Path) -> None:
    with get_executor(make_config(tmp_path, "loops=2")) as ex:
        response = ex.run_query("How do I parse command line arguments?")
    assert response.metrics.claims > 0
    wanted = {
        "ray_autoresearch_claims_persisted",
        "ray_autoresearch_agent_latency_seconds",
        "ray_autoresearch_agent_executions",
        "ray_autoresearch_queue_depth",
    }
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not wanted <= seen:
        url = f"http://127.0.0.1:{ray_with_metrics}/metrics"
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        seen = {w for w in wanted if w in body}
        time.sleep(0.5)
    assert wanted <= seen
    assert 'executor="ray"' in body and 'broker="ray"' in body
