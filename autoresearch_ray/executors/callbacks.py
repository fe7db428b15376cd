"""Run callbacks: hooks the executor calls in the driver as a run progresses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..errors import BadInputError
from ..models import AgentRecord, QueryResponse, QueryState


@dataclass
class RunCallbacks:
    """Optional hooks; each runs in the driver, in the order events happen.

    ``on_agent_result`` fires as each agent finishes (completion order, not submission order);
    ``on_cycle_end`` after a loop's claims are all acknowledged and the loop is checkpointed.
    """

    on_run_start: Callable[[str, QueryState], None] | None = None
    on_agent_start: Callable[[int, str], None] | None = None
    on_agent_result: Callable[[AgentRecord], None] | None = None
    on_cycle_end: Callable[[int, QueryState], None] | None = None
    on_run_end: Callable[[QueryResponse], None] | None = None

    @classmethod
    def coerce(cls, value: Any) -> RunCallbacks:
        """Accept None, a RunCallbacks, a mapping of hook name to callable, or any object with
        methods of those names."""
        if value is None:
            return cls()
        if isinstance(value, RunCallbacks):
            return value
        names = [f.name for f in fields(cls)]
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise BadInputError(
                    f"unknown callback(s) {', '.join(unknown)}; allowed: {', '.join(names)}"
                )
            hooks = dict(value)
        else:
            hooks = {n: getattr(value, n) for n in names if callable(getattr(value, n, None))}
        for name, hook in hooks.items():
            if hook is not None and not callable(hook):
                raise BadInputError(f"callback {name} is not callable")
        return cls(**hooks)
