"""``RayExecutor``: the backbone as Ray actors, each agent execution as a Ray task."""

from __future__ import annotations

import logging
import os
from typing import Any

from ..agents.base import AgentContext
from ..agents.runtime import execute_agent
from ..config import AgentSpec, ConfigModel
from ..errors import ExecutorError
from ..hosting import Host, RayHost
from .base import BaseExecutor

log = logging.getLogger(__name__)

LOCAL_ADDRESSES = (None, "", "local")


def _agent_task(
    spec_json: dict[str, Any], state_json: dict[str, Any], context_json: dict[str, Any]
) -> dict[str, Any]:
    return execute_agent(spec_json, state_json, context_json)


class RayExecutor(BaseExecutor):
    """Runs on a local Ray (started and later stopped here) or joins a cluster (left running)."""

    name = "ray"

    def __init__(self, config: ConfigModel) -> None:
        super().__init__(config)
        self._owns_ray = False
        self._task: Any = None

    def _start_runtime(self) -> Host:
        import ray

        if not ray.is_initialized():
            address = self.dist.address
            kwargs: dict[str, Any] = {
                "namespace": self.dist.namespace,
                "log_to_driver": os.environ.get("AUTORESEARCH_RAY_LOGS") == "1",
                # Ray's INFO lines ("Started a local Ray instance") would drown the run's output.
                "logging_level": logging.WARNING,
            }
            if address in LOCAL_ADDRESSES:
                kwargs.update(
                    address="local",
                    num_cpus=self.dist.num_cpus,
                    include_dashboard=self.dist.dashboard,
                    # Never listen beyond loopback unless a cluster is configured on purpose.
                    dashboard_host="127.0.0.1",
                    _node_ip_address="127.0.0.1",
                )
            else:
                kwargs["address"] = address
            try:
                ray.init(**kwargs)
            except Exception as exc:
                raise ExecutorError(
                    f"cannot start or join Ray (address={address!r}): {exc}"
                ) from None
            # We connected, so we disconnect; for a joined cluster that stops nothing but this
            # driver, and a Ray the caller had already started is never touched.
            self._owns_ray = True
        self._task = ray.remote(_agent_task).options(
            num_cpus=self.dist.agent_num_cpus,
            max_retries=self.dist.agent_retries,
            retry_exceptions=False,
        )
        return RayHost()

    def _share_state(self, state_json: dict[str, Any]) -> Any:
        import ray

        # One copy in the object store per loop, however many agents read it.
        return ray.put(state_json)

    def _submit(self, spec: AgentSpec, state: Any, context: AgentContext) -> Any:
        return self._task.remote(
            spec.model_dump(mode="json"), state, context.model_dump(mode="json")
        )

    def _collect(self, future: Any) -> dict[str, Any]:
        import ray

        result: dict[str, Any] = ray.get(future)
        return result

    def _cancel(self, future: Any) -> None:
        import ray

        try:
            ray.cancel(future, force=True)
        except Exception as exc:  # finished meanwhile, or already cancelled
            log.debug("cancel failed: %s", exc)

    def _end_loop(self) -> None:
        pass

    def _stop_runtime(self) -> None:
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False
