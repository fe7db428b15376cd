"""A one-line live progress display for terminals; silent when stderr is not a TTY."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .models import AgentRecord, QueryResponse, QueryState


class ProgressDisplay:
    """Callbacks that redraw ``loop 2/3 · agents 3/4 · claims 12 · errors 0`` in place."""

    def __init__(self, loops: int, agents: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.loops = loops
        self.agents = agents
        self.loop = 0
        self.done = 0
        self.claims = 0
        self.errors = 0
        self.started = time.monotonic()

    def on_run_start(self, run_id: str, state: QueryState) -> None:
        """Show the run id."""
        self._draw(f"run {run_id} started")

    def on_agent_result(self, record: AgentRecord) -> None:
        """Count a finished agent."""
        self.loop = record.loop
        self.done += 1
        self.claims += len(record.claim_ids)
        self.errors += record.status == "error"
        self._draw(f"last: {record.agent} {record.status}")

    def on_cycle_end(self, loop: int, state: QueryState) -> None:
        """Reset the per-loop agent count."""
        self.done = 0
        self.loop = loop + 1
        self._draw("loop done")

    def on_run_end(self, response: QueryResponse) -> None:
        """Clear the line."""
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _draw(self, note: str) -> None:
        if not self.enabled:
            return
        loop = min(self.loop + 1, self.loops)
        line = (
            f"loop {loop}/{self.loops} · agents {self.done}/{self.agents} · claims {self.claims}"
            f" · errors {self.errors} · {time.monotonic() - self.started:.1f}s · {note}"
        )
        self.stream.write("\r\033[K" + line[:160])
        self.stream.flush()
