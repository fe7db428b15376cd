"""The fault-injection ledger: what was attempted, acknowledged and stored, and the verdict.

Each chaos test builds one :class:`Ledger` and calls :meth:`Ledger.check`, which asserts
lost = 0, unexpected = 0, duplicated = 0, nothing pending, ``PRAGMA integrity_check`` ok, and
adds the scenario's summary line to :data:`REPORT` (printed at the end of the pytest run).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Summary lines of the chaos scenarios run in this session, in order.
REPORT: list[str] = []


def executions(log_path: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    """Execution records appended by agents with ``log_path`` (one JSON line each)."""
    if not log_path.exists():
        return []
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    return [r for r in records if run_id is None or r["run_id"] == run_id]


def drain(broker: Any, timeout: float) -> dict[str, int]:
    """Wait until the broker holds nothing ready or in flight; returns its last stats."""
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, int] = broker.stats()
        if (stats["ready"] == 0 and stats["in_flight"] == 0) or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


@dataclass
class Ledger:
    """One scenario's books."""

    scenario: str
    db_path: Path
    run_ids: list[str]
    started: float = field(default_factory=time.monotonic)
    #: Claim ids agents produced (from the execution log), across every attempt.
    attempted: set[str] = field(default_factory=set)
    #: Claim ids the runtime reported as acknowledged (a loop completes only once all are).
    acknowledged: set[str] = field(default_factory=set)
    redelivered: int = 0
    republished: int = 0
    reruns: int = 0
    broker_stats: dict[str, int] | None = None

    def attempts_from(self, log_path: Path) -> None:
        """Count every logged execution of this scenario's runs as attempted."""
        for run_id in self.run_ids:
            seen: Counter[tuple[int, str]] = Counter()
            for record in executions(log_path, run_id):
                self.attempted.update(record["claim_ids"])
                seen[(record["loop"], record["agent"])] += 1
            self.reruns += sum(n - 1 for n in seen.values())

    def acknowledged_from(self, claim_ids: Iterable[str]) -> None:
        """Claims a finished run (or a broker's publisher) holds as acknowledged."""
        self.acknowledged.update(claim_ids)

    def check(self) -> str:
        """Assert the scenario's books balance; returns (and records) its summary line."""
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            marks = ",".join("?" * len(self.run_ids))
            rows = db.execute(
                f"SELECT claim_id, COUNT(*) FROM claims WHERE run_id IN ({marks}) "
                "GROUP BY claim_id",
                self.run_ids,
            ).fetchall()
            # Twice by content, whatever the key says: a re-run that minted a new id would show.
            twice = db.execute(
                f"SELECT run_id, loop, agent, content, COUNT(*) FROM claims "
                f"WHERE run_id IN ({marks}) GROUP BY run_id, loop, agent, content "
                "HAVING COUNT(*) > 1",
                self.run_ids,
            ).fetchall()
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            db.close()
        stored = {claim_id for claim_id, _ in rows}
        duplicated = sum(n - 1 for _, n in rows) + sum(row[-1] - 1 for row in twice)
        lost = self.acknowledged - stored
        unexpected = stored - self.attempted if self.attempted else set()
        pending = 0
        if self.broker_stats is not None:
            pending = self.broker_stats["ready"] + self.broker_stats["in_flight"]
            self.redelivered += self.broker_stats.get("redelivered", 0)
        line = (
            f"ledger {self.scenario}: messages={len(self.attempted or self.acknowledged)} "
            f"stored={len(stored)} lost={len(lost)} duplicated={duplicated} "
            f"unexpected={len(unexpected)} pending={pending} redelivered={self.redelivered} "
            f"republished={self.republished} reruns={self.reruns} integrity={integrity} "
            f"seconds={time.monotonic() - self.started:.1f}"
        )
        REPORT.append(line)
        assert self.acknowledged, f"{self.scenario}: nothing was acknowledged; the test is empty"
        assert not lost, f"{line}\nlost: {sorted(lost)[:5]}"
        assert not unexpected, f"{line}\nunexpected: {sorted(unexpected)[:5]}"
        assert duplicated == 0, line
        assert pending == 0, line
        assert integrity == "ok", line
        return line
