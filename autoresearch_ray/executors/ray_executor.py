"""``RayExecutor``: the backbone as Ray actors; agents on a pool of ``AgentWorker`` actors.

Why a pool of actors rather than one Ray task per execution: a task pays for a worker lease on
every call (about 2 ms here, which caps a batch of 10 ms tasks at 0.83 of its limit), while calls
queued on a live actor run back to back. Each worker holds at most ``worker_pipeline`` calls
(default 4: at 2 the next call often arrived late and workers idled ~2.7 ms between 10 ms tasks;
at 4 the idle gap is ~1 ms, the floor of a raw Ray actor call here), and a slow agent cannot
hoard more than that. The agents are also built once per worker, which is where a research agent
keeps its index.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any

from ..agents.worker import AgentWorker
from ..config import ConfigModel
from ..errors import ExecutorError
from ..hosting import Host, RayHost
from .base import BaseExecutor

log = logging.getLogger(__name__)

LOCAL_ADDRESSES = (None, "", "local")


class RayExecutor(BaseExecutor):
    """Runs on a local Ray (started and later stopped here) or joins a cluster (left running)."""

    name = "ray"

    def __init__(self, config: ConfigModel) -> None:
        super().__init__(config)
        self._owns_ray = False
        self._workers: list[Any] = []
        # Calls of each worker in submission order: a worker runs them one by one (FIFO), so
        # only the first may be running.
        self._queues: list[deque[Any]] = []
        self._placed: dict[Any, int] = {}
        # Workers that died and are being restarted, with a ping that completes once the new
        # incarnation is up: nothing is sent to them meanwhile, so work lost with a node goes to
        # the workers that are left rather than waiting for one that may never be placed again.
        self._probes: dict[int, Any] = {}
        # Workers whose constructor failed (a permanent error), with the reason.
        self._failed: dict[int, str] = {}
        self._by_actor_id: dict[str, int] = {}

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
        self._start_workers()
        return RayHost()

    def _pinned(self) -> dict[str, Any]:
        """Scheduling that keeps a backbone actor on the driver's node: the head node for
        `ray job submit` and `ray submit` (their drivers run there), so the SQLite file is
        on the node where the driver and the CLI can read it."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = ray.get_runtime_context().get_node_id()
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)}

    def _actor_options(self, role: str) -> dict[str, Any]:
        options = self._pinned()
        if role == "claim_store":
            # Restarted after a crash; its constructor resumes consuming, and calls in flight
            # (all idempotent: upserts, reads, waits) are retried on the new incarnation.
            options.update(max_restarts=-1, max_task_retries=-1)
        # The coordinator is not restarted: its in-memory loop state would be gone. A lost
        # coordinator fails the run, which `--resume` continues from its last checkpoint.
        return options

    def _broker_options(self) -> dict[str, Any]:
        options = super()._broker_options()
        if self.dist.message_broker == "ray":
            options["actor_options"] = self._pinned()
        return options

    def _start_workers(self) -> None:
        import ray

        cpus = float(ray.cluster_resources().get("CPU", self.dist.num_cpus))
        count = self.dist.agent_workers or max(1, int(cpus // self.dist.agent_num_cpus))
        options = {
            "num_cpus": self.dist.agent_num_cpus,
            # A worker that dies is restarted by Ray; the loop re-runs what it was running.
            "max_restarts": -1,
            "max_task_retries": 0,
            "scheduling_strategy": "SPREAD",
        }
        self._workers = [ray.remote(AgentWorker).options(**options).remote() for _ in range(count)]
        self._queues = [deque() for _ in range(count)]
        self._by_actor_id = {w._actor_id.hex(): i for i, w in enumerate(self._workers)}
        # Every worker starts as "not yet up"; it takes work once its ping returns. Waiting for
        # the first only: on an autoscaling cluster the rest may wait for nodes being added.
        self._probes = {i: w.ping.remote() for i, w in enumerate(self._workers)}
        deadline = time.monotonic() + self.dist.agent_timeout_s
        while not self._live():  # raises once every worker has failed to start
            remaining = deadline - time.monotonic()
            ready = []
            if remaining > 0:
                ready, _ = ray.wait(list(self._probes.values()), num_returns=1, timeout=remaining)
            if not ready:
                raise ExecutorError(
                    f"no agent worker could be placed within {self.dist.agent_timeout_s}s: each "
                    f"asks for agent_num_cpus={self.dist.agent_num_cpus} CPU and the cluster has "
                    f"{cpus:g}; lower agent_num_cpus or add nodes"
                )

    def _live(self) -> list[int]:
        """Indexes of workers that are up (a restarted one rejoins once its ping returns)."""
        import ray

        if self._probes:
            ready, _ = ray.wait(
                list(self._probes.values()), num_returns=len(self._probes), timeout=0
            )
            done = set(ready)
            for index, probe in list(self._probes.items()):
                if probe not in done:
                    continue
                try:
                    ray.get(probe)
                    del self._probes[index]
                except ray.exceptions.RayActorError as exc:
                    if exc.actor_init_failed:  # its constructor raised: restarting cannot help
                        del self._probes[index]
                        self._failed[index] = str(exc)[:2000]
                    else:  # died again while restarting: keep probing
                        self._probes[index] = self._workers[index].ping.remote()
            if len(self._failed) == len(self._workers):
                raise ExecutorError(
                    "every agent worker failed to start: " + next(iter(self._failed.values()))
                )
        return [
            i for i in range(len(self._workers)) if i not in self._probes and i not in self._failed
        ]

    def _share_index(self, index: Any, directory: str) -> Any:
        import ray

        # Through the object store: worker nodes of a cluster do not share the driver's disk,
        # and on one node the arrays are shared memory. Boxed so Ray passes the reference.
        return {"fingerprint": index.fingerprint, "ray": [ray.put(index)]}

    def _share_state(self, state_json: dict[str, Any]) -> Any:
        import ray

        # One copy in the object store per loop, however many agents read it. Boxed in a list so
        # Ray passes the reference itself: each worker fetches and validates it once per loop.
        return [ray.put(state_json)]

    def _has_capacity(self) -> bool:
        live = self._live()
        return bool(live) and min(len(self._queues[i]) for i in live) < self.dist.worker_pipeline

    def _submit(self, spec: dict[str, Any], state: Any, context: dict[str, Any]) -> Any:
        # Only called when _has_capacity() found a live worker with room.
        index = min(self._live(), key=lambda i: len(self._queues[i]))
        future = self._workers[index].execute.remote(spec, state, context)
        self._queues[index].append(future)
        self._placed[future] = index
        return future

    def _may_be_running(self, future: Any) -> bool:
        index = self._placed.get(future)
        return index is None or self._queues[index][0] is future

    def _release(self, future: Any) -> None:
        index = self._placed.pop(future, None)
        if index is not None:
            self._queues[index].remove(future)

    def _collect(self, future: Any) -> dict[str, Any]:
        import ray

        result: dict[str, Any] = ray.get(future)
        return result

    def _is_worker_loss(self, exc: BaseException) -> bool:
        import ray

        lost = isinstance(
            exc,
            (
                ray.exceptions.RayActorError,
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.ObjectLostError,
            ),
        )
        if lost:
            index = self._by_actor_id.get(str(getattr(exc, "actor_id", None) or ""))
            suspects = [index] if index is not None else range(len(self._workers))
            for i in suspects:
                if i not in self._probes:
                    self._probes[i] = self._workers[i].ping.remote()
        return lost

    def _cancel(self, future: Any) -> None:
        import ray

        # A running actor call cannot be interrupted; the worker is killed and Ray restarts it.
        # Its other queued call fails as a worker loss and is re-run by the loop.
        index = self._placed.get(future)
        if index is None:
            return
        try:
            ray.kill(self._workers[index], no_restart=False)
        except Exception as exc:  # already dead and restarting
            log.debug("kill failed: %s", exc)

    def _end_loop(self) -> None:
        pass

    def _stop_runtime(self) -> None:
        import ray

        for worker in self._workers:
            try:
                ray.kill(worker)
            except Exception:  # gone already
                pass
        self._workers = []
        self._probes, self._failed = {}, {}
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
