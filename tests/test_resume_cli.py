"""The driver stopped (SIGTERM) or killed (SIGKILL) mid-run, then `run --resume RUN_ID`:
nothing acknowledged is lost, nothing stored twice, checkpointed loops are not run again, and
no worker process outlives its driver."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .conftest import REPO
from .ledger import Ledger


def agents(log: Path) -> str:
    """Three sleep agents that log every execution they start to ``log``."""
    params = f"task_time: 0.4, claims: {CLAIMS}, log_path: '{log}'"
    specs = (f"{{name: a{i}, type: sleep, params: {{{params}}}}}" for i in range(3))
    return "agents=[" + ", ".join(specs) + "]"


LOOPS = 4
CLAIMS = 25
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def command(db: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "autoresearch_ray.cli",
        "run",
        *extra,
        "executor=process",
        "message_broker=memory",
        f"loops={LOOPS}",
        agents(db.parent / "executions.jsonl"),
        f"storage.path={db}",
    ]


def resume(db: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    """`run --resume RUN_ID`, the query taken from the stored run."""
    return subprocess.run(
        command(db, "--resume", run_id),
        cwd=db.parent,
        capture_output=True,
        text=True,
        timeout=240,
        env=ENV,
    )


def wait_for_checkpoint(db: Path, run_id: str, loops: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                row = con.execute(
                    "SELECT loops_completed FROM runs WHERE run_id = ?", (run_id,)
                ).fetchone()
        except sqlite3.OperationalError:
            row = None  # the file exists before the store has created its tables
        if row and row[0] >= loops:
            return
        time.sleep(0.05)
    pytest.fail(f"run {run_id} did not checkpoint {loops} loop(s) in {timeout}s")


def ledger(db: Path, run_id: str) -> tuple[int, int, set[int], str]:
    """(rows, distinct claim ids, loops with claims, integrity check); no id stored twice."""
    with sqlite3.connect(db) as con:
        rows, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT claim_id) FROM claims WHERE run_id = ?", (run_id,)
        ).fetchone()
        dup = con.execute(
            "SELECT claim_id FROM claims GROUP BY claim_id HAVING COUNT(*) > 1"
        ).fetchall()
        loops = {
            r[0]
            for r in con.execute("SELECT DISTINCT loop FROM claims WHERE run_id = ?", (run_id,))
        }
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    assert dup == []
    return rows, distinct, loops, integrity


def _running(pid: int) -> bool:
    # One call, no check-then-use: the process may exit between any two calls.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def alive(pids: list[int], grace: float = 5.0) -> list[int]:
    deadline = time.monotonic() + grace
    while True:
        left = [p for p in pids if _running(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.mark.chaos
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_driver_stopped_or_killed_then_resumed(tmp_path: Path, sig: signal.Signals) -> None:
    db = tmp_path / "claims.db"
    run_id = f"chaos-{sig.name.lower()}"
    started = time.monotonic()
    # Output to files, not pipes: a dead driver's children must not hold a pipe we wait on.
    with open(tmp_path / "err.txt", "w") as err_file:
        proc = subprocess.Popen(
            command(db, "resume me", f"--run-id={run_id}"),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            env=ENV,
        )
        try:
            wait_for_checkpoint(db, run_id, 1)
            children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
            proc.send_signal(sig)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = (tmp_path / "err.txt").read_text()
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, err
        assert f"--resume {run_id}" in err and "stopping" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert children and alive(children) == [], err  # the pool went with its driver
    rows_before, _, loops_before, _ = ledger(db, run_id)
    assert 0 in loops_before and rows_before >= 3 * CLAIMS, err  # loop 0's claims survived
    with sqlite3.connect(db) as con:
        stored_before = {r[0] for r in con.execute("SELECT claim_id FROM claims")}
    done = resume(db, run_id)
    assert done.returncode == 0, done.stderr
    rows, distinct, loops, integrity = ledger(db, run_id)
    assert (rows, distinct) == (LOOPS * 3 * CLAIMS,) * 2  # every claim once: lost 0, duplicated 0
    assert loops == set(range(LOOPS)) and integrity == "ok"
    books = Ledger(f"driver {sig.name} then --resume", db, [run_id], started=started)
    books.attempts_from(tmp_path / "executions.jsonl")
    with sqlite3.connect(db) as con:
        response = json.loads(
            con.execute("SELECT response_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
        )
    # What was stored before the driver died counts as acknowledged, as does the final answer.
    books.acknowledged_from(stored_before | {c["claim_id"] for c in response["claims"]})
    books.check()
    again = resume(db, run_id)
    assert again.returncode == 0 and "already completed" in again.stdout
