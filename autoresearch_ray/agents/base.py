"""The agent protocol: a named object whose ``execute`` turns the query state into claims."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ..models import AgentOutput, QueryState


class AgentContext(BaseModel):
    """What an agent knows about the execution it is part of."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    loop: int
    loops: int
    agent: str
    params: dict[str, Any] = Field(default_factory=dict)
    attempt: int = 1
    #: Shared read-only resources (the corpus index handle), resolved once per worker process.
    resources: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class Agent(Protocol):
    """An agent of a research loop.

    Agents are built once per worker process from their parameters (``cls(**params)``) and then
    called for many executions, so expensive set-up belongs in ``__init__``.
    """

    name: str

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput | dict[str, Any]:
        """Read the state and return claims. Raising is allowed: it becomes a recorded error."""
        ...
