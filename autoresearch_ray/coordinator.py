"""``Coordinator``: owns a run's state. It takes agent results as they finish, publishes their
claims, waits for the claim store's acknowledgements, merges each loop in a deterministic order,
checkpoints it, and synthesizes the response.

A plain class. The executors host it (a Ray actor, or a local handle) and drive it through
``start_run`` → (``record`` per result) → ``finish_loop`` per loop → ``synthesize``.
"""

from __future__ import annotations

import time
from typing import Any

from .brokers.base import MessageBroker
from .errors import AckTimeout
from .hosting import resolve
from .messages import AgentResultMessage, PersistClaim
from .models import (
    AgentErrorInfo,
    AgentRecord,
    AgentResult,
    Claim,
    QueryResponse,
    QueryState,
    RunMetrics,
    bind_claim,
)
from .synthesis import collect_sources, rank_claims, synthesize_answer
from .telemetry import RunTelemetry

#: How often a coordinator waiting for acknowledgements checks whether the broker lost messages.
ACK_POLL_S = 1.0


class Coordinator:
    """The state owner of one run at a time."""

    def __init__(
        self,
        broker: MessageBroker,
        store: Any,
        ack_timeout_s: float = 60.0,
        batch_size: int = 1000,
        executor: str = "ray",
        storage_path: str = "",
        republish_after_s: float = 60.0,
    ) -> None:
        """``republish_after_s``: how long acknowledgements may stall before the unacknowledged
        messages are published again (the executor passes twice the broker lease)."""
        self.broker = broker
        self.store = store
        self.ack_timeout_s = ack_timeout_s
        self.batch_size = batch_size
        self.executor = executor
        self.storage_path = storage_path
        self.republish_after_s = republish_after_s
        self.republished = 0
        self.state: QueryState | None = None
        self._agent_order: dict[str, int] = {}
        self._loop_records: list[AgentRecord] = []
        self._loop_claims: dict[str, list[Claim]] = {}
        # The loop's published messages by id, in publishing order: what the loop waits for, and
        # what is republished if the broker lost them (a restarted queue actor, a Redis without
        # persistence).
        self._outbox: dict[str, PersistClaim | AgentResultMessage] = {}
        self._incarnation: str | None = None
        self._started = 0.0
        self.telemetry = RunTelemetry(executor, broker.name)

    def start_run(
        self,
        run_id: str,
        query: str,
        loops: int,
        agents: list[str],
        config: dict[str, Any],
        resume: bool = False,
    ) -> dict[str, Any]:
        """Begin a run, or with ``resume`` continue it after its last checkpointed loop; returns
        the state the next loop's agents see (its ``loop`` is the loop to run next)."""
        checkpoint = resolve(self.store.last_checkpoint.remote(run_id)) if resume else None
        resolve(self.store.start_run.remote(run_id, query, config, loops))
        if checkpoint is not None:
            self.state = QueryState.model_validate_json(checkpoint[1])
            self.state.loops = loops
        else:
            self.state = QueryState(run_id=run_id, query=query, loop=0, loops=loops)
        self._agent_order = {name: i for i, name in enumerate(agents)}
        self.republished = 0
        self._reset_loop()
        self._started = time.time()
        return self.state.model_dump(mode="json")

    def record_many(
        self, results: list[tuple[AgentResult | dict[str, Any], float, float]]
    ) -> list[dict[str, Any]]:
        """Take results as they arrive, as ``(result, submitted_at, received_at)``: one broker
        round trip publishes all their claims now; they are merged into the state at loop end."""
        records = [self._record(r, sub, rec) for r, sub, rec in results]
        messages = [m for _, batch in records for m in batch]
        if self._incarnation is None:
            # Taken before publishing: a broker re-created after this is noticed, whenever.
            self._incarnation = self.broker.incarnation()
        for message in messages:
            self._outbox[message.message_id] = message
        # Publishing as results arrive overlaps persistence with the loop's slower agents.
        self._publish(messages)
        return [record.model_dump(mode="json") for record, _ in records]

    def _record(
        self, result: AgentResult | dict[str, Any], submitted_at: float, received_at: float
    ) -> tuple[AgentRecord, list[PersistClaim | AgentResultMessage]]:
        state = self._require_state()
        if not isinstance(result, AgentResult):  # validated already when it is a model
            result = AgentResult.model_validate(result)
        claims: list[Claim] = []
        if result.status == "ok" and result.output is not None:
            claims = [
                bind_claim(state.run_id, result.loop, result.agent, d) for d in result.output.claims
            ]
        record = AgentRecord(
            loop=result.loop,
            agent=result.agent,
            status=result.status,
            claim_ids=tuple(c.claim_id for c in claims),
            summary=result.output.summary if result.output else "",
            error=result.error,
            error_type=result.error_type,
            duration_s=result.duration_s,
            started_at=result.started_at,
            finished_at=result.finished_at,
            submitted_at=submitted_at,
            received_at=received_at,
            arrival=len(self._loop_records),
            pid=result.pid,
            node_id=result.node_id,
        )
        messages: list[PersistClaim | AgentResultMessage] = [PersistClaim(claim=c) for c in claims]
        messages.append(
            AgentResultMessage(
                run_id=state.run_id,
                loop=result.loop,
                agent=result.agent,
                status=result.status,
                claim_ids=record.claim_ids,
                duration_s=result.duration_s,
                error=result.error,
                node_id=result.node_id,
                pid=result.pid,
            )
        )
        self._loop_records.append(record)
        self._loop_claims[result.agent] = claims
        self.telemetry.agent_done(result.agent, result.status, result.duration_s)
        return record, messages

    def finish_loop(self, loop: int) -> dict[str, Any]:
        """Wait for every acknowledgement of the loop, merge, checkpoint; returns the next state."""
        state = self._require_state()
        missing = self._await_acks(loop)
        if missing:
            why = resolve(self.store.consumer_error.remote())
            raise AckTimeout(
                f"loop {loop}: {len(missing)} of {len(self._outbox)} messages were not "
                f"acknowledged by the claim store within {self.ack_timeout_s}s"
                + (f" (consumer error: {why})" if why else "")
            )
        # Deterministic merge: configured agent order, whatever order the results arrived in.
        order = sorted(self._loop_records, key=lambda r: self._agent_order.get(r.agent, 1 << 30))
        for record in order:
            state.claims.extend(self._loop_claims.get(record.agent, []))
            state.records.append(record)
        state.loop = loop + 1
        if self.telemetry.enabled:
            self.telemetry.broker_stats(self.broker.stats())
        snapshot = state.model_dump(mode="json")
        resolve(self.store.checkpoint.remote(state.run_id, loop, state.model_dump_json()))
        self._reset_loop()
        return snapshot

    def synthesize(self, storage_path: str | None = None) -> dict[str, Any]:
        """The run's :class:`QueryResponse`; marks the run completed in the store."""
        state = self._require_state()
        ranked = rank_claims(state.claims)
        errors = tuple(
            AgentErrorInfo(
                loop=r.loop, agent=r.agent, error_type=r.error_type or "Error", error=r.error or ""
            )
            for r in state.records
            if r.status == "error"
        )
        durations = [r.duration_s for r in state.records]
        metrics = RunMetrics(
            loops=state.loop,
            agents=len(self._agent_order),
            agent_executions=len(state.records),
            agent_errors=len(errors),
            claims=len(state.claims),
            duration_s=time.time() - self._started,
            mean_agent_s=sum(durations) / len(durations) if durations else 0.0,
            executor=self.executor,
            message_broker=self.broker.name,
            nodes=tuple(sorted({r.node_id for r in state.records if r.node_id})),
            republished=self.republished,
        )
        response = QueryResponse(
            run_id=state.run_id,
            query=state.query,
            answer=synthesize_answer(state),
            claims=tuple(ranked),
            sources=tuple(collect_sources(ranked)),
            errors=errors,
            records=tuple(state.records),
            metrics=metrics,
            storage_path=storage_path or self.storage_path,
        )
        status = "completed" if len(errors) < len(state.records) or not state.records else "failed"
        resolve(self.store.finish_run.remote(state.run_id, status, response.model_dump_json()))
        return response.model_dump(mode="json")

    def flush(self, loop: int) -> int:
        """Wait for the acknowledgements of an unfinished loop without checkpointing it (a stop
        mid-loop keeps every claim that was produced); returns how many are still missing."""
        state = self._require_state()
        missing = self._await_acks(loop)
        resolve(self.store.finish_run.remote(state.run_id, "interrupted", None))
        self._reset_loop()
        return len(missing)

    def fail_run(self, reason: str) -> None:
        """Mark the current run failed (the driver hit an error it cannot recover from)."""
        if self.state is not None:
            resolve(self.store.finish_run.remote(self.state.run_id, "failed", None))

    def ping(self) -> bool:
        """Liveness check used by hosts."""
        return True

    def _publish(self, messages: list[PersistClaim | AgentResultMessage]) -> None:
        for start in range(0, len(messages), self.batch_size):
            self.broker.publish_batch(messages[start : start + self.batch_size])

    def _await_acks(self, loop: int) -> list[str]:
        """Wait up to ``ack_timeout_s`` for the loop's acknowledgements; returns the missing ids.

        Waits in slices of ``ACK_POLL_S``. Between slices, if the broker is a new incarnation
        (it lost what it held) or no acknowledgement arrived for ``republish_after_s``, the
        messages still missing are published again; the store's upsert makes that harmless.
        """
        state = self._require_state()
        deadline = time.monotonic() + self.ack_timeout_s
        waiting = list(self._outbox)
        last_progress = time.monotonic()
        while True:
            remaining = deadline - time.monotonic()
            slice_s = max(0.0, min(ACK_POLL_S, remaining))
            missing = resolve(self.store.wait_for.remote(state.run_id, loop, waiting, slice_s))
            if not missing or remaining <= ACK_POLL_S:
                return list(missing)
            now = time.monotonic()
            if len(missing) < len(waiting):
                last_progress = now
            waiting = missing
            incarnation = self.broker.incarnation()
            if incarnation != self._incarnation or now - last_progress >= self.republish_after_s:
                self._publish([self._outbox[m] for m in missing])
                self.republished += len(missing)
                self._incarnation, last_progress = incarnation, now

    def _reset_loop(self) -> None:
        self._loop_records = []
        self._loop_claims = {}
        self._outbox = {}
        self._incarnation = None

    def _require_state(self) -> QueryState:
        if self.state is None:
            raise RuntimeError("no run in progress: call start_run first")
        return self.state
