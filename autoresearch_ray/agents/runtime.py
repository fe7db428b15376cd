"""Running one agent execution inside a worker: build (once), execute, validate, report.

Every executor calls :func:`execute_agent`. Failures come back as values (an ``error`` result), so
one bad agent never sinks the others, and the result is a JSON-ready dict validated on arrival.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

from pydantic import ValidationError

from ..config import AgentSpec
from ..errors import RetryableAgentError
from ..models import AgentOutput, AgentResult, QueryState
from .base import AgentContext
from .registry import resolve_agent_type

# Agents are built once per worker process and reused: set-up (an index, a client) is paid once.
_INSTANCES: dict[tuple[str, str], Any] = {}


def execute_agent(
    spec_json: dict[str, Any],
    state_json: dict[str, Any] | QueryState,
    context_json: dict[str, Any],
) -> dict[str, Any]:
    """Run one agent and return an :class:`AgentResult` as a JSON-ready dict; never raises."""
    started = time.time()
    spec = AgentSpec.model_validate(spec_json)
    context = AgentContext.model_validate(context_json)
    base: dict[str, Any] = {
        "run_id": context.run_id,
        "loop": context.loop,
        "agent": context.agent,
        "pid": os.getpid(),
        "node_id": _node_id(),
        "attempt": context.attempt,
    }
    try:
        agent = _instance(spec)
        state = (
            state_json
            if isinstance(state_json, QueryState)
            else QueryState.model_validate(state_json)
        )
        raw = agent.execute(state, context)
        output = _coerce_output(raw, spec)
    except Exception as exc:
        return AgentResult(
            **base,
            status="error",
            error=_error_text(exc),
            error_type=type(exc).__name__,
            started_at=started,
            finished_at=time.time(),
            retryable=isinstance(exc, RetryableAgentError),
        ).model_dump(mode="json")
    return AgentResult(
        **base, status="ok", output=output, started_at=started, finished_at=time.time()
    ).model_dump(mode="json")


# The state file a process-pool worker read last: a loop's agents share it.
_STATE_FILE: tuple[str, QueryState] | None = None


def execute_with_state_file(
    spec_json: dict[str, Any], state_path: str, context_json: dict[str, Any]
) -> dict[str, Any]:
    """:func:`execute_agent` with the state read from a file, once per file per process."""
    global _STATE_FILE
    if _STATE_FILE is None or _STATE_FILE[0] != state_path:
        try:
            with open(state_path, encoding="utf-8") as fh:
                _STATE_FILE = (state_path, QueryState.model_validate_json(fh.read()))
        except (OSError, ValidationError) as exc:
            context = AgentContext.model_validate(context_json)
            return error_result(
                context, f"cannot read the loop's state: {exc}", type(exc).__name__, time.time()
            ).model_dump(mode="json")
    return execute_agent(spec_json, _STATE_FILE[1], context_json)


def _instance(spec: AgentSpec) -> Any:
    key = (spec.type, json.dumps(spec.params, sort_keys=True, default=str))
    agent = _INSTANCES.get(key)
    if agent is None:
        factory = resolve_agent_type(spec.type)
        try:
            agent = factory(**spec.params)
        except TypeError as exc:
            raise TypeError(
                f"agent type {spec.type!r} rejected params {spec.params}: {exc}"
            ) from None
        if not callable(getattr(agent, "execute", None)):
            raise TypeError(
                f"agent type {spec.type!r} built {type(agent).__name__} with no execute()"
            )
        _INSTANCES[key] = agent
    return agent


class InvalidAgentOutput(ValueError):
    """An agent returned something that is not an AgentOutput."""


def _coerce_output(raw: Any, spec: AgentSpec) -> AgentOutput:
    if isinstance(raw, AgentOutput):
        return raw
    if isinstance(raw, dict):
        try:
            return AgentOutput.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidAgentOutput(
                f"agent {spec.name!r} returned an invalid output: {where}: {first['msg']}"
            ) from None
    raise InvalidAgentOutput(
        f"agent {spec.name!r} returned {type(raw).__name__}; expected AgentOutput "
        "or a dict with 'claims', 'summary', 'notes'"
    )


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return text[:4000]


def _node_id() -> str | None:
    # Only meaningful inside a Ray worker; ProcessExecutor workers have no node id.
    ray = sys.modules.get("ray")  # never import Ray into a worker that does not have it
    if ray is None:
        return None
    try:
        if ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())
    except Exception:
        return None
    return None


def parse_result(raw: Any) -> AgentResult:
    """Validate a result dict that came back from a worker."""
    return AgentResult.model_validate(raw)


def error_result(context: AgentContext, error: str, error_type: str, started: float) -> AgentResult:
    """A result for an execution that never reported back (timeout, worker lost)."""
    return AgentResult(
        run_id=context.run_id,
        loop=context.loop,
        agent=context.agent,
        status="error",
        error=error,
        error_type=error_type,
        started_at=started,
        finished_at=time.time(),
        attempt=context.attempt,
    )
