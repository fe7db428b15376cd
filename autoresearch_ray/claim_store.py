"""``ClaimStore``: the only writer of claims.

SQLite in WAL mode, idempotent upsert, acknowledgement after commit.

It consumes ``persist_claim`` and ``agent_result`` messages from a broker in batches: one
transaction per batch, committed before the batch is acknowledged, so a crash between the two
means a redelivery that the upsert on ``claim_id`` absorbs (exactly-once effect). Runs and loop
checkpoints are written through direct calls, by the same object, on the same connection.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from . import failpoints
from .brokers.base import Delivery, MessageBroker
from .errors import StorageError
from .messages import AgentResultMessage, PersistClaim, Stop, result_key
from .models import Claim, Source
from .telemetry import RunTelemetry

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    query TEXT NOT NULL,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL,
    loops INTEGER NOT NULL,
    loops_completed INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    response_json TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    claim_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    loop INTEGER NOT NULL,
    agent TEXT NOT NULL,
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    sources_json TEXT NOT NULL,
    score REAL,
    metadata_json TEXT NOT NULL,
    stored_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_by_run ON claims (run_id, loop, agent);
CREATE TABLE IF NOT EXISTS agent_results (
    run_id TEXT NOT NULL,
    loop INTEGER NOT NULL,
    agent TEXT NOT NULL,
    status TEXT NOT NULL,
    claim_count INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    error TEXT,
    node_id TEXT,
    pid INTEGER,
    stored_at REAL NOT NULL,
    PRIMARY KEY (run_id, loop, agent)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL,
    loop INTEGER NOT NULL,
    state_json TEXT NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (run_id, loop)
);
"""

_INSERT_CLAIM = """
INSERT INTO claims (claim_id, run_id, loop, agent, kind, content, sources_json, score,
                    metadata_json, stored_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (claim_id) DO NOTHING
"""
_UPSERT_RESULT = """
INSERT INTO agent_results (run_id, loop, agent, status, claim_count, duration_s, error, node_id,
                           pid, stored_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, loop, agent) DO UPDATE SET
    status = excluded.status, claim_count = excluded.claim_count,
    duration_s = excluded.duration_s, error = excluded.error, node_id = excluded.node_id,
    pid = excluded.pid, stored_at = excluded.stored_at
"""
_CLAIM_COLUMNS = "claim_id, run_id, loop, agent, kind, content, sources_json, score, metadata_json"
#: SQLite page cache of the writer, KiB: holds the claim-id index of ~10^6 claims.
CACHE_KIB = 65_536
#: Committed ids remembered across open loops; past this, wait_for asks the database instead, so
#: millions of claims cost bounded memory.
RECENT_LIMIT = 200_000

_SOURCES: TypeAdapter[tuple[Source, ...]] = TypeAdapter(tuple[Source, ...])
# SQLite's default limit on bound parameters is 999 in older builds; stay under it.
_CHUNK = 500


