"""``ProcessExecutor``: agents in a ``multiprocessing`` pool, the backbone on threads of the driver.

The backbone shares the driver's process so the ``memory`` broker (in-process queues, as the seed
defines it) works; the agents, which do the run's work, get processes of their own. Workers are
spawned, not forked: the driver holds threads and sockets a fork would copy in a broken state.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..agents.runtime import execute_with_state_file
from ..config import ConfigModel
from ..errors import ExecutorError
from ..hosting import Host, ThreadHost
from .base import FuturePoolExecutor

log = logging.getLogger(__name__)


def _watch_parent(parent_pid: int) -> None:
    """Pool-worker initializer: exit when the driver is gone.

    A driver killed with SIGKILL cannot stop its pool, and the workers would otherwise live on
    (holding its terminal, its pipes and their memory) waiting for work that never comes.
    """

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:  # re-parented: the driver died
                os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _warm() -> int:
    import os

    return os.getpid()


class ProcessExecutor(FuturePoolExecutor):
    """Runs agents in ``num_cpus`` worker processes."""

    name = "process"

    def __init__(self, config: ConfigModel) -> None:
        super().__init__(config)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._overran: list[cf.Future[Any]] = []
        self._state_dir: str | None = None
        self._state_file: Path | None = None
        self._state_seq = 0

    def _start_runtime(self) -> Host:
        self._state_dir = tempfile.mkdtemp(prefix="autoresearch-state-")
        self._pool = self._new_pool()
        return ThreadHost()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        workers = self.dist.num_cpus
        pool = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_watch_parent,
            initargs=(os.getpid(),),
        )
        # Start every worker now, so the first loop does not pay for interpreter start-up.
        try:
            for future in [pool.submit(_warm) for _ in range(workers)]:
                future.result(timeout=120)
        except (cf.process.BrokenProcessPool, cf.TimeoutError) as exc:
            pool.shutdown(wait=False, cancel_futures=True)
            raise ExecutorError(
                f"the process pool's workers died while starting ({type(exc).__name__}). A script "
                "that uses ProcessExecutor must guard its entry point with "
                '`if __name__ == "__main__":`, since spawned workers import the main module.'
            ) from None
        return pool

    def _share_state(self, state_json: dict[str, Any]) -> Any:
        # One file per loop that each worker reads once, rather than the whole (growing) state
        # pickled into every task.
        assert self._state_dir is not None
        self._state_seq += 1
        path = Path(self._state_dir) / f"state-{self._state_seq}.json"
        path.write_text(json.dumps(state_json))
        if self._state_file is not None:
            self._state_file.unlink(missing_ok=True)
        self._state_file = path
        return str(path)

    def _submit(self, spec: dict[str, Any], state: Any, context: dict[str, Any]) -> Any:
        assert self._pool is not None
        try:
            return self._pool.submit(execute_with_state_file, spec, state, context)
        except cf.process.BrokenProcessPool:
            log.warning("worker pool broke; starting a new one")
            self._replace_pool()
            return self._pool.submit(execute_with_state_file, spec, state, context)

    def _is_worker_loss(self, exc: BaseException) -> bool:
        # A worker that died takes the pool with it: every execution in flight is lost, none
        # failed on its own; the next submit starts a new pool.
        return isinstance(exc, cf.process.BrokenProcessPool)

    def _cancel(self, future: Any) -> None:
        if not future.cancel():
            # Running: a process pool cannot stop one task, so its worker is replaced at loop end.
            self._overran.append(future)

    def _end_loop(self) -> None:
        broken = self._pool is not None and getattr(self._pool, "_broken", False)
        if broken or any(not f.done() for f in self._overran):
            self._replace_pool()
        self._overran = []

    def _replace_pool(self) -> None:
        old = self._pool
        if old is not None:
            _terminate(old)
        self._pool = self._new_pool()

    def _stop_runtime(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None


def _terminate(pool: cf.ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor has no public way to kill a busy worker before Python 3.14
    # (terminate_workers); its process table is the only handle on them.
    processes = dict(getattr(pool, "_processes", None) or {})
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        if process.is_alive():
            process.kill()
    for process in processes.values():
        process.join(5)
