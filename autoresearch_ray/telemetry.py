"""Run metrics through Ray's metrics API, so the Ray dashboard and Prometheus see them.

Exported as ``ray_autoresearch_*`` on each node's metrics endpoint (``_metrics_export_port``).
Outside a Ray process (ProcessExecutor, unit tests) every call is a no-op.
"""

from __future__ import annotations

import sys
from typing import Any

#: Agent latency buckets, seconds: from a noop (~1 ms) to a slow research agent (minutes).
LATENCY_BOUNDARIES = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0]


class RunTelemetry:
    """Counters, gauges and a histogram of one backbone role."""

    def __init__(self, executor: str = "", broker: str = "") -> None:
        ray = sys.modules.get("ray")
        self.enabled = bool(ray is not None and ray.is_initialized())
        if not self.enabled:
            return
        from ray.util.metrics import Counter, Gauge, Histogram

        tags = {"executor": executor or "unknown", "broker": broker or "unknown"}
        keys = ("executor", "broker")
        self._executions = Counter(
            "autoresearch_agent_executions",
            description="Agent executions finished, by agent and status.",
            tag_keys=(*keys, "agent", "status"),
        )
        self._latency = Histogram(
            "autoresearch_agent_latency_seconds",
            description="Wall time of one agent execution in its worker.",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=(*keys, "agent"),
        )
        self._persisted = Counter(
            "autoresearch_claims_persisted",
            description="Claims committed by the claim store (redeliveries included).",
            tag_keys=keys,
        )
        self._depth = Gauge(
            "autoresearch_queue_depth",
            description="Messages waiting in the broker, at the end of the last loop.",
            tag_keys=keys,
        )
        self._in_flight = Gauge(
            "autoresearch_queue_in_flight",
            description="Messages leased and not yet acknowledged, at the end of the last loop.",
            tag_keys=keys,
        )
        self._redelivered = Gauge(
            "autoresearch_redeliveries",
            description="Messages delivered again after their lease ran out (cumulative).",
            tag_keys=keys,
        )
        for metric in (
            self._executions,
            self._latency,
            self._persisted,
            self._depth,
            self._in_flight,
            self._redelivered,
        ):
            metric.set_default_tags(tags)

    def agent_done(self, agent: str, status: str, seconds: float) -> None:
        """Count one finished execution and observe its latency."""
        if self.enabled:
            self._executions.inc(1, tags={"agent": agent, "status": status})
            self._latency.observe(seconds, tags={"agent": agent})

    def claims_persisted(self, count: int) -> None:
        """Count claims committed."""
        if self.enabled and count:
            self._persisted.inc(count)

    def broker_stats(self, stats: dict[str, Any]) -> None:
        """Record the broker's depth, in-flight and redelivery counters."""
        if self.enabled:
            self._depth.set(float(stats.get("ready", 0)))
            self._in_flight.set(float(stats.get("in_flight", 0)))
            self._redelivered.set(float(stats.get("redelivered", 0)))
