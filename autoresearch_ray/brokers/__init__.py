"""Message brokers behind one interface, and ``get_message_broker`` to pick one by name."""

from __future__ import annotations

from typing import Any

from ..config import BROKERS
from ..errors import BadInputError, UnknownBrokerError
from .base import BrokerQueue, Delivery, MessageBroker, RawItem
from .memory import MemoryBroker

__all__ = [
    "BrokerQueue",
    "Delivery",
    "MemoryBroker",
    "MessageBroker",
    "RawItem",
    "get_message_broker",
]


def get_message_broker(name: str, url: str | None = None, **options: Any) -> MessageBroker:
    """A broker by name: ``memory``, ``redis`` (needs ``url``) or ``ray`` (needs ``ray.init``).

    ``options`` go to the broker's constructor (``lease_seconds``, ``max_deliveries``, and
    ``maxsize`` for memory/ray or ``namespace`` for redis).
    """
    if name == "memory":
        return MemoryBroker(**options)
    if name == "redis":
        if not url:
            raise BadInputError("the redis broker needs a URL such as redis://127.0.0.1:6379/0")
        from .redis_broker import RedisBroker

        return RedisBroker(url, **options)
    if name == "ray":
        from .ray_broker import RayBroker

        return RayBroker(**options)
    raise UnknownBrokerError(
        f"unknown message broker {name!r}; allowed: {', '.join(repr(b) for b in BROKERS)}"
    )
