"""Data that flows through a run: claims, agent outputs and results, query state, the response.

All models are pydantic so they cross every process boundary as validated JSON.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Source(BaseModel):
    """Where a claim comes from: a reference (URL, file, module path) and an optional locator."""

    model_config = _STRICT

    ref: str = Field(min_length=1, max_length=2048)
    title: str | None = Field(default=None, max_length=2048)
    location: str | None = Field(default=None, max_length=512)


class ClaimDraft(BaseModel):
    """A claim as an agent emits it; the runtime assigns its id, run, loop and agent."""

    model_config = _STRICT

    content: str = Field(min_length=1, max_length=65536)
    kind: str = Field(default="finding", min_length=1, max_length=64)
    sources: tuple[Source, ...] = ()
    score: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Claim(ClaimDraft):
    """A claim with its identity. ``claim_id`` is stable: see :func:`make_claim_id`."""

    claim_id: str = Field(min_length=16, max_length=128)
    run_id: str = Field(min_length=1, max_length=256)
    loop: int = Field(ge=0)
    agent: str = Field(min_length=1, max_length=256)


def make_claim_id(run_id: str, loop: int, agent: str, draft: ClaimDraft) -> str:
    """Hash of run, loop, agent and the claim's content: a redelivered or re-run claim keeps its id.

    The content part covers text, kind and sources: two different claims never collide, while the
    same claim produced again (a retried task, a re-run with the same run id) maps to the same row.
    """
    content = json.dumps(
        [draft.content, draft.kind, [s.model_dump(mode="json") for s in draft.sources]],
        sort_keys=True,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(
        json.dumps([run_id, loop, agent, content], separators=(",", ":")).encode()
    )
    return digest.hexdigest()[:32]


def bind_claim(run_id: str, loop: int, agent: str, draft: ClaimDraft) -> Claim:
    """Turn an agent's draft into a claim of this run."""
    return Claim(
        claim_id=make_claim_id(run_id, loop, agent, draft),
        run_id=run_id,
        loop=loop,
        agent=agent,
        **draft.model_dump(),
    )


class AgentOutput(BaseModel):
    """What an agent returns: claims plus free-form notes merged into the query state."""

    model_config = _STRICT

    claims: tuple[ClaimDraft, ...] = ()
    summary: str = Field(default="", max_length=65536)
    notes: dict[str, Any] = Field(default_factory=dict)


class AgentResult(BaseModel):
    """One agent execution as the runtime saw it: output or error, timing and placement."""

    model_config = _STRICT

    run_id: str
    loop: int
    agent: str
    status: Literal["ok", "error"]
    output: AgentOutput | None = None
    error: str | None = None
    error_type: str | None = None
    started_at: float
    finished_at: float
    pid: int | None = None
    node_id: str | None = None
    attempt: int = 1
    retryable: bool = False

    @property
    def duration_s(self) -> float:
        """Wall time of the execution as measured in the worker."""
        return max(0.0, self.finished_at - self.started_at)


class AgentRecord(BaseModel):
    """An agent execution as kept in the state and the response (claims referenced by id)."""

    model_config = _STRICT

    loop: int
    agent: str
    status: Literal["ok", "error"]
    claim_ids: tuple[str, ...] = ()
    summary: str = ""
    error: str | None = None
    error_type: str | None = None
    duration_s: float = 0.0
    submitted_at: float = Field(
        default=0.0, description="driver clock: became due (loop start plus dispatch offset)"
    )
    started_at: float = Field(default=0.0, description="worker clock: execution began")
    finished_at: float = Field(default=0.0, description="worker clock: execution ended")
    received_at: float = Field(default=0.0, description="driver clock: result taken in")
    arrival: int = Field(default=0, description="order in which the loop's results arrived, from 0")
    pid: int | None = None
    node_id: str | None = None


class QueryState(BaseModel):
    """The shared state agents read: the query, every claim so far and what each agent said."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    query: str
    loop: int = 0
    loops: int = 1
    claims: list[Claim] = Field(default_factory=list)
    records: list[AgentRecord] = Field(default_factory=list)
    notes: dict[str, Any] = Field(default_factory=dict)


class AgentErrorInfo(BaseModel):
    """A failed agent execution, as reported in the response."""

    model_config = _STRICT

    loop: int
    agent: str
    error_type: str
    error: str


class RunMetrics(BaseModel):
    """Counters and timings of one run."""

    model_config = _STRICT

    loops: int
    agents: int
    agent_executions: int
    agent_errors: int
    claims: int
    duration_s: float
    mean_agent_s: float
    executor: str
    message_broker: str
    nodes: tuple[str, ...] = ()
    republished: int = Field(
        default=0, description="messages published again after the broker lost or stalled them"
    )


class QueryResponse(BaseModel):
    """The result of a run: the synthesized answer, its claims and sources, errors and metrics."""

    model_config = _STRICT

    run_id: str
    query: str
    answer: str
    claims: tuple[Claim, ...]
    sources: tuple[Source, ...]
    errors: tuple[AgentErrorInfo, ...]
    records: tuple[AgentRecord, ...]
    metrics: RunMetrics
    storage_path: str
