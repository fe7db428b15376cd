"""``memory`` broker: a :class:`QueueActor` in this process. For one-process runs and tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from ..errors import BrokerError
from ..queue_actor import QueueActor
from .base import MESSAGE_TYPES, AnyMessage, MessageBroker, RawItem


class MemoryBroker(MessageBroker):
    """In-process queues (the seed's ``memory``). It cannot be shared with another process."""

    name = "memory"

    def __init__(
        self, maxsize: int = 100_000, lease_seconds: float = 30.0, max_deliveries: int = 5
    ) -> None:
        super().__init__()
        self._queue = QueueActor(maxsize, lease_seconds, max_deliveries, text_only=False)
        self.put_timeout: float | None = 60.0

    def publish_batch(self, messages: Sequence[AnyMessage]) -> list[str]:
        """Queue the message objects themselves: in one process there is no wire to encode for,
        and the models are frozen, so producer and consumer can share them."""
        for message in messages:
            if not isinstance(message, MESSAGE_TYPES):
                raise TypeError(f"not a message: {type(message).__name__}")
        return self._queue.put_batch(list(messages), timeout=self.put_timeout)

    def put_raw(self, payloads: Sequence[str]) -> list[str]:
        """Enqueue payloads, waiting up to ``put_timeout`` for space."""
        return self._queue.put_batch(list(payloads), timeout=self.put_timeout)

    def get_raw(self, max_items: int, timeout: float | None) -> list[RawItem]:
        """Lease payloads from the in-process queue."""
        return [
            RawItem(d.delivery_id, d.payload, d.deliveries)
            for d in self._queue.get_batch(max_items, timeout)
        ]

    def ack(self, delivery_ids: Sequence[str]) -> int:
        """Acknowledge deliveries."""
        return self._queue.ack(list(delivery_ids))

    def dead_letter(self, item: RawItem, reason: str) -> None:
        """Move a payload to the dead-letter list."""
        self._queue.dead_letter(item.delivery_id, reason)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Dead letters so far."""
        return self._queue.dead_letters()

    def take_dead_letters(self, delivery_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Remove and return dead letters."""
        return self._queue.take_dead_letters(None if delivery_ids is None else list(delivery_ids))

    def stats(self) -> dict[str, int]:
        """Queue counters."""
        return self._queue.stats()

    def incarnation(self) -> str:
        """The in-process queue's id (it lives and dies with this process)."""
        return self._queue.incarnation()

    def close(self) -> None:
        """Wake any blocked consumer."""
        self._queue.close()

    def __reduce__(self) -> NoReturn:
        raise BrokerError(
            "the memory broker lives in one process and cannot be sent to another; "
            "use message_broker 'ray' or 'redis' across processes"
        )
