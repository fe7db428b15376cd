"""Agent workers that cannot start (a broken install on the nodes) fail the run at once with the
reason, instead of leaving it waiting for workers that will never answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch_ray.errors import ExecutorError
from autoresearch_ray.executors import RayExecutor

from .conftest import make_config, start_local_ray


@pytest.fixture(scope="module")
def broken_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A local Ray whose workers import a broken copy of the package: the job's working dir
    comes first on their path and holds an ``autoresearch_ray`` that fails to import."""
    import ray

    shadow = tmp_path_factory.mktemp("shadow")
    (shadow / "autoresearch_ray").mkdir()
    (shadow / "autoresearch_ray" / "__init__.py").write_text(
        "raise ImportError('this node has a broken autoresearch_ray install')\n"
    )
    start_local_ray(runtime_env={"working_dir": str(shadow)})
    yield
    ray.shutdown()


def test_workers_that_cannot_start_fail_the_run_with_the_reason(
    broken_workers: None, tmp_path: Path
) -> None:
    cfg = make_config(tmp_path, "executor=ray", "message_broker=ray", "agents=[noop]")
    executor = RayExecutor(cfg)
    with pytest.raises(ExecutorError, match="every agent worker failed to start") as info:
        executor.start()
    assert "broken autoresearch_ray install" in str(info.value)
    executor.shutdown()
