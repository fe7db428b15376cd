"""Shared fixtures: a real Redis (``REDIS_URL`` or a private ``redis-server``), one local Ray per
test module, and config helpers. Everything binds to 127.0.0.1 and is stopped by process id."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoresearch_ray.config import ConfigModel, load_config

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
#: One corpus-index cache for the whole session (built once, ~2 s), never the user's ~/.cache.
INDEX_CACHE = Path(tempfile.mkdtemp(prefix="autoresearch-test-index-"))
atexit.register(shutil.rmtree, INDEX_CACHE, True)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``REDIS_URL`` if set, else a private redis-server on a free loopback port."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc)


def start_redis(port: int, workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    """A redis-server on 127.0.0.1:``port`` keeping its files in ``workdir``; waits until it
    listens. Extra ``args`` are server options (``--appendonly yes``...)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("REDIS_URL is not set and redis-server is not installed")
    options = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""]
    if "--appendonly" not in args:
        options += ["--appendonly", "no"]
    proc = subprocess.Popen(
        [binary, *options, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, proc, what="redis-server")
    except BaseException:
        stop_process(proc)
        raise
    return proc


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Stop a process we started and every process below it, by pid: SIGTERM, then SIGKILL for
    whatever is left after ``timeout`` (children are listed first: they outlive a dead parent)."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for child in tree:  # what the parent did not stop itself (orphans it started) gets SIGTERM
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    kill_processes(tree, timeout=5)


def kill_processes(processes: list[Any], timeout: float = 10) -> None:
    """Wait up to ``timeout`` for these ``psutil.Process``es to exit, then SIGKILL the rest."""
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=timeout)


def wait_for_port(
    port: int,
    proc: subprocess.Popen[Any] | None = None,
    timeout: float = 10,
    what: str = "the server",
    log: Path | None = None,
) -> None:
    """Wait until something listens on 127.0.0.1:``port``; fail the test naming ``what`` (and the
    tail of ``log``) if ``proc`` exits first or ``timeout`` passes."""

    def tail() -> str:  # read when failing: the log is still empty when the wait starts
        return f":\n{log.read_text()[-3000:]}" if log is not None and log.exists() else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}{tail()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s{tail()}")


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A namespace of its own for one test; its keys are deleted afterwards."""
    import redis

    namespace = f"test-{uuid.uuid4().hex[:10]}"
    yield namespace
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{namespace}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def start_local_ray(**options: Any) -> None:
    """A private local Ray: 2 CPUs, loopback only, no dashboard, a namespace of its own."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        namespace=f"tests-{uuid.uuid4().hex[:6]}",
        log_to_driver=False,
        **options,
    )


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """One private local Ray for the module (see ``start_local_ray``)."""
    import ray

    start_local_ray()
    yield ray
    ray.shutdown()


def job_submit_command(dashboard: str, *run_args: str) -> list[str]:
    """docs/cluster.md's `ray job submit ... -- autoresearch-ray run configs/cluster.yaml ...`."""
    import sys

    ray = str(Path(sys.executable).parent / "ray")
    submit = [ray, "job", "submit", "--address", dashboard, "--working-dir", str(REPO), "--"]
    return [*submit, "autoresearch-ray", "run", "configs/cluster.yaml", *run_args]


def make_config(tmp_path: Path, *overrides: str, base: str | None = None) -> ConfigModel:
    """A config from ``configs/<base>`` (or the defaults) with a database under ``tmp_path``."""
    path = CONFIGS / base if base else None
    return load_config(
        path,
        [f"storage.path={tmp_path / 'claims.db'}", f"corpus.cache_dir={INDEX_CACHE}", *overrides],
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print each scenario's ledger line (scenario, messages, lost, duplicated, ...)."""
    from .ledger import REPORT

    if REPORT:
        terminalreporter.section("fault-injection ledger")
        for line in REPORT:
            terminalreporter.write_line(line)