class ClaimStore:
    """The single writer of the claims database. Thread-safe: one connection behind a lock."""

    def __init__(
        self,
        path: str | Path,
        readonly: bool = False,
        consume_from: MessageBroker | None = None,
        batch_size: int = 1000,
        executor: str = "",
    ) -> None:
        """Open (or create) the database at ``path``. With ``consume_from``, start consuming that
        broker at once: a Ray actor restarted after a crash re-runs its constructor, and so
        resumes consuming by itself (its unacknowledged batch comes back by redelivery)."""
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._committed = threading.Condition(self._lock)
        self._consumer: threading.Thread | None = None
        self._stop_consumer = threading.Event()
        self._consumer_error: BaseException | None = None
        # Message ids committed by this object, per open (run, loop): lets wait_for answer from
        # memory. Dropped when the loop is checkpointed, so it holds one loop's worth at most.
        self._recent: dict[tuple[str, int], set[str]] = {}
        self._recent_size = 0
        self.persisted = 0
        self.telemetry = RunTelemetry()
        try:
            if readonly:
                if not self.path.is_file():
                    raise StorageError(f"no claims database at {self.path}")
                uri = f"file:{self.path}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(
                    self.path, check_same_thread=False, isolation_level=None, timeout=30
                )
                # WAL lets readers (the CLI, tests) read while the store writes. NORMAL sync is
                # durable across process crashes in WAL mode; only an OS crash can lose the tail.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                # Claim ids are hashes, so inserts land all over the primary-key index; with the
                # default 2 MB page cache, 10^6 claims made each insert ~3x slower than the first.
                self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
                self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open claims database {self.path}: {exc}") from None
        if consume_from is not None:
            self.start_consumer(consume_from, batch_size, executor)

    # -- writing -------------------------------------------------------------------------------

    def start_run(self, run_id: str, query: str, config: dict[str, Any], loops: int) -> None:
        """Record a run (or mark an existing one running again)."""
        now = time.time()
        with self._lock:
            self._execute(
                """INSERT INTO runs (run_id, query, config_json, status, loops, created_at,
                                     updated_at)
                   VALUES (?, ?, ?, 'running', ?, ?, ?)
                   ON CONFLICT (run_id) DO UPDATE SET status = 'running', query = excluded.query,
                       config_json = excluded.config_json, loops = excluded.loops,
                       updated_at = excluded.updated_at""",
                (run_id, query, json.dumps(config, sort_keys=True), loops, now, now),
            )

    def checkpoint(self, run_id: str, loop: int, state_json: str) -> None:
        """Record the state after a loop whose claims are all stored."""
        now = time.time()
        with self._lock:
            self._recent_size -= len(self._recent.pop((run_id, loop), ()))
            self._transaction(
                [
                    (
                        "INSERT OR REPLACE INTO checkpoints (run_id, loop, state_json, stored_at) "
                        "VALUES (?, ?, ?, ?)",
                        [(run_id, loop, state_json, now)],
                    ),
                    (
                        "UPDATE runs SET loops_completed = MAX(loops_completed, ?), "
                        "updated_at = ? WHERE run_id = ?",
                        [(loop + 1, now, run_id)],
                    ),
                ]
            )

    def finish_run(self, run_id: str, status: str, response_json: str | None = None) -> None:
        """Mark a run finished (``completed`` or ``failed``) with its response."""
        with self._lock:
            for key in [k for k in self._recent if k[0] == run_id]:
                self._recent_size -= len(self._recent.pop(key))
            self._execute(
                "UPDATE runs SET status = ?, response_json = ?, updated_at = ? WHERE run_id = ?",
                (status, response_json, time.time(), run_id),
            )

    def persist(self, messages: Sequence[PersistClaim | AgentResultMessage | Stop]) -> list[str]:
        """Write messages in one transaction; returns their message ids once committed."""
        now = time.time()
        claims, results = [], []
        for message in messages:
            if isinstance(message, PersistClaim):
                c = message.claim
                claims.append(
                    (
                        c.claim_id,
                        c.run_id,
                        c.loop,
                        c.agent,
                        c.kind,
                        c.content,
                        _SOURCES.dump_json(c.sources).decode(),
                        c.score,
                        json.dumps(c.metadata, sort_keys=True) if c.metadata else "{}",
                        now,
                    )
                )
            elif isinstance(message, AgentResultMessage):
                results.append(
                    (
                        message.run_id,
                        message.loop,
                        message.agent,
                        message.status,
                        len(message.claim_ids),
                        message.duration_s,
                        message.error,
                        message.node_id,
                        message.pid,
                        now,
                    )
                )
        ids = [m.message_id for m in messages if not isinstance(m, Stop)]
        with self._lock:
            self._transaction([(_INSERT_CLAIM, claims), (_UPSERT_RESULT, results)])
            self.persisted += len(claims)
            self.telemetry.claims_persisted(len(claims))
            for message in messages:
                if isinstance(message, PersistClaim):
                    key = (message.claim.run_id, message.claim.loop)
                elif isinstance(message, AgentResultMessage):
                    key = (message.run_id, message.loop)
                else:
                    continue
                if self._recent_size < RECENT_LIMIT:
                    self._recent.setdefault(key, set()).add(message.message_id)
                    self._recent_size += 1
            self._committed.notify_all()
        return ids

    # -- consuming -----------------------------------------------------------------------------

    def consume(self, broker: MessageBroker, max_items: int = 1000, timeout: float = 0.5) -> int:
        """One consumer step: lease a batch, commit it, then ack it. Returns messages handled.

        Returns -1 once a ``stop`` message has been handled.
        """
        batch: list[Delivery] = broker.get_batch(max_items, timeout)
        if not batch:
            return 0
        messages = [d.message for d in batch]
        failpoints.hit("claim_store.before_commit")
        self.persist(messages)
        failpoints.hit("claim_store.after_commit")
        # Only after the commit: a crash before this line means redelivery, never loss.
        broker.ack([d.delivery_id for d in batch])
        if any(isinstance(m, Stop) for m in messages):
            return -1
        return len(batch)

    def start_consumer(
        self, broker: MessageBroker, max_items: int = 1000, executor: str = ""
    ) -> None:
        """Consume ``broker`` on a background thread until ``stop_consumer`` or a stop message.

        ``executor`` labels this store's exported metrics.
        """
        if self._consumer is not None and self._consumer.is_alive():
            return
        self.telemetry = RunTelemetry(executor, broker.name)
        self._stop_consumer.clear()
        self._consumer_error = None

        def pump() -> None:
            while not self._stop_consumer.is_set():
                try:
                    if self.consume(broker, max_items, timeout=0.2) < 0:
                        return
                except Exception as exc:
                    # Keep the error for waiters; back off and retry (Redis may come back).
                    self._consumer_error = exc
                    with self._lock:
                        self._committed.notify_all()
                    time.sleep(0.5)
                else:
                    self._consumer_error = None

        self._consumer = threading.Thread(target=pump, name="claim-store-consumer", daemon=True)
        self._consumer.start()

    def stop_consumer(self, timeout: float = 10.0) -> None:
        """Stop the background consumer after its current batch."""
        self._stop_consumer.set()
        if self._consumer is not None:
            self._consumer.join(timeout)
            self._consumer = None

    def wait_for(
        self, run_id: str, loop: int, message_ids: Sequence[str], timeout: float
    ) -> list[str]:
        """Block until every message id of a loop is committed or ``timeout`` passes; returns
        the missing ones."""
        deadline = time.monotonic() + timeout
        key = (run_id, loop)
        missing = set(message_ids)
        with self._lock:
            missing -= self._recent.get(key, set())
            if missing:  # committed before a restart of this store, or by another one
                missing = set(self._missing(missing))
            while missing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._committed.wait(min(remaining, 0.5))
                missing -= self._recent.get(key, set())
        return sorted(missing)

    def persisted_count(self) -> int:
        """Claims written by this object so far (redeliveries included)."""
        return self.persisted

    def consumer_error(self) -> str | None:
        """The last error of the background consumer, if it is failing now."""
        return None if self._consumer_error is None else str(self._consumer_error)

    # -- reading -------------------------------------------------------------------------------

    def claims(self, run_id: str) -> list[Claim]:
        """Every stored claim of a run, by loop, agent and claim id."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE run_id = ? "
                "ORDER BY loop, agent, stored_at, claim_id",
                (run_id,),
            ).fetchall()
        return [_claim_from_row(row) for row in rows]

    def claim_count(self, run_id: str | None = None) -> int:
        """Stored claims of a run, or of every run."""
        with self._lock:
            if run_id is None:
                row = self._db.execute("SELECT COUNT(*) FROM claims").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM claims WHERE run_id = ?", (run_id,)
                ).fetchone()
        return int(row[0])

    def runs(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Every run (or the one ``run_id``), newest first, with its claim count."""
        where, params = ("WHERE r.run_id = ?", (run_id,)) if run_id is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"""SELECT r.run_id, r.query, r.status, r.loops, r.loops_completed, r.created_at,
                           r.updated_at, (SELECT COUNT(*) FROM claims c WHERE c.run_id = r.run_id)
                    FROM runs r {where} ORDER BY r.created_at DESC""",
                params,
            ).fetchall()
        keys = (
            "run_id",
            "query",
            "status",
            "loops",
            "loops_completed",
            "created_at",
            "updated_at",
            "claims",
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's record, or None."""
        found = self.runs(run_id)
        return found[0] if found else None

    def agent_results(self, run_id: str) -> list[dict[str, Any]]:
        """Stored agent results of a run, by loop and agent."""
        with self._lock:
            rows = self._db.execute(
                "SELECT loop, agent, status, claim_count, duration_s, error, node_id, pid "
                "FROM agent_results WHERE run_id = ? ORDER BY loop, agent",
                (run_id,),
            ).fetchall()
        keys = ("loop", "agent", "status", "claim_count", "duration_s", "error", "node_id", "pid")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def last_checkpoint(self, run_id: str) -> tuple[int, str] | None:
        """The newest checkpoint of a run: (loop, state JSON)."""
        with self._lock:
            row = self._db.execute(
                "SELECT loop, state_json FROM checkpoints WHERE run_id = ? "
                "ORDER BY loop DESC LIMIT 1",
                (run_id,),
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def journal_mode(self) -> str:
        """SQLite's journal mode (``wal`` when writable)."""
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def ping(self) -> bool:
        """Liveness check used by hosts."""
        return True

    def close(self) -> None:
        """Stop the consumer and close the database; idempotent."""
        self.stop_consumer()
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    # -- internals -----------------------------------------------------------------------------

    def _missing(self, message_ids: Iterable[str]) -> list[str]:
        ids = list(message_ids)
        claim_ids = [i for i in ids if not i.startswith("result:")]
        result_ids = [i for i in ids if i.startswith("result:")]
        found: set[str] = set()
        for start in range(0, len(claim_ids), _CHUNK):
            chunk = claim_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._db.execute(
                    f"SELECT claim_id FROM claims WHERE claim_id IN ({marks})", chunk
                )
            )
        loops: set[tuple[str, int]] = set()
        for key in result_ids:
            # Agent names hold no ':' and loops are integers, so split from the right.
            head, loop, _agent = key.rsplit(":", 2)
            loops.add((head.removeprefix("result:"), int(loop)))
        for run_id, loop_no in loops:
            stored = self._db.execute(
                "SELECT agent FROM agent_results WHERE run_id = ? AND loop = ?", (run_id, loop_no)
            )
            found.update(result_key(run_id, loop_no, row[0]) for row in stored)
        return [i for i in ids if i not in found]

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        if self.readonly:
            raise StorageError("the claims database is open read-only")
        try:
            self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: {exc}") from None

    def _transaction(self, statements: Sequence[tuple[str, Sequence[tuple[Any, ...]]]]) -> None:
        if self.readonly:
            raise StorageError("the claims database is open read-only")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    if rows:
                        self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: {exc}") from None


def _claim_from_row(row: Sequence[Any]) -> Claim:
    claim_id, run_id, loop, agent, kind, content, sources_json, score, metadata_json = row
    return Claim(
        claim_id=claim_id,
        run_id=run_id,
        loop=loop,
        agent=agent,
        kind=kind,
        content=content,
        sources=tuple(Source.model_validate(s) for s in json.loads(sources_json)),
        score=score,
        metadata=json.loads(metadata_json),
    )
