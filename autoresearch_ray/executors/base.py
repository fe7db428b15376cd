"""The executor loop, written once. Subclasses say how the backbone is hosted and how one agent
execution is submitted, waited for and cancelled; nothing else differs between them."""

from __future__ import annotations

import abc
import heapq
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..agents.base import AgentContext
from ..agents.runtime import error_result, parse_result
from ..brokers import MessageBroker, get_message_broker
from ..claim_store import ClaimStore
from ..config import AgentSpec, ConfigModel, redact_url
from ..coordinator import Coordinator
from ..errors import BadInputError, ExecutorError, RunInterrupted
from ..hosting import CompletionQueue, Host, resolve
from ..models import AgentRecord, AgentResult, QueryResponse, QueryState

if TYPE_CHECKING:
    from ..research.index import CorpusIndex
from .callbacks import RunCallbacks

log = logging.getLogger(__name__)

#: Longest a finished result waits in the driver before it is handed to the coordinator.
DELIVERY_LINGER_S = 0.02


@dataclass
class _Pending:
    spec: AgentSpec
    context: AgentContext
    started: float
    # Set once the execution may be running: time queued behind another agent is not its own.
    deadline: float | None = None
    received: float = 0.0


class BaseExecutor(abc.ABC):
    """Runs queries: ``run_query`` drives loops of agents against the three backbone roles."""

    name = "base"

    def __init__(self, config: ConfigModel) -> None:
        self.config = config
        self.dist = config.distributed_config
        self.storage_path = str(config.storage.resolved())
        self.broker: MessageBroker | None = None
        self.coordinator: Any = None
        self.store: Any = None
        self._host: Host | None = None
        self._started = False
        self._closed = False
        #: Read-only resources handed to every agent execution (the corpus index handle).
        self.resources: dict[str, Any] = {}
        #: How the corpus index was obtained: built or loaded, seconds, passages.
        self.corpus_info: dict[str, Any] = {}
        self._stop = threading.Event()

    # -- what subclasses provide ---------------------------------------------------------------

    @abc.abstractmethod
    def _start_runtime(self) -> Host:
        """Bring up the runtime (Ray, a process pool) and return the host for backbone roles."""

    @abc.abstractmethod
    def _share_state(self, state_json: dict[str, Any]) -> Any:
        """Make a loop's state available to its agents once (Ray puts it in the object store)."""

    @abc.abstractmethod
    def _submit(self, spec: dict[str, Any], state: Any, context: dict[str, Any]) -> Any:
        """Start one agent execution (spec and context as JSON-ready dicts); returns a future of
        its result dict."""

    @abc.abstractmethod
    def _collect(self, future: Any) -> dict[str, Any]:
        """The result dict of a finished future; raises if the execution itself was lost."""

    def _has_capacity(self) -> bool:
        """Whether another execution can be submitted now (pools that queue say always)."""
        return True

    def _may_be_running(self, future: Any) -> bool:
        """Whether a submitted execution may have started (its timeout runs from then on)."""
        return True

    def _withdraw(self, future: Any) -> bool:
        """Take back a submitted execution that has not started; False if it cannot be."""
        return False

    def _release(self, future: Any) -> None:  # noqa: B027 - optional hook, no-op by default
        """A submitted execution has finished, failed or been given up on."""

    def _is_worker_loss(self, exc: BaseException) -> bool:
        """Whether ``exc`` from ``_collect`` means the worker died (so the execution may be
        run again) rather than a failure of the execution itself."""
        return False

    @abc.abstractmethod
    def _cancel(self, future: Any) -> None:
        """Stop an execution that overran its timeout (best effort)."""

    @abc.abstractmethod
    def _end_loop(self) -> None:
        """Called after each loop: e.g. replace workers left busy by cancelled executions."""

    @abc.abstractmethod
    def _stop_runtime(self) -> None:
        """Release the runtime started by ``_start_runtime`` (never one that was already there)."""

    def _share_index(self, index: CorpusIndex, directory: str) -> Any:
        """A handle agents resolve to the index once per worker: by default its cache path,
        which each worker loads memory-mapped (one copy in the page cache for all of them)."""
        return {"fingerprint": index.fingerprint, "path": directory}

    def _broker_options(self) -> dict[str, Any]:
        return {
            "lease_seconds": self.dist.lease_seconds,
            "max_deliveries": self.dist.max_deliveries,
        }

    def _actor_options(self, role: str) -> dict[str, Any]:
        """Extra options for a backbone role's actor (placement, restarts)."""
        return {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> BaseExecutor:
        """Start the runtime and the backbone; called by ``run_query`` if needed."""
        if self._closed:
            raise ExecutorError(f"{type(self).__name__} has been shut down; create a new one")
        if self._started:
            return self
        if self.dist.message_broker != "ray":
            # Check Redis before paying for Ray or a process pool: a wrong URL fails at once.
            self.broker = self._make_broker()
        try:
            self._host = self._start_runtime()
            if self.config.uses_corpus():
                from ..research.index import open_index

                corpus = self.config.corpus
                index, self.corpus_info = open_index(corpus.path, corpus.cache_dir)
                handle = self._share_index(index, self.corpus_info["directory"])
                self.resources = {"corpus": handle}
            if self.broker is None:
                self.broker = self._make_broker()
            self.store = self._host.spawn(
                ClaimStore,
                self.storage_path,
                False,
                self.broker,
                self.dist.batch_size,
                self.name,
                name="claim-store",
                max_concurrency=8,
                options=self._actor_options("claim_store"),
            )
            resolve(self.store.ping.remote())
            self.coordinator = self._host.spawn(
                Coordinator,
                self.broker,
                self.store,
                self.dist.ack_timeout_s,
                self.dist.batch_size,
                self.name,
                self.storage_path,
                2 * self.dist.lease_seconds,
                name="coordinator",
                options=self._actor_options("coordinator"),
            )
            resolve(self.coordinator.ping.remote())
        except BaseException:
            self._started = True
            self.shutdown()
            raise
        self._started = True
        return self

    def _make_broker(self) -> MessageBroker:
        options = self._broker_options()
        if self.dist.message_broker == "redis":
            options["namespace"] = self.dist.namespace
        else:
            options["maxsize"] = self.dist.queue_size
        return get_message_broker(self.dist.message_broker, self.dist.broker_url, **options)

    def shutdown(self) -> None:
        """Flush and stop the backbone and the runtime this executor started; idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        if self.store is not None:
            try:
                # Every loop waited for its acknowledgements, so nothing is in flight here. The
                # consumer is stopped by a direct call, not a `stop` message: on a Redis stream
                # shared with a later run, a stop left unread would end that run's consumer.
                resolve(self.store.close.remote(), timeout=30)
            except Exception as exc:
                log.warning("claim store did not close cleanly: %s", exc)
        for handle in (self.coordinator, self.store):
            if handle is not None and self._host is not None:
                self._host.kill(handle)
        if self.broker is not None:
            self.broker.close()
        self._stop_runtime()

    def request_stop(self) -> None:
        """Ask the running query to stop: no new agent is dispatched, those in flight finish and
        their claims are acknowledged, then ``run_query`` raises :class:`RunInterrupted`.
        Safe to call from a signal handler or another thread."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Whether ``request_stop`` was called for the running query."""
        return self._stop.is_set()

    def __enter__(self) -> BaseExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- the loop ------------------------------------------------------------------------------

    def run_query(
        self,
        query: str,
        callbacks: Any = None,
        run_id: str | None = None,
        dispatch_offsets: Sequence[float] | None = None,
        resume: bool = False,
    ) -> QueryResponse:
        """Run every configured loop of every agent against ``query`` and synthesize the answer.

        Each loop dispatches all agents at once, takes results as they complete, and counts as
        done only when the claim store has acknowledged every claim of it. An agent that raises,
        times out or returns garbage is a recorded error; the others' results are kept.

        ``dispatch_offsets`` (one per agent, seconds after the loop starts) holds an agent back
        before it is submitted without occupying a worker: staggered or open-loop arrivals.
        ``resume`` continues ``run_id`` after its last checkpointed loop; loops already stored
        are neither run nor stored again.
        """
        if resume and not run_id:
            raise BadInputError("resume needs the run id of the run to continue")
        if not query or not query.strip():
            raise BadInputError("the query is empty")
        agents = self.config.agents
        if dispatch_offsets is not None and (
            len(dispatch_offsets) != len(agents) or any(o < 0 for o in dispatch_offsets)
        ):
            raise BadInputError(
                f"dispatch_offsets needs {len(agents)} non-negative values, one per agent"
            )
        offsets = list(dispatch_offsets) if dispatch_offsets is not None else [0.0] * len(agents)
        hooks = RunCallbacks.coerce(callbacks)
        self.start()
        cfg = self.config
        run_id = run_id or cfg.new_run_id()
        names = [a.name for a in agents]
        try:
            self._stop.clear()
            state_json = resolve(
                self.coordinator.start_run.remote(
                    run_id, query, cfg.loops, names, _public_config(cfg), resume
                )
            )
            if hooks.on_run_start:
                hooks.on_run_start(run_id, QueryState.model_validate(state_json))
            for loop in range(int(state_json["loop"]), cfg.loops):
                self._run_loop(run_id, loop, state_json, offsets, hooks)
                if self._stop.is_set():
                    missing = resolve(self.coordinator.flush.remote(loop))
                    raise RunInterrupted(
                        f"stopped during loop {loop} of run {run_id}: loops before it are "
                        f"checkpointed, the claims produced so far are stored"
                        + (f" ({missing} unacknowledged)" if missing else "")
                        + f"; continue with --resume {run_id}"
                    )
                state_json = resolve(self.coordinator.finish_loop.remote(loop))
                if hooks.on_cycle_end:
                    hooks.on_cycle_end(loop, QueryState.model_validate(state_json))
            response = QueryResponse.model_validate(
                resolve(self.coordinator.synthesize.remote(self.storage_path))
            )
        except RunInterrupted:
            raise
        except BaseException:
            try:
                resolve(self.coordinator.fail_run.remote("driver error"), timeout=10)
            except Exception:  # the original error matters more than this bookkeeping
                pass
            raise
        if hooks.on_run_end:
            hooks.on_run_end(response)
        return response

    def _run_loop(
        self,
        run_id: str,
        loop: int,
        state_json: dict[str, Any],
        offsets: list[float],
        hooks: RunCallbacks,
    ) -> None:
        state = self._share_state(state_json)
        specs = {spec.name: spec.model_dump(mode="json") for spec in self.config.agents}
        t0, t0_wall = time.monotonic(), time.time()
        # (due offset, spec, attempt), soonest last so pop() takes the next one due.
        waiting = sorted(
            ((o, spec, 1) for o, spec in zip(offsets, self.config.agents, strict=True)),
            key=lambda x: -x[0],
        )
        pending: dict[Any, _Pending] = {}
        # Submitted but maybe still queued behind another execution: no deadline yet.
        unstarted: dict[Any, _Pending] = {}
        deadlines: list[tuple[float, int, Any]] = []  # a heap; entries of finished ones are stale
        completions = CompletionQueue()
        recorded: list[Any] = []
        buffered: list[tuple[AgentResult, _Pending]] = []
        last_delivery = t0
        while waiting or pending or buffered:
            if self._stop.is_set():
                waiting.clear()  # dispatch nothing more; what is running finishes
                for future in [f for f in unstarted if self._withdraw(f)]:
                    del pending[future], unstarted[future]
                    self._release(future)
            while waiting and t0 + waiting[-1][0] <= time.monotonic() and self._has_capacity():
                offset, spec, attempt = waiting.pop()
                # Built from values already validated; the worker validates what it receives.
                context = AgentContext.model_construct(
                    run_id=run_id,
                    loop=loop,
                    loops=self.config.loops,
                    agent=spec.name,
                    params=spec.params,
                    attempt=attempt,
                    resources=self.resources,
                )
                # When it became due, not when a worker slot freed up: time spent held back
                # for capacity is queueing, and latency figures must include it.
                submitted = t0_wall + offset
                future = self._submit(specs[spec.name], state, dict(context))
                pending[future] = unstarted[future] = _Pending(spec, context, submitted)
                completions.add(future)
                if hooks.on_agent_start and attempt == 1:
                    hooks.on_agent_start(loop, spec.name)
            now = time.monotonic()
            for future in [f for f in unstarted if self._may_be_running(f)]:
                started = unstarted.pop(future)
                started.deadline = now + self.dist.agent_timeout_s
                heapq.heappush(deadlines, (started.deadline, id(future), future))
            wake = [deadlines[0][0]] if deadlines else []
            if unstarted:  # poll, so a deadline is set soon after each one starts
                wake.append(now + 0.05)
            if waiting and self._has_capacity():
                wake.append(t0 + waiting[-1][0])
            elif waiting and not pending:
                # No worker is up (all restarting) and no result will wake the loop: poll.
                wake.append(now + 0.05)
            if buffered:
                wake.append(last_delivery + DELIVERY_LINGER_S)
            timeout = max(0.0, min(wake) - time.monotonic()) if wake else 0.0
            done = completions.wait(timeout) if pending else _sleep(timeout)
            results = []
            for future in done:
                item = pending.pop(future, None)
                if item is None:  # timed out and given up on already
                    continue
                unstarted.pop(future, None)
                item.received = time.time()
                self._release(future)
                result, lost = self._result_of(future, item)
                if (lost or result.retryable) and item.context.attempt <= self.dist.agent_retries:
                    # The worker died under it, or the agent said the failure is transient: run
                    # it again. Its claims were never published, so nothing is stored twice.
                    log.warning(
                        "%s running %s (attempt %d); retrying",
                        "worker lost" if lost else f"retryable error ({result.error})",
                        item.spec.name,
                        item.context.attempt,
                    )
                    waiting.append((time.monotonic() - t0, item.spec, item.context.attempt + 1))
                    continue
                results.append((result, item))
            now = time.monotonic()
            while deadlines and deadlines[0][0] <= now:
                _, _, future = heapq.heappop(deadlines)
                expired = pending.pop(future, None)
                if expired is None:
                    continue
                expired.received = time.time()
                self._cancel(future)
                self._release(future)
                timeout_result = error_result(
                    expired.context,
                    f"agent {expired.spec.name!r} timed out after {self.dist.agent_timeout_s}s",
                    "TimeoutError",
                    expired.started,
                )
                results.append((timeout_result, expired))
            # Micro-batch: one coordinator call per DELIVERY_LINGER_S rather than per result
            # (each call costs every backbone actor a round trip); a callback that wants each
            # record as it arrives, and the loop's last result, are delivered at once.
            buffered.extend(results)
            now = time.monotonic()
            if buffered and (
                hooks.on_agent_result or not pending or now - last_delivery >= DELIVERY_LINGER_S
            ):
                recorded.extend(self._deliver(buffered, hooks))
                buffered, last_delivery = [], now
        # Surface any error of the records sent without waiting (finish_loop runs after them).
        for future in recorded:
            resolve(future)
        self._end_loop()

    def _deliver(
        self, results: list[tuple[AgentResult, _Pending]], hooks: RunCallbacks
    ) -> list[Any]:
        """Hand finished results to the coordinator in one call; wait only if a hook needs them."""
        future = self.coordinator.record_many.remote(
            [(r, p.started, p.received) for r, p in results]
        )
        if not hooks.on_agent_result:
            return [future]
        for record in resolve(future):
            hooks.on_agent_result(AgentRecord.model_validate(record))
        return []

    def _result_of(self, future: Any, item: _Pending) -> tuple[AgentResult, bool]:
        """The execution's result, and whether it was lost with its worker."""
        try:
            raw = self._collect(future)
        except Exception as exc:
            # The execution was lost (worker died, pool broke): an error value unless retried.
            text = f"{type(exc).__name__}: {exc}"[:4000]
            result = error_result(item.context, text, type(exc).__name__, item.started)
            return result, self._is_worker_loss(exc)
        try:
            return parse_result(raw), False
        except Exception as exc:
            text = f"invalid result from worker: {exc}"[:4000]
            return error_result(item.context, text, "InvalidResult", item.started), False


def _sleep(seconds: float) -> list[Any]:
    time.sleep(seconds)
    return []


def _public_config(cfg: ConfigModel) -> dict[str, Any]:
    data = cfg.model_dump(mode="json")
    url = data["distributed_config"].get("broker_url")
    data["distributed_config"]["broker_url"] = redact_url(url) if url else url
    return data


class FuturePoolExecutor(BaseExecutor):
    """An executor whose agent executions are ``concurrent.futures`` futures of a pool."""

    def _withdraw(self, future: Any) -> bool:
        return bool(future.cancel())

    def _may_be_running(self, future: Any) -> bool:
        return bool(future.running() or future.done())

    def _collect(self, future: Any) -> dict[str, Any]:
        result: dict[str, Any] = future.result()
        return result
