"""The orchestrator simulation: its limit and model formulas, and the seed's script run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch_ray.simulation import batch_limit, mmc_prediction

from .conftest import REPO

SIM = REPO / "scripts" / "distributed_orchestrator_sim.py"
SCALE_OUT = REPO / "scripts" / "scale_out.py"


def test_batch_limit_matches_the_seed_parameters() -> None:
    limit = batch_limit(tasks=20, workers=2, latency=0.01, task_time=0.01)
    assert limit["makespan_s"] == pytest.approx(0.11)
    assert limit["throughput"] == pytest.approx(181.8, abs=0.05)
    assert limit["avg_latency_s"] == pytest.approx(0.065)


def test_batch_limit_with_an_uneven_last_round() -> None:
    limit = batch_limit(tasks=5, workers=2, latency=0.0, task_time=1.0)
    assert limit["makespan_s"] == 3.0  # rounds of 2, 2, 1
    assert limit["avg_latency_s"] == pytest.approx((1 + 1 + 2 + 2 + 3) / 5)


def test_mmc_reduces_to_mm1_and_rejects_an_unstable_queue() -> None:
    # M/M/1: W = 1 / (mu - lambda).
    model = mmc_prediction(arrival_rate=50, task_time=0.01, workers=1, latency=0.0)
    assert model["avg_latency_s"] == pytest.approx(1 / (100 - 50))
    assert model["utilization"] == pytest.approx(0.5)
    two = mmc_prediction(arrival_rate=100, task_time=0.01, workers=2, latency=0.01)
    assert two["p_wait"] == pytest.approx(1 / 3)  # Erlang C for c=2, a=1
    with pytest.raises(ValueError, match="unstable"):
        mmc_prediction(arrival_rate=250, task_time=0.01, workers=2, latency=0.0)


def run_sim(*args: str, cwd: Path, script: Path = SIM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_seed_command_prints_the_seed_keys_first_and_its_share_of_the_limit(
    tmp_path: Path,
) -> None:
    done = run_sim(
        "--workers",
        "2",
        "--tasks",
        "20",
        "--network-latency",
        "0.01",
        "--task-time",
        "0.01",
        "--executor",
        "process",
        "--repeat",
        "2",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result)[:4] == ["avg_latency_s", "throughput", "cpu_percent", "memory_mb"]
    assert result["limit"]["throughput"] == pytest.approx(181.82, abs=0.01)
    # Measured, not computed: below the limit, and not absurdly far from it.
    assert 0.3 < result["share_of_limit"]["throughput"] <= 1.0
    assert result["avg_latency_s"] >= result["limit"]["avg_latency_s"] * 0.99
    assert result["memory_mb"] > 10 and result["resources"]["samples"] > 0


@pytest.mark.slow
def test_model_and_sweep_write_their_outputs(tmp_path: Path) -> None:
    done = run_sim(
        "--executor",
        "process",
        "--tasks",
        "40",
        "--repeat",
        "1",
        "--model",
        "--arrival-rate",
        "80",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    open_loop = json.loads(done.stdout)["open_loop"]
    assert open_loop["mmc_model"]["utilization"] == pytest.approx(0.4)
    assert open_loop["measured"]["avg_latency_s"] > 0
    out = tmp_path / "sweep"
    done = run_sim(
        "--executor",
        "process",
        "--tasks",
        "8",
        "--repeat",
        "1",
        "--sweep-workers",
        "1,2",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["workers"] for r in rows] == [1, 2]
    assert rows[1]["throughput"] > rows[0]["throughput"]
    assert (out / "sweep.svg").read_text().startswith("<svg")


def test_bad_flags_are_refused(tmp_path: Path) -> None:
    done = run_sim("--workers", "0", cwd=tmp_path)
    assert done.returncode == 2 and "--workers must be >= 1" in done.stderr


@pytest.mark.slow
def test_benchmark_quick_rows(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "benchmark.py"),
            "--quick",
            "--only",
            "claim_store,claims_memory",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["rows"]
    assert [r["figure"].split(" ")[0] for r in rows] == ["ClaimStore.persist", "claims"]
    assert all(r["value"] > 0 for r in rows)
    assert rows[0]["baseline_value"] > 0


@pytest.mark.slow
def test_scale_out_runs_the_simulation_on_loopback_clusters(tmp_path: Path) -> None:
    flags = ("--nodes", "1,2", "--tasks", "8", "--task-time", "0.1", "--repeat", "1")
    done = run_sim(*flags, cwd=tmp_path, script=SCALE_OUT)
    assert done.returncode == 0, done.stderr[-3000:]
    table, _, data = done.stdout.partition("\n{")
    assert "| worker nodes | tasks/s | limit |" in table
    rows = json.loads("{" + data)["rows"]
    assert [r["nodes"] for r in rows] == [1, 2]
    assert [r["limit"] for r in rows] == [10.0, 20.0]  # d + ceil(n/w)·t with d = 0
    assert all(0 < r["share"] <= 1.05 for r in rows)


def test_scale_out_refuses_bad_node_counts(tmp_path: Path) -> None:
    done = run_sim("--nodes", "0", cwd=tmp_path, script=SCALE_OUT)
    assert done.returncode == 2 and "at least 1" in done.stderr
