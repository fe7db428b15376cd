"""``ray`` broker: a :class:`QueueActor` hosted as a threaded Ray actor.

Unlike ``ray.util.queue`` (one actor call per item), every call here moves a whole batch, so a
loop's claims cross in one round trip. The broker object pickles as its actor handle, so it can be
handed to other actors (the claim store consumes from the same queue).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import BrokerError, QueueFull
from ..queue_actor import QueueActor
from .base import MessageBroker, RawItem


class RayBroker(MessageBroker):
    """A broker over a ``QueueActor`` Ray actor. Creates (and then owns) one if none is given;
    ``actor`` may be a handle or the name of one."""

    name = "ray"

    def __init__(
        self,
        actor: Any = None,
        maxsize: int = 100_000,
        lease_seconds: float = 30.0,
        max_deliveries: int = 5,
        actor_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import ray

        if not ray.is_initialized():
            raise BrokerError("the ray broker needs a running Ray (ray.init) in this process")
        self._owned = actor is None
        self.actor_name: str | None = None
        if isinstance(actor, str):  # a queue another broker created, by its name
            self.actor_name, actor = actor, ray.get_actor(actor)
        if actor is None:
            # Named, so copies of this broker (in the claim store's constructor, say) refer to
            # it by a string: an actor restarted by Ray re-runs its constructor from its
            # arguments, and an argument holding an actor handle is kept in the object store,
            # where Ray cannot promise it survives (ray-project/ray#53727).
            self.actor_name = f"autoresearch-queue-{uuid.uuid4().hex[:12]}"
            # Restarted if it dies, and calls in flight are retried on the new one (puts and
            # acks are idempotent for the store); what it held is republished by the coordinator,
            # which sees the new incarnation.
            options: dict[str, Any] = {
                "num_cpus": 0,
                "max_concurrency": 32,
                "max_restarts": -1,
                "max_task_retries": -1,
            }
            options.update(actor_options or {}, name=self.actor_name)
            actor = (
                ray.remote(QueueActor)
                .options(**options)
                .remote(maxsize, lease_seconds, max_deliveries)
            )
        self.actor = actor
        self.put_timeout: float | None = 60.0

    def put_raw(self, payloads: Sequence[str]) -> list[str]:
        """Enqueue payloads in one actor call."""
        import ray

        try:
            ids: list[str] = ray.get(self.actor.put_batch.remote(list(payloads), self.put_timeout))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, QueueFull):
                raise QueueFull(str(cause)) from None
            raise
        return ids

    def get_raw(self, max_items: int, timeout: float | None) -> list[RawItem]:
        """Lease payloads in one actor call."""
        import ray

        batch = ray.get(self.actor.get_batch.remote(max_items, timeout))
        return [RawItem(d.delivery_id, d.payload, d.deliveries) for d in batch]

    def ack(self, delivery_ids: Sequence[str]) -> int:
        """Acknowledge deliveries in one actor call."""
        import ray

        return int(ray.get(self.actor.ack.remote(list(delivery_ids))))

    def dead_letter(self, item: RawItem, reason: str) -> None:
        """Move a payload to the actor's dead-letter list."""
        import ray

        ray.get(self.actor.dead_letter.remote(item.delivery_id, reason))

    def dead_letters(self) -> list[dict[str, Any]]:
        """Dead letters held by the actor."""
        import ray

        return list(ray.get(self.actor.dead_letters.remote()))

    def take_dead_letters(self, delivery_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Remove and return dead letters held by the actor."""
        import ray

        ids = None if delivery_ids is None else list(delivery_ids)
        return list(ray.get(self.actor.take_dead_letters.remote(ids)))

    def stats(self) -> dict[str, int]:
        """Queue counters from the actor."""
        import ray

        return dict(ray.get(self.actor.stats.remote()))

    def incarnation(self) -> str:
        """The queue actor's incarnation (new after Ray restarted it)."""
        import ray

        return str(ray.get(self.actor.incarnation.remote()))

    def close(self) -> None:
        """Kill the queue actor if this broker created it; a borrowed actor is left running."""
        if self._owned and self.actor is not None:
            import ray

            try:
                ray.kill(self.actor)
            except Exception:  # already gone (Ray shut down, actor died): nothing to release
                pass
            self.actor = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A copy in another process borrows the actor (by name when it has one); only the
        # creator kills it.
        return (_borrow, (self.actor_name or self.actor,))


def _borrow(actor: Any) -> RayBroker:
    return RayBroker(actor=actor)
