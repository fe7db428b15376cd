"""The console script as a user runs it: a real subprocess, real exit codes, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CONFIGS, INDEX_CACHE, REPO


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autoresearch_ray.cli", *args, *_cache(args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def _cache(args: tuple[str, ...]) -> list[str]:
    # Runs share the session's index cache; other commands take no such override.
    return [f"corpus.cache_dir={INDEX_CACHE}"] if args and args[0] == "run" else []


def test_process_run_then_claims(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    done = cli(
        "run",
        str(CONFIGS / "process.yaml"),
        "What is a lease?",
        f"storage.path={db}",
        "loops=3",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response["metrics"]["loops"] == 3
    assert response["metrics"]["agent_executions"] == 9
    listed = cli("claims", response["run_id"], f"storage.path={db}", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"{len(response['claims'])} claims of run {response['run_id']}" in listed.stdout
    runs = cli("runs", f"storage.path={db}", "--json", cwd=tmp_path)
    assert json.loads(runs.stdout)[0]["status"] == "completed"


def test_default_run_on_ray_prints_a_summary(tmp_path: Path) -> None:
    done = cli("run", "What is a lease?", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "run id:" in done.stdout
    assert "3 x 3 loops = 9 executions, 0 errors" in done.stdout
    assert "ray, ray broker" in done.stdout
    assert (tmp_path / "autoresearch_claims.db").is_file()
    run_id = next(
        line.split()[-1] for line in done.stdout.splitlines() if line.startswith("run id:")
    )
    listed = cli("claims", run_id, cwd=tmp_path)
    assert listed.returncode == 0
    assert "thesis" in listed.stdout and "verification" in listed.stdout
    assert f"claims of run {run_id}" in listed.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "q", "mesage_broker=redis"], "mesage_broker: unknown key (did you mean"),
        (["run", "q", "message_broker=redsi"], "'redsi' is not allowed; allowed values"),
        (["run", "q", "executor=process", "message_broker=memory", "loops=-1"], "loops:"),
        (["run", "missing.yaml", "q"], "config file not found"),
        (["run", "q", "extra words"], "unexpected argument"),
        (
            [
                "run",
                "q",
                "executor=process",
                "message_broker=redis",
                "broker_url=redis://:pw@127.0.0.1:1/0",
            ],
            "cannot reach Redis at redis://***@127.0.0.1:1",
        ),
        (["claims", "nope"], "no claims database"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert "pw@" not in done.stderr


def test_a_run_whose_every_agent_fails_exits_1(tmp_path: Path) -> None:
    done = cli(
        "run",
        "q",
        "executor=process",
        "message_broker=memory",
        "loops=1",
        "agents=[{name: x, type: fail}]",
        f"storage.path={tmp_path / 'c.db'}",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "ValueError: synthetic failure" in done.stderr


def test_dlq_list_requeue_drop_on_redis(
    tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    from autoresearch_ray.brokers import get_message_broker
    from autoresearch_ray.messages import Stop

    broker = get_message_broker("redis", redis_url, namespace=redis_namespace)
    broker.put_raw(['{"action": "explode"}', "not json"])
    broker.publish(Stop())
    assert [d.message for d in broker.get_batch(10, timeout=1)] == [Stop()]
    ids = [d["delivery_id"] for d in broker.dead_letters()]
    assert len(ids) == 2
    where = [
        f"broker_url={redis_url}",
        f"namespace={redis_namespace}",
        "message_broker=redis",
        "executor=process",
    ]
    listed = cli("dlq", "list", *where, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "2 dead letters" in listed.stdout and "invalid message" in listed.stdout
    requeued = cli("dlq", "requeue", ids[0], *where, cwd=tmp_path)
    assert "requeued 1" in requeued.stdout
    assert broker.get_batch(10, timeout=1) == []  # validated again: still poison, dead again
    assert len(broker.dead_letters()) == 2
    dropped = cli("dlq", "drop", "--all", *where, cwd=tmp_path)
    assert "dropped 2" in dropped.stdout and broker.dead_letters() == []
    refused = cli("dlq", "list", cwd=tmp_path)
    assert refused.returncode == 2 and "only message_broker=redis" in refused.stderr
    broker.close()
