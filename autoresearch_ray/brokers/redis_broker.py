"""``redis`` broker: Redis Streams with one consumer group, for runs that span nodes.

Publish is a pipelined ``XADD``; consumers read with ``XREADGROUP`` (the entry stays pending until
``XACK``), and an entry left pending longer than the lease is taken over with ``XAUTOCLAIM``.
Payloads are JSON text; the client runs with ``decode_responses=False`` so a binary payload (a
pickle, say) reaches the validator as bytes and is dead-lettered rather than crashing the reader.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..config import redact_url
from ..errors import BrokerError, BrokerUnavailable
from .base import MessageBroker, RawItem

_FIELD = b"m"


class RedisKeys:
    """Every Redis key of one namespace, defined once."""

    def __init__(self, namespace: str) -> None:
        self.stream = f"{namespace}:stream"
        self.group = f"{namespace}:claim-store"
        self.dead = f"{namespace}:dead"
        self.counters = f"{namespace}:counters"

    def all(self) -> list[str]:
        """Keys to delete when a namespace is dropped."""
        return [self.stream, self.dead, self.counters]


class RedisBroker(MessageBroker):
    """At-least-once delivery over a Redis stream."""

    name = "redis"

    def __init__(
        self,
        url: str,
        namespace: str = "autoresearch",
        lease_seconds: float = 30.0,
        max_deliveries: int = 5,
        consumer: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        import redis
        from redis.backoff import ExponentialBackoff, NoBackoff
        from redis.retry import Retry

        self.url = url
        self.namespace = namespace
        self.keys = RedisKeys(namespace)
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.max_deliveries = max_deliveries
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._connect_timeout = connect_timeout
        self._last_reclaim = 0.0
        try:
            # Probe once without retries: a wrong URL or a stopped server should fail at once.
            # Retries (below) are for a connection that has worked and then dropped.
            probe = redis.Redis.from_url(
                url, socket_connect_timeout=connect_timeout, retry=Retry(NoBackoff(), 0)
            )
            try:
                probe.ping()
            finally:
                probe.close()
            self._redis = redis.Redis.from_url(
                url,
                decode_responses=False,
                socket_connect_timeout=connect_timeout,
                socket_keepalive=True,
                health_check_interval=30,
                # Transient disconnects (a restarted server, a dropped socket) are retried with
                # backoff by the client itself, so callers see only lasting failures.
                retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=6),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            )
            self._redis.ping()
        except ValueError as exc:
            raise BrokerUnavailable(f"invalid Redis URL {redact_url(url)}: {exc}") from None
        except redis.RedisError as exc:
            raise BrokerUnavailable(
                f"cannot reach Redis at {redact_url(url)}: {_scrub(exc, url)}; "
                "check broker_url and that redis-server is running"
            ) from None
        self._ensure_group()

    def __repr__(self) -> str:
        return f"RedisBroker({redact_url(self.url)!r}, namespace={self.namespace!r})"

    def _ensure_group(self) -> None:
        import redis

        try:
            self._redis.xgroup_create(self.keys.stream, self.keys.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise BrokerError(f"cannot create consumer group: {exc}") from None

    def put_raw(self, payloads: Sequence[str]) -> list[str]:
        """``XADD`` each payload, pipelined in one round trip per 1,000."""
        ids: list[str] = []
        for start in range(0, len(payloads), 1000):
            chunk = payloads[start : start + 1000]

            def add(pipe: Any, chunk: Sequence[str] = chunk) -> None:
                for payload in chunk:
                    pipe.xadd(self.keys.stream, {_FIELD: payload.encode("utf-8")})

            ids.extend(_text(i) for i in self._pipeline(add))
        return ids

    def get_raw(self, max_items: int, timeout: float | None) -> list[RawItem]:
        """Take over expired leases first, then read new entries, blocking up to ``timeout``."""
        items = self._reclaim(max_items)
        want = max_items - len(items)
        if want <= 0:
            return items
        # BLOCK 0 means "forever" to Redis: a zero timeout is a plain non-blocking read, and no
        # timeout blocks in one-second slices so the caller can be interrupted.
        block: int | None
        if items or timeout == 0:
            block = None
        elif timeout is None:
            block = 1000
        else:
            block = max(1, int(timeout * 1000))
        reply = self._call(
            self._redis.xreadgroup,
            self.keys.group,
            self.consumer,
            {self.keys.stream: ">"},
            count=want,
            block=block,
        )
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                items.append(RawItem(_text(entry_id), fields.get(_FIELD, b""), 1))
        return items

    def _reclaim(self, max_items: int) -> list[RawItem]:
        # Checking for expired leases costs a round trip; a tenth of the lease is often enough.
        now = time.monotonic()
        if now - self._last_reclaim < min(1.0, self.lease_ms / 10_000):
            return []
        self._last_reclaim = now
        reply = self._call(
            self._redis.xautoclaim,
            self.keys.stream,
            self.keys.group,
            self.consumer,
            min_idle_time=self.lease_ms,
            start_id="0-0",
            count=max_items,
        )
        claimed = [(entry_id, fields) for entry_id, fields in reply[1] if fields is not None]
        if not claimed:
            return []

        def delivery_counts(pipe: Any) -> None:
            for entry_id, _ in claimed:
                pipe.xpending_range(self.keys.stream, self.keys.group, entry_id, entry_id, 1)

        counts = self._pipeline(delivery_counts)
        self._call(self._redis.hincrby, self.keys.counters, "redelivered", len(claimed))
        out: list[RawItem] = []
        for (entry_id, fields), pending in zip(claimed, counts, strict=True):
            deliveries = int(pending[0]["times_delivered"]) if pending else self.max_deliveries
            item = RawItem(_text(entry_id), fields.get(_FIELD, b""), deliveries)
            if deliveries > self.max_deliveries:
                self.dead_letter(item, f"not acknowledged after {deliveries - 1} deliveries")
            else:
                out.append(item)
        return out

    def ack(self, delivery_ids: Sequence[str]) -> int:
        """``XACK`` then ``XDEL``: acknowledged entries are not kept, so the stream stays short."""
        if not delivery_ids:
            return 0

        def ack_and_delete(pipe: Any) -> None:
            pipe.xack(self.keys.stream, self.keys.group, *delivery_ids)
            pipe.xdel(self.keys.stream, *delivery_ids)

        acked, _ = self._pipeline(ack_and_delete)
        return int(acked)

    def dead_letter(self, item: RawItem, reason: str) -> None:
        """Record the payload and reason in the dead-letter list, then drop the entry."""
        payload = item.payload
        text = (
            payload.decode("utf-8", "backslashreplace") if isinstance(payload, bytes) else payload
        )
        record = {
            "delivery_id": item.delivery_id,
            "payload": text,
            "reason": reason,
            "deliveries": item.deliveries,
            "at": time.time(),
        }

        def move(pipe: Any) -> None:
            pipe.rpush(self.keys.dead, json.dumps(record))
            pipe.xack(self.keys.stream, self.keys.group, item.delivery_id)
            pipe.xdel(self.keys.stream, item.delivery_id)

        self._pipeline(move, transaction=True)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Dead letters of this namespace, oldest first."""
        return [json.loads(raw) for raw in self._call(self._redis.lrange, self.keys.dead, 0, -1)]

    def take_dead_letters(self, delivery_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Remove and return dead letters; each is removed by its exact value (LREM), so a
        concurrent reader never sees half a list."""
        wanted = None if delivery_ids is None else set(delivery_ids)
        taken = []
        for raw in self._call(self._redis.lrange, self.keys.dead, 0, -1):
            record = json.loads(raw)
            selected = wanted is None or record.get("delivery_id") in wanted
            if selected and self._call(self._redis.lrem, self.keys.dead, 1, raw):
                taken.append(record)
        return taken

    def stats(self) -> dict[str, int]:
        """Ready (not yet read), in flight (pending), dead and redelivered counts."""

        def counters(pipe: Any) -> None:
            pipe.xlen(self.keys.stream)
            pipe.xpending(self.keys.stream, self.keys.group)
            pipe.llen(self.keys.dead)
            pipe.hget(self.keys.counters, "redelivered")

        length, pending, dead, redelivered = self._pipeline(counters)
        in_flight = int(pending["pending"]) if pending else 0
        return {
            "ready": max(0, int(length) - in_flight),
            "in_flight": in_flight,
            "dead": int(dead),
            "redelivered": int(redelivered or 0),
        }

    def incarnation(self) -> str:
        """The server's ``run_id``: new after every restart of redis-server. Without AOF a
        restart loses the stream; with it, republishing what is unacknowledged costs only
        duplicates, which the claim store absorbs."""
        info = self._call(self._redis.info, "server")
        return str(info.get("run_id", ""))

    def purge(self) -> None:
        """Delete every key of this namespace (tests, ``dlq drop``)."""
        self._call(self._redis.delete, *self.keys.all())
        self._ensure_group()

    def close(self) -> None:
        """Close the connection pool; idempotent."""
        try:
            self._redis.close()
        except Exception:  # closing a dead connection is not an error worth raising
            pass

    def _pipeline(self, build: Callable[[Any], None], transaction: bool = False) -> list[Any]:
        """Run the commands ``build`` queues on a fresh pipeline, in one round trip (rebuilt if
        it has to be retried: a pipeline is emptied by running it)."""

        def run() -> list[Any]:
            pipe = self._redis.pipeline(transaction=transaction)
            build(pipe)
            return list(pipe.execute())

        result: list[Any] = self._call(run)
        return result

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            try:
                return fn(*args, **kwargs)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The server lost the stream and its group (restarted without persistence,
                # flushed): re-create them and try once more, rather than fail forever.
                self._ensure_group()
                return fn(*args, **kwargs)
        except redis.ConnectionError as exc:
            raise BrokerUnavailable(
                f"lost Redis at {redact_url(self.url)}: {_scrub(exc, self.url)}"
            ) from None
        except redis.RedisError as exc:
            raise BrokerError(f"Redis error: {_scrub(exc, self.url)}") from None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Crossing to another process means a new connection and a new consumer name there.
        return (
            RedisBroker,
            (
                self.url,
                self.namespace,
                self.lease_ms / 1000,
                self.max_deliveries,
                None,
                self._connect_timeout,
            ),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _scrub(exc: BaseException, url: str) -> str:
    """The error text without the URL's password, should the client have echoed it."""
    from urllib.parse import urlsplit

    text = str(exc)
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text
