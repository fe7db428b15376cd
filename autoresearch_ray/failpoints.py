"""Failpoints: named places where a fault-injection test can make this process die on purpose.

Off unless ``AUTORESEARCH_FAILPOINTS_DIR`` names a directory. A test arms a failpoint by writing a
file named after it in that directory (content: ``kill``); the first process to reach the point
renames the file away (atomic, so exactly one process fires, once) and then acts. Files rather
than in-memory flags because the process that must die is often a Ray actor that a test cannot
reach, and because an actor restarted after the kill must not fire again.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "AUTORESEARCH_FAILPOINTS_DIR"
#: Every failpoint, so a test cannot arm a misspelled one.
NAMES = (
    "claim_store.before_commit",  # a batch was read from the broker, nothing committed yet
    "claim_store.after_commit",  # committed, not yet acknowledged to the broker
    "queue.before_get",  # the queue holds accepted messages; a consumer is about to take some
)


def hit(name: str) -> None:
    """Fire failpoint ``name`` here if a test armed it; costs one environment lookup if not."""
    directory = os.environ.get(ENV)
    if not directory:
        return
    armed = Path(directory) / name
    fired = armed.with_name(f"{name}.fired.{os.getpid()}")
    try:
        os.rename(armed, fired)
    except OSError:  # not armed, or another process fired it first
        return
    action = fired.read_text(encoding="utf-8").strip() or "kill"
    if action == "kill":
        # SIGKILL, not an exception: the point is to die without any cleanup running.
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"failpoint {name}: unknown action {action!r} (allowed: kill)")


def arm(directory: str | Path, name: str, action: str = "kill") -> Path:
    """Arm ``name`` in ``directory`` (for tests); returns the file that arms it."""
    if name not in NAMES:
        raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(NAMES)}")
    path = Path(directory) / name
    path.write_text(action, encoding="utf-8")
    return path


def fired(directory: str | Path, name: str) -> list[int]:
    """Process ids that fired ``name`` in ``directory``."""
    return [int(p.name.rsplit(".", 1)[1]) for p in Path(directory).glob(f"{name}.fired.*")]
