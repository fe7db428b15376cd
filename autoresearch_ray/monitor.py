"""``ResourceMonitor``: CPU and memory of the processes doing a run's work, sampled with psutil.

It watches the driver and every process below it on this node: a local Ray's system processes
(GCS, raylet, dashboard) and its worker and actor processes, or ProcessExecutor's pool. CPU is
computed from each process's CPU-time deltas (psutil's ``cpu_percent`` needs a priming call per
process, which would lose every short-lived worker's first interval). Memory is resident set size.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

ROLES = ("driver", "workers", "ray_system")
_RAY_SYSTEM = (
    "raylet",
    "gcs_server",
    "dashboard",
    "log_monitor",
    "monitor.py",
    "runtime_env",
    "agent.py",
    "ray_process_reaper",
    "dashboard_agent",
    "event_agent",
)


@dataclass
class ResourceReport:
    """What a monitor saw: mean and peak CPU percent (100 = one core) and resident memory."""

    samples: int
    duration_s: float
    cpu_percent_mean: float
    cpu_percent_peak: float
    memory_mb_mean: float
    memory_mb_peak: float
    processes_seen: int
    overhead_cpu_s: float
    by_role: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def overhead_percent(self) -> float:
        """The monitor's own CPU time as a share of one core over the monitored time."""
        return 100.0 * self.overhead_cpu_s / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, rounded for printing."""
        return {
            "samples": self.samples,
            "duration_s": round(self.duration_s, 3),
            "cpu_percent_mean": round(self.cpu_percent_mean, 1),
            "cpu_percent_peak": round(self.cpu_percent_peak, 1),
            "memory_mb_mean": round(self.memory_mb_mean, 1),
            "memory_mb_peak": round(self.memory_mb_peak, 1),
            "processes_seen": self.processes_seen,
            "overhead_cpu_s": round(self.overhead_cpu_s, 4),
            "overhead_percent": round(self.overhead_percent, 2),
            "by_role": {
                role: {k: round(v, 1) for k, v in stats.items()}
                for role, stats in self.by_role.items()
            },
        }


class ResourceMonitor:
    """Sample every ``interval`` seconds on a background thread; a context manager.

    ``extra_pids`` adds processes that are not descendants of the driver (e.g. the workers of a
    Ray cluster the driver joined, when they run on this node).
    """

    def __init__(
        self,
        interval: float = 0.05,
        root_pid: int | None = None,
        extra_pids: Iterable[int] = (),
        rescan_every: int = 5,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.interval = interval
        self.root_pid = root_pid or os.getpid()
        self.extra_pids = list(extra_pids)
        self.rescan_every = max(1, rescan_every)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._procs: dict[int, tuple[psutil.Process, str]] = {}
        self._last_cpu: dict[int, float] = {}
        self._seen: set[int] = set()
        self._cpu: list[float] = []
        self._mem: list[float] = []
        self._role_cpu: dict[str, list[float]] = {r: [] for r in ROLES}
        self._role_mem: dict[str, list[float]] = {r: [] for r in ROLES}
        self._overhead = 0.0
        self._started = 0.0
        self._stopped = 0.0

    def start(self) -> ResourceMonitor:
        """Begin sampling (the first interval sets the CPU baseline)."""
        if self._thread is not None:
            raise RuntimeError("a ResourceMonitor can be started once")
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="resource-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> ResourceReport:
        """Stop sampling and return the report."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._stopped = time.monotonic()
        return self.report()

    def __enter__(self) -> ResourceMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def report(self) -> ResourceReport:
        """The figures so far."""
        end = self._stopped or time.monotonic()
        by_role = {
            role: {
                "cpu_percent_mean": _mean(self._role_cpu[role]),
                "memory_mb_peak": max(self._role_mem[role], default=0.0),
            }
            for role in ROLES
        }
        return ResourceReport(
            samples=len(self._cpu),
            duration_s=end - self._started,
            cpu_percent_mean=_mean(self._cpu),
            cpu_percent_peak=max(self._cpu, default=0.0),
            memory_mb_mean=_mean(self._mem),
            memory_mb_peak=max(self._mem, default=0.0),
            processes_seen=len(self._seen),
            overhead_cpu_s=self._overhead,
            by_role=by_role,
        )

    def _run(self) -> None:
        tick = 0
        last = time.monotonic()
        self._scan()
        self._sample(None)
        while not self._stop.wait(self.interval):
            begun = time.thread_time()
            tick += 1
            if tick % self.rescan_every == 0:
                self._scan()
            now = time.monotonic()
            self._sample(now - last)
            last = now
            self._overhead += time.thread_time() - begun

    def _scan(self) -> None:
        try:
            root = psutil.Process(self.root_pid)
            found = [root, *root.children(recursive=True)]
        except psutil.Error:
            found = []
        for pid in self.extra_pids:
            try:
                found.append(psutil.Process(pid))
            except psutil.Error:
                continue
        for proc in found:
            if proc.pid not in self._procs:
                self._procs[proc.pid] = (proc, self._role(proc))
                self._seen.add(proc.pid)

    def _role(self, proc: psutil.Process) -> str:
        if proc.pid == self.root_pid:
            return "driver"
        try:
            cmd = " ".join(proc.cmdline()) or proc.name()
        except psutil.Error:
            return "workers"
        if "ray::" in cmd or "default_worker.py" in cmd:
            return "workers"
        if any(marker in cmd for marker in _RAY_SYSTEM):
            return "ray_system"
        return "workers"

    def _sample(self, elapsed: float | None) -> None:
        cpu = {r: 0.0 for r in ROLES}
        mem = {r: 0.0 for r in ROLES}
        for pid, (proc, role) in list(self._procs.items()):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss = proc.memory_info().rss
            except psutil.Error:
                del self._procs[pid]
                self._last_cpu.pop(pid, None)
                continue
            total = times.user + times.system
            previous = self._last_cpu.get(pid)
            self._last_cpu[pid] = total
            if elapsed and previous is not None:
                cpu[role] += 100.0 * (total - previous) / elapsed
            mem[role] += rss / 1_048_576
        if elapsed is None:
            return  # the baseline sample
        self._cpu.append(sum(cpu.values()))
        self._mem.append(sum(mem.values()))
        for role in ROLES:
            self._role_cpu[role].append(cpu[role])
            self._role_mem[role].append(mem[role])


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
