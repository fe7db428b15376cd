"""The claim store against a real SQLite file: WAL, idempotent upsert, ack only after commit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from autoresearch_ray.brokers import get_message_broker
from autoresearch_ray.claim_store import ClaimStore
from autoresearch_ray.errors import StorageError
from autoresearch_ray.messages import AgentResultMessage, PersistClaim, Stop
from autoresearch_ray.models import ClaimDraft, Source, bind_claim


def claims(n: int, run: str = "r1", loop: int = 0) -> list[PersistClaim]:
    return [
        PersistClaim(
            claim=bind_claim(
                run, loop, "a", ClaimDraft(content=f"c{i}", sources=(Source(ref="s"),))
            )
        )
        for i in range(n)
    ]


def test_wal_and_idempotent_upsert(tmp_path: Path) -> None:
    store = ClaimStore(tmp_path / "c.db")
    assert store.journal_mode() == "wal"
    store.start_run("r1", "q", {}, 1)
    batch = claims(5)
    store.persist(batch)
    store.persist(batch)  # a redelivery
    assert store.claim_count("r1") == 5
    rows = (
        sqlite3.connect(tmp_path / "c.db")
        .execute("SELECT claim_id, COUNT(*) FROM claims GROUP BY claim_id HAVING COUNT(*) > 1")
        .fetchall()
    )
    assert rows == []
    assert [c.claim_id for c in store.claims("r1")] == sorted(m.claim.claim_id for m in batch)
    store.close()


def test_consume_commits_then_acks_and_stops_on_stop(tmp_path: Path) -> None:
    broker = get_message_broker("memory")
    store = ClaimStore(tmp_path / "c.db")
    store.start_run("r1", "q", {}, 1)
    broker.publish_batch(
        [
            *claims(3),
            AgentResultMessage(
                run_id="r1", loop=0, agent="a", status="ok", claim_ids=(), duration_s=0.0
            ),
        ]
    )
    assert store.consume(broker) == 4
    assert broker.stats()["in_flight"] == 0
    assert store.agent_results("r1")[0]["status"] == "ok"
    broker.publish(Stop())
    assert store.consume(broker) == -1
    store.close()


def test_a_failed_commit_is_not_acknowledged_and_is_redelivered(tmp_path: Path) -> None:
    broker = get_message_broker("memory", lease_seconds=0.1)
    store = ClaimStore(tmp_path / "c.db")
    broker.publish_batch(claims(2))
    original = store._transaction

    def broken(*args: object) -> None:
        raise StorageError("disk full")

    store._transaction = broken  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        store.consume(broker)
    assert broker.stats()["in_flight"] == 2  # leased, not acknowledged
    store._transaction = original  # type: ignore[method-assign]
    store2 = ClaimStore(tmp_path / "c.db")  # e.g. the restarted store
    assert store2.consume(broker, timeout=1) == 2
    assert store2.claim_count() == 2
    store.close()
    store2.close()


def test_background_consumer_and_wait_for(tmp_path: Path) -> None:
    broker = get_message_broker("memory")
    store = ClaimStore(tmp_path / "c.db")
    store.start_consumer(broker)
    batch = claims(50)
    broker.publish_batch(batch)
    assert store.wait_for("r1", 0, [m.message_id for m in batch], timeout=5) == []
    never = "never-published-claim-id"
    assert store.wait_for("r1", 0, [never], timeout=0.2) == [never]
    store.close()
    # A new store (a restart) answers from the database.
    again = ClaimStore(tmp_path / "c.db")
    assert again.wait_for("r1", 0, [m.message_id for m in batch], timeout=0.1) == []
    again.close()


def test_readonly_reader_and_runs_listing(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = ClaimStore(path)
    store.start_run("r1", "what?", {"loops": 1}, 1)
    store.persist(claims(2))
    store.checkpoint("r1", 0, "{}")
    store.finish_run("r1", "completed", "{}")
    reader = ClaimStore(path, readonly=True)
    (run,) = reader.runs()
    assert run["run_id"] == "r1" and run["status"] == "completed" and run["claims"] == 2
    assert run["loops_completed"] == 1
    with pytest.raises(StorageError, match="read-only"):
        reader.persist(claims(1))
    with pytest.raises(StorageError, match="no claims database"):
        ClaimStore(tmp_path / "absent.db", readonly=True)
    reader.close()
    store.close()


def test_unwritable_path_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((StorageError, OSError)):
        ClaimStore(blocker / "c.db")
