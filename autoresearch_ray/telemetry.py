"""Run metrics through Ray's metrics API, so the Ray dashboard and Prometheus see them.

Exported as ``ray_autoresearch_*`` on each node's metrics endpoint (``_metrics_export_port``).
Outside a Ray process (ProcessExecutor, unit tests) every call is a no-op.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

#: Agent latency buckets, seconds: from a noop (~1 ms) to a slow research agent (minutes).
LATENCY_BOUNDARIES = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0]
_KEYS = ("executor", "broker")

# Each metric is defined once per process: defining a name twice (say with other default
# tags) makes Ray's recorder drop it. Labels are passed with every observation instead.
_METRICS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _metrics() -> dict[str, Any]:
    with _LOCK:
        if not _METRICS:
            from ray.util.metrics import Counter, Gauge, Histogram

            _METRICS.update(
                executions=Counter(
                    "autoresearch_agent_executions",
                    description="Agent executions finished, by agent and status.",
                    tag_keys=(*_KEYS, "agent", "status"),
                ),
                latency=Histogram(
                    "autoresearch_agent_latency_seconds",
                    description="Wall time of one agent execution in its worker.",
                    boundaries=LATENCY_BOUNDARIES,
                    tag_keys=(*_KEYS, "agent"),
                ),
                persisted=Counter(
                    "autoresearch_claims_persisted",
                    description="Claims committed by the claim store (redeliveries included).",
                    tag_keys=_KEYS,
                ),
                depth=Gauge(
                    "autoresearch_queue_depth",
                    description="Messages waiting in the broker, at the end of the last loop.",
                    tag_keys=_KEYS,
                ),
                in_flight=Gauge(
                    "autoresearch_queue_in_flight",
                    description="Messages leased, not yet acknowledged, at the end of the loop.",
                    tag_keys=_KEYS,
                ),
                redelivered=Gauge(
                    "autoresearch_redeliveries",
                    description="Messages delivered again after their lease ran out (cumulative).",
                    tag_keys=_KEYS,
                ),
            )
        return _METRICS


class RunTelemetry:
    """Observations of one backbone role, labelled with its executor and broker."""

    def __init__(self, executor: str = "", broker: str = "") -> None:
        ray = sys.modules.get("ray")
        self.enabled = bool(ray is not None and ray.is_initialized())
        self.tags = {"executor": executor or "unknown", "broker": broker or "unknown"}

    def agent_done(self, agent: str, status: str, seconds: float) -> None:
        """Count one finished execution and observe its latency."""
        if self.enabled:
            m = _metrics()
            m["executions"].inc(1, tags={**self.tags, "agent": agent, "status": status})
            m["latency"].observe(seconds, tags={**self.tags, "agent": agent})

    def claims_persisted(self, count: int) -> None:
        """Count claims committed."""
        if self.enabled and count:
            _metrics()["persisted"].inc(count, tags=self.tags)

    def broker_stats(self, stats: dict[str, Any]) -> None:
        """Record the broker's depth, in-flight and redelivery counters."""
        if self.enabled:
            m = _metrics()
            m["depth"].set(float(stats.get("ready", 0)), tags=self.tags)
            m["in_flight"].set(float(stats.get("in_flight", 0)), tags=self.tags)
            m["redelivered"].set(float(stats.get("redelivered", 0)), tags=self.tags)
