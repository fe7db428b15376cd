"""ResourceMonitor against real processes: a busy child shows up as CPU, its memory as RSS."""

from __future__ import annotations

import subprocess
import sys
import time

from autoresearch_ray.monitor import ResourceMonitor

SPIN = "import time\nb = bytearray(64 << 20)\nt = time.time()\nwhile time.time() - t < 1: pass"


def test_sees_a_busy_child_process() -> None:
    with ResourceMonitor(interval=0.05) as monitor:
        child = subprocess.Popen([sys.executable, "-c", SPIN])
        child.wait()
        time.sleep(0.1)
    report = monitor.report()
    assert report.samples >= 10
    assert report.processes_seen >= 2
    assert report.cpu_percent_peak > 50  # one core spinning
    assert report.memory_mb_peak > 64
    assert report.by_role["workers"]["memory_mb_peak"] > 60
    assert report.overhead_percent < 10


def test_idle_driver_reads_low_cpu() -> None:
    with ResourceMonitor(interval=0.02) as monitor:
        time.sleep(0.5)
    report = monitor.report()
    assert report.samples >= 10
    assert report.cpu_percent_mean < 30
    assert report.memory_mb_mean > 10
    assert set(report.as_dict()) >= {"cpu_percent_mean", "memory_mb_peak", "overhead_percent"}
