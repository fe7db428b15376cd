"""``AgentWorker``: a long-lived process that runs agent executions (a Ray actor in RayExecutor).

Agents are built once per worker and reused, so set-up such as loading an index is paid once per
worker rather than once per task, and back-to-back calls skip Ray's per-task worker lease.
"""

from __future__ import annotations

import os
from typing import Any

from ..models import QueryState
from .runtime import execute_agent


class AgentWorker:
    """Runs :func:`execute_agent` calls one at a time, keeping the current loop's state."""

    def __init__(self) -> None:
        self._state_key: tuple[str, int] | None = None
        self._state: QueryState | None = None

    def execute(
        self, spec_json: dict[str, Any], state_box: list[Any], context_json: dict[str, Any]
    ) -> dict[str, Any]:
        """One agent execution; failures come back as an error result, never raised.

        ``state_box`` holds the loop's state as a one-element list of an ``ObjectRef``, fetched
        only when the run or loop changes.
        """
        key = (str(context_json.get("run_id")), int(context_json.get("loop", -1)))
        if key != self._state_key or self._state is None:
            import ray

            self._state = QueryState.model_validate(ray.get(state_box[0]))
            self._state_key = key
        return execute_agent(spec_json, self._state, context_json)

    def ping(self) -> int:
        """The worker's pid (liveness check)."""
        return os.getpid()
