"""``QueueActor``: a bounded queue of JSON payloads.

Batch put/get, leases, ack and dead letters.

A plain, thread-safe class. The ``memory`` broker uses it directly in one process; the ``ray``
broker hosts it as a threaded Ray actor (``max_concurrency`` > 1, so a blocking ``get_batch`` does
not stall producers). Payloads are stored as text and validated by the broker that reads them.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from . import failpoints
from .errors import QueueFull


@dataclass
class _Entry:
    payload: Any
    deliveries: int = 0
    deadline: float = 0.0


@dataclass(frozen=True)
class RawDelivery:
    """A leased payload: ack ``delivery_id`` before the lease ends or it is delivered again."""

    delivery_id: str
    payload: Any
    deliveries: int


@dataclass(frozen=True)
class DeadLetter:
    """A payload taken out of circulation, with the reason."""

    delivery_id: str
    payload: str
    reason: str
    deliveries: int
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "delivery_id": self.delivery_id,
            "payload": self.payload,
            "reason": self.reason,
            "deliveries": self.deliveries,
            "at": self.at,
        }


class QueueActor:
    """Bounded at-least-once queue. Capacity counts ready and leased (unacknowledged) payloads."""

    def __init__(
        self,
        maxsize: int = 100_000,
        lease_seconds: float = 30.0,
        max_deliveries: int = 5,
        text_only: bool = True,
    ) -> None:
        """``text_only`` (the default, and always so as a Ray actor) admits only JSON text; the
        in-process memory broker turns it off to queue already-validated message objects."""
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.text_only = text_only
        self.maxsize = maxsize
        self.lease_seconds = lease_seconds
        self.max_deliveries = max_deliveries
        # Delivery ids carry this incarnation's id: after a restart (Ray restarts a dead queue
        # actor) a late ack for an id of the old incarnation must not match a new message.
        self._incarnation = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self._entries: dict[str, _Entry] = {}
        self._ready: deque[str] = deque()
        # Leased ids in lease order; leases share one duration, so the first expires first.
        self._leased: OrderedDict[str, None] = OrderedDict()
        self._dead: list[DeadLetter] = []
        self._redelivered = 0
        self._closed = False
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def put_batch(self, payloads: list[Any], timeout: float | None = None) -> list[str]:
        """Enqueue payloads in order, blocking while the queue is full; returns their ids.

        Raises :class:`QueueFull` if space does not appear within ``timeout``; the payloads
        enqueued before that stay enqueued and their ids are in the exception's ``accepted``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        ids: list[str] = []
        with self._lock:
            for payload in payloads:
                if self.text_only and not isinstance(payload, str):
                    raise TypeError(f"payloads are JSON text, not {type(payload).__name__}")
                while len(self._entries) >= self.maxsize:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        exc = QueueFull(
                            f"queue full ({self.maxsize} unacknowledged messages) after "
                            f"{timeout}s; {len(ids)} of {len(payloads)} accepted"
                        )
                        exc.accepted = ids  # type: ignore[attr-defined]
                        raise exc
                    self._not_full.wait(remaining)
                delivery_id = f"{self._incarnation}-{next(self._ids)}"
                self._entries[delivery_id] = _Entry(payload)
                self._ready.append(delivery_id)
                ids.append(delivery_id)
            self._not_empty.notify_all()
        return ids

    def get_batch(self, max_items: int = 1, timeout: float | None = 0.0) -> list[RawDelivery]:
        """Lease up to ``max_items`` payloads, waiting up to ``timeout`` for the first one.

        Expired leases are delivered again first. A payload already delivered ``max_deliveries``
        times without an ack goes to the dead-letter list instead (a poison message).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                self._expire_leases()
                if self._ready or self._closed:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                wait = self._next_expiry_in()
                if remaining is not None:
                    wait = remaining if wait is None else min(wait, remaining)
                self._not_empty.wait(wait)
            if self._ready:
                failpoints.hit("queue.before_get")
            out: list[RawDelivery] = []
            lease_end = time.monotonic() + self.lease_seconds
            while self._ready and len(out) < max_items:
                delivery_id = self._ready.popleft()
                entry = self._entries[delivery_id]
                entry.deliveries += 1
                entry.deadline = lease_end
                self._leased[delivery_id] = None
                out.append(RawDelivery(delivery_id, entry.payload, entry.deliveries))
            return out

    def ack(self, delivery_ids: list[str]) -> int:
        """Acknowledge leased payloads; returns how many were still held (others are ignored)."""
        done = 0
        with self._lock:
            for delivery_id in delivery_ids:
                if self._entries.pop(delivery_id, None) is not None:
                    self._leased.pop(delivery_id, None)
                    done += 1
            if done:
                self._not_full.notify_all()
        return done

    def nack(self, delivery_ids: list[str]) -> int:
        """Give leased payloads back for immediate redelivery."""
        done = 0
        with self._lock:
            for delivery_id in delivery_ids:
                if delivery_id in self._leased:
                    del self._leased[delivery_id]
                    self._ready.appendleft(delivery_id)
                    done += 1
            if done:
                self._not_empty.notify_all()
        return done

    def dead_letter(self, delivery_id: str, reason: str) -> bool:
        """Move a leased payload to the dead-letter list (a consumer could not decode it)."""
        with self._lock:
            entry = self._entries.pop(delivery_id, None)
            if entry is None:
                return False
            self._leased.pop(delivery_id, None)
            self._dead.append(
                DeadLetter(delivery_id, _as_text(entry.payload), reason, entry.deliveries)
            )
            self._not_full.notify_all()
            return True

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter so far, oldest first."""
        with self._lock:
            return [d.as_dict() for d in self._dead]

    def take_dead_letters(self, delivery_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """Remove and return dead letters (those ids, or all)."""
        with self._lock:
            wanted = None if delivery_ids is None else set(delivery_ids)
            taken = [d for d in self._dead if wanted is None or d.delivery_id in wanted]
            self._dead = [d for d in self._dead if d not in taken]
            return [d.as_dict() for d in taken]

    def stats(self) -> dict[str, int]:
        """Depth (ready), in flight (leased), dead letters and redeliveries."""
        with self._lock:
            self._expire_leases()
            return {
                "ready": len(self._ready),
                "in_flight": len(self._leased),
                "dead": len(self._dead),
                "redelivered": self._redelivered,
                "capacity": self.maxsize,
            }

    def close(self) -> None:
        """Wake every waiter; later gets return at once with whatever is ready."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def ping(self) -> bool:
        """Liveness check used by hosts."""
        return True

    def incarnation(self) -> str:
        """An id that changes when this queue is re-created (and so lost what it held)."""
        return self._incarnation

    # Called with the lock held.
    def _expire_leases(self) -> None:
        now = time.monotonic()
        while self._leased:
            delivery_id = next(iter(self._leased))
            entry = self._entries[delivery_id]
            if entry.deadline > now:
                break
            del self._leased[delivery_id]
            if entry.deliveries >= self.max_deliveries:
                del self._entries[delivery_id]
                self._dead.append(
                    DeadLetter(
                        delivery_id,
                        _as_text(entry.payload),
                        f"not acknowledged after {entry.deliveries} deliveries",
                        entry.deliveries,
                    )
                )
                self._not_full.notify_all()
            else:
                self._ready.appendleft(delivery_id)
                self._redelivered += 1

    def _next_expiry_in(self) -> float | None:
        if not self._leased:
            return None
        first = self._entries[next(iter(self._leased))]
        return max(0.0, first.deadline - time.monotonic())


def _as_text(payload: Any) -> str:
    """A dead letter's payload as text, whether it was queued as text or as a message object."""
    if isinstance(payload, str):
        return payload
    dump = getattr(payload, "model_dump_json", None)
    return str(dump()) if callable(dump) else repr(payload)
