"""Autoscaling end to end on one machine: a `fake_multinode` head started with the local twin of
cluster.yaml (configs/cluster.local.yaml), a run submitted with `ray job submit` under token
authentication, the autoscaler adding worker nodes for the agents, the job succeeding and its
claims in the database. Everything listens on 127.0.0.1 and is torn down by process id."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import CONFIGS, free_port, job_submit_command, stop_process, wait_for_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


class FakeCluster:
    """`ray start --head --block` on the fake_multinode provider, on free loopback ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        twin = yaml.safe_load((CONFIGS / "cluster.local.yaml").read_text())
        twin["provider"]["gcs_address"] = f"127.0.0.1:{self.gcs_port}"
        autoscaling = workdir / "autoscaling.yaml"
        autoscaling.write_text(yaml.safe_dump(twin))
        token = workdir / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # Token authentication on, with a token of this test's own (never ~/.ray's).
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_FAKE_CLUSTER": "1",
            # Keep the nodes the autoscaler adds on 127.0.0.1 (see configs/cluster.local.yaml).
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }
        # A short temp dir: Ray's socket paths must stay under the kernel's 108 bytes.
        self.temp_dir = Path("/tmp") / f"ar-{secrets.token_hex(4)}"
        ports = {
            "--ray-client-server-port": free_port(),
            "--dashboard-agent-listen-port": free_port(),
            "--metrics-export-port": free_port(),
        }
        self.log = (workdir / "head.log").open("w")
        # --block keeps every process of the head (and the nodes its autoscaler starts) under
        # this one process, so the teardown can stop exactly them by pid.
        self.proc = subprocess.Popen(
            [
                str(BIN / "ray"),
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                f"--port={self.gcs_port}",
                "--num-cpus=0",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--autoscaling-config={autoscaling}",
                f"--temp-dir={self.temp_dir}",
                "--disable-usage-stats",
                *(f"{k}={v}" for k, v in ports.items()),
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(
            self.dashboard_port, self.proc, 90, "ray start --head", log=workdir / "head.log"
        )

    def stop(self) -> None:
        """Stop the head (it stops what it started) and the nodes its autoscaler added, by pid."""
        stop_process(self.proc, timeout=60)
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def fake_cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    cluster = FakeCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_job_submit_scales_out_and_stores_its_claims(
    fake_cluster: FakeCluster, tmp_path: Path
) -> None:
    db = tmp_path / "claims.db"
    agents = ", ".join(
        # 18 s of work for one worker: long enough for the autoscaler to bring up a second node
        # while the run goes on (each takes a few seconds), however fast the first one came.
        f"{{name: s{i}, type: sleep, params: {{task_time: 2.0, claims: 5}}}}"
        for i in range(3)
    )
    started = time.monotonic()
    job = subprocess.run(
        job_submit_command(
            fake_cluster.dashboard,
            "how does it scale?",
            "--run-id=scaled",
            f"storage.path={db}",
            "loops=3",
            # Three workers on a cluster with no CPU yet: the autoscaler must add nodes.
            "agent_workers=3",
            f"agents=[{agents}]",
        ),
        env=fake_cluster.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, f"{job.stdout[-3000:]}\n{job.stderr[-3000:]}"
    assert "succeeded" in job.stdout + job.stderr
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT claim_id) FROM claims WHERE run_id = 'scaled'"
        ).fetchone()
        nodes = {
            row[0]
            for row in con.execute("SELECT node_id FROM agent_results WHERE run_id = 'scaled'")
        }
        status = con.execute("SELECT status FROM runs WHERE run_id = 'scaled'").fetchone()[0]
    assert status == "completed"
    assert rows == distinct == 3 * 3 * 5
    # The head has no CPU, so every agent ran on a node the autoscaler added.
    assert len(nodes) >= 2, nodes
    print(f"\nautoscaled job: {len(nodes)} worker nodes, {time.monotonic() - started:.1f}s")


def test_a_wrong_token_is_refused(fake_cluster: FakeCluster, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_token"
    wrong.write_text(secrets.token_hex(32))
    env = {**fake_cluster.env, "RAY_AUTH_TOKEN_PATH": str(wrong)}
    job = subprocess.run(
        [str(BIN / "ray"), "job", "list", "--address", fake_cluster.dashboard],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert job.returncode != 0
    assert "auth" in (job.stdout + job.stderr).lower()
