"""Synthetic agents for tests, simulation and benchmarks: ``noop``, ``sleep`` and ``claims``,
and for fault injection ``fail``, ``garbage``, ``crash`` and ``flaky``."""

from __future__ import annotations

import json
import os
import time

from ..errors import RetryableAgentError
from ..models import AgentOutput, ClaimDraft, QueryState, Source, make_claim_id
from .base import AgentContext
from .registry import register_agent


@register_agent("noop")
class NoopAgent:
    """Does nothing and returns no claims: measures the runtime's own overhead."""

    name = "noop"

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput:
        """Return an empty output."""
        return AgentOutput()


@register_agent("sleep")
class SleepAgent:
    """Sleeps ``task_time`` seconds (after ``dispatch_latency`` seconds), optionally with claims.

    ``dispatch_latency`` models time spent before the work starts on the worker (network, queueing)
    and ``task_time`` the work itself; the simulation separates them.
    """

    name = "sleep"

    def __init__(
        self,
        task_time: float = 0.01,
        dispatch_latency: float = 0.0,
        claims: int = 0,
        log_path: str | None = None,
    ):
        if task_time < 0 or dispatch_latency < 0 or claims < 0:
            raise ValueError("task_time, dispatch_latency and claims must be >= 0")
        self.task_time = float(task_time)
        self.dispatch_latency = float(dispatch_latency)
        self.claims = int(claims)
        self.log_path = log_path

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput:
        """Sleep, then return ``claims`` claims naming the loop. With ``log_path`` the execution
        is logged when it starts, so one killed mid-sleep still shows as attempted."""
        claims = _make_claims(self.claims, state, context)
        if self.log_path:
            log_execution(self.log_path, context, claims)
        if self.dispatch_latency:
            time.sleep(self.dispatch_latency)
        time.sleep(self.task_time)
        return AgentOutput(claims=claims)


@register_agent("claims")
class ClaimsAgent:
    """Emits ``count`` deterministic claims per execution, each with a source.

    With ``log_path``, every execution first appends one JSON line (run, loop, agent, attempt,
    pid, claim ids) to that file: the "attempted" side of a fault-injection ledger.
    """

    name = "claims"

    def __init__(self, count: int = 2, kind: str = "finding", log_path: str | None = None):
        if count < 0:
            raise ValueError("count must be >= 0")
        self.count = int(count)
        self.kind = kind
        self.log_path = log_path

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput:
        """Return ``count`` claims that differ by agent, loop and index."""
        claims = _make_claims(self.count, state, context, self.kind)
        if self.log_path:
            log_execution(self.log_path, context, claims)
        return AgentOutput(
            claims=claims,
            summary=f"{context.agent} made {self.count} claims in loop {context.loop}",
        )


def log_execution(path: str, context: AgentContext, claims: tuple[ClaimDraft, ...]) -> None:
    """Append one execution's record to a JSON-lines file in a single write (O_APPEND keeps
    lines from concurrent processes whole)."""
    record = {
        "run_id": context.run_id,
        "loop": context.loop,
        "agent": context.agent,
        "attempt": context.attempt,
        "pid": os.getpid(),
        "claim_ids": [
            make_claim_id(context.run_id, context.loop, context.agent, draft) for draft in claims
        ],
    }
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def _make_claims(
    count: int, state: QueryState, context: AgentContext, kind: str = "finding"
) -> tuple[ClaimDraft, ...]:
    return tuple(
        ClaimDraft(
            content=f"{context.agent} claim {i} on {state.query!r} (loop {context.loop})",
            kind=kind,
            sources=(
                Source(ref=f"synthetic://{context.agent}/{i}", title=f"{context.agent} #{i}"),
            ),
            score=1.0 / (i + 1),
        )
        for i in range(count)
    )


@register_agent("fail")
class FailAgent:
    """Raises ``error`` (an exception message) in the loops listed in ``loops`` (all by default)."""

    name = "fail"

    def __init__(self, error: str = "synthetic failure", loops: list[int] | None = None):
        self.error = error
        self.loops = None if loops is None else set(loops)

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput:
        """Raise in the chosen loops, else return one claim."""
        if self.loops is None or context.loop in self.loops:
            raise ValueError(self.error)
        return AgentOutput(claims=_make_claims(1, state, context))


@register_agent("garbage")
class GarbageAgent:
    """Returns something that is not an AgentOutput (``kind``: number, bad_claims)."""

    name = "garbage"

    def __init__(self, kind: str = "number"):
        self.kind = kind

    def execute(self, state: QueryState, context: AgentContext) -> object:
        """Return garbage of the chosen kind."""
        if self.kind == "bad_claims":
            return {"claims": [{"content": ""}]}
        return 42


@register_agent("crash")
class CrashAgent:
    """Kills its own worker process (SIGKILL) the first time it runs for a (run, loop), then
    behaves like ``claims``. A marker file in ``marker_dir`` remembers the first attempt."""

    name = "crash"

    def __init__(self, marker_dir: str, count: int = 2, log_path: str | None = None):
        self.marker_dir = marker_dir
        self.count = count
        self.log_path = log_path

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput:
        """Die once per loop; return claims when run again."""
        import signal
        from pathlib import Path

        claims = _make_claims(self.count, state, context)
        if self.log_path:
            log_execution(self.log_path, context, claims)
        marker = Path(self.marker_dir) / f"{context.run_id}-{context.loop}-{context.agent}"
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return AgentOutput(claims=claims)


@register_agent("flaky")
class FlakyAgent:
    """Raises :class:`RetryableAgentError` on its first ``retryable_failures`` attempts of each
    execution; after that returns ``count`` claims, or with ``then="fatal"`` raises a plain
    (non-retryable) error."""

    name = "flaky"

    def __init__(self, retryable_failures: int = 1, then: str = "ok", count: int = 2):
        if then not in ("ok", "fatal"):
            raise ValueError(f"then must be 'ok' or 'fatal', not {then!r}")
        self.retryable_failures = int(retryable_failures)
        self.then = then
        self.count = int(count)

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput:
        """Fail as configured for this attempt, else return claims."""
        if context.attempt <= self.retryable_failures:
            raise RetryableAgentError(f"transient failure on attempt {context.attempt}")
        if self.then == "fatal":
            raise ValueError(f"permanent failure on attempt {context.attempt}")
        return AgentOutput(claims=_make_claims(self.count, state, context))
