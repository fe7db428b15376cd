"""``LocalExecutor``: ``distributed_config.enabled: false`` — everything in the driver's process,
agents on threads. The same loop as the distributed executors, with nothing to start."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any

from ..agents.runtime import execute_agent
from ..config import ConfigModel
from ..hosting import Host, ThreadHost
from ..models import QueryState
from .base import FuturePoolExecutor


class LocalExecutor(FuturePoolExecutor):
    """Agents on a thread pool of ``num_cpus`` threads; backbone on threads; memory broker."""

    name = "local"

    def __init__(self, config: ConfigModel) -> None:
        super().__init__(config)
        self._pool: cf.ThreadPoolExecutor | None = None

    def _start_runtime(self) -> Host:
        self._pool = cf.ThreadPoolExecutor(self.dist.num_cpus, thread_name_prefix="agent")
        return ThreadHost()

    def _share_index(self, index: Any, directory: str) -> Any:
        return index  # threads share the object itself

    def _share_state(self, state_json: dict[str, Any]) -> Any:
        # Threads share one validated copy per loop (agents treat the state as read-only).
        return QueryState.model_validate(state_json)

    def _submit(self, spec: dict[str, Any], state: Any, context: dict[str, Any]) -> Any:
        assert self._pool is not None
        return self._pool.submit(execute_agent, spec, state, context)

    def _cancel(self, future: Any) -> None:
        # A thread cannot be stopped; its late result is ignored.
        future.cancel()

    def _end_loop(self) -> None:
        pass

    def _stop_runtime(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
