"""The broker interface every backend implements: the seed's ``publish`` and ``queue.put``/``get``,
plus what at-least-once delivery needs: batch put/get, ``ack``, leases, dead letters and ``close``.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import MessageDecodeError, QueueEmpty
from ..messages import AgentResultMessage, PersistClaim, Stop, decode, encode

AnyMessage = PersistClaim | AgentResultMessage | Stop
MESSAGE_TYPES = (PersistClaim, AgentResultMessage, Stop)


@dataclass(frozen=True)
class Delivery:
    """A leased, validated message. Ack its ``delivery_id`` once its effect is durable."""

    delivery_id: str
    message: AnyMessage
    deliveries: int


@dataclass(frozen=True)
class RawItem:
    """A payload as a backend returns it, before validation."""

    delivery_id: str
    payload: str | bytes | AnyMessage
    deliveries: int


class BrokerQueue:
    """The seed's ``broker.queue``: ``put(message)`` and ``get(timeout)`` like ``queue.Queue``.

    ``get`` acknowledges what it returns (at most once). Consumers that must not lose a message
    use ``broker.get_batch`` and ``broker.ack`` instead.
    """

    def __init__(self, broker: MessageBroker) -> None:
        self._broker = broker

    def put(self, message: AnyMessage) -> str:
        """Publish one message; returns its delivery id."""
        return self._broker.publish(message)

    def get(self, block: bool = True, timeout: float | None = None) -> AnyMessage:
        """The next valid message, acknowledged; raises :class:`QueueEmpty` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Wait in slices of at most a second so a blocking get stays interruptible.
            if not block:
                wait = 0.0
            elif deadline is None:
                wait = 1.0
            else:
                wait = max(0.0, min(1.0, deadline - time.monotonic()))
            batch = self._broker.get_batch(1, timeout=wait)
            if batch:
                self._broker.ack([batch[0].delivery_id])
                return batch[0].message
            if not block or (deadline is not None and time.monotonic() >= deadline):
                raise QueueEmpty(f"no message within {timeout}s")

    def qsize(self) -> int:
        """Messages ready for delivery (not counting leased ones)."""
        return int(self._broker.stats().get("ready", 0))


class MessageBroker(abc.ABC):
    """A message broker. Subclasses implement the ``_raw`` methods; validation lives here, once."""

    name: str = "abstract"

    def __init__(self) -> None:
        self.queue = BrokerQueue(self)

    def publish(self, message: AnyMessage) -> str:
        """Publish one message (the seed's API); returns its delivery id."""
        return self.publish_batch([message])[0]

    def publish_batch(self, messages: Sequence[AnyMessage]) -> list[str]:
        """Publish messages in order in as few round trips as the backend allows."""
        return self.put_raw([encode(m) for m in messages])

    def get_batch(self, max_items: int = 100, timeout: float | None = 0.0) -> list[Delivery]:
        """Lease up to ``max_items`` valid messages, waiting up to ``timeout`` for the first.

        A payload that fails validation is moved to the dead-letter list with its reason and
        skipped; the consumer keeps going. A message object (an in-process queue holds the
        validated models themselves) passes as it is.
        """
        out: list[Delivery] = []
        for item in self.get_raw(max_items, timeout):
            if isinstance(item.payload, MESSAGE_TYPES):
                out.append(Delivery(item.delivery_id, item.payload, item.deliveries))
                continue
            try:
                message = decode(item.payload)
            except MessageDecodeError as exc:
                self.dead_letter(item, exc.reason)
                continue
            out.append(Delivery(item.delivery_id, message, item.deliveries))
        return out

    @abc.abstractmethod
    def put_raw(self, payloads: Sequence[str]) -> list[str]:
        """Enqueue already-encoded JSON payloads as they are (producers normally use publish)."""

    @abc.abstractmethod
    def get_raw(self, max_items: int, timeout: float | None) -> list[RawItem]:
        """Lease up to ``max_items`` payloads without validating them."""

    @abc.abstractmethod
    def ack(self, delivery_ids: Sequence[str]) -> int:
        """Acknowledge deliveries so they are never delivered again; returns how many were held."""

    @abc.abstractmethod
    def dead_letter(self, item: RawItem, reason: str) -> None:
        """Take a leased payload out of circulation, recording why."""

    @abc.abstractmethod
    def dead_letters(self) -> list[dict[str, Any]]:
        """Dead letters so far: ``delivery_id``, ``payload``, ``reason``, ``deliveries``."""

    @abc.abstractmethod
    def take_dead_letters(self, delivery_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Remove and return dead letters (those ids, or all of them)."""

    def requeue_dead_letters(self, delivery_ids: Sequence[str] | None = None) -> int:
        """Put dead letters back on the queue as they were; they are validated again when
        consumed (a message that is still invalid goes back to the dead-letter list)."""
        taken = self.take_dead_letters(delivery_ids)
        if taken:
            self.put_raw([str(d["payload"]) for d in taken])
        return len(taken)

    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters: ``ready``, ``in_flight``, ``dead``, ``redelivered``."""

    @abc.abstractmethod
    def incarnation(self) -> str:
        """An id of the server or actor holding the messages; it changes when that was
        re-created, so a publisher knows unacknowledged messages may be gone and republishes."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and actors this broker owns; idempotent."""

    def __enter__(self) -> MessageBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
