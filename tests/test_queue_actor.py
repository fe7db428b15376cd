"""The bounded lease queue behind the memory and ray brokers, used directly."""

from __future__ import annotations

import threading
import time

import pytest

from autoresearch_ray.errors import QueueFull
from autoresearch_ray.queue_actor import QueueActor


def test_batch_put_get_ack_in_order() -> None:
    q = QueueActor(maxsize=10)
    ids = q.put_batch(["a", "b", "c"])
    got = q.get_batch(2)
    assert [d.payload for d in got] == ["a", "b"]
    assert q.ack([d.delivery_id for d in got]) == 2
    assert [d.payload for d in q.get_batch(5)] == ["c"]
    assert q.ack(ids) == 1  # a, b already gone
    assert q.stats()["in_flight"] == 0


def test_bounded_put_times_out_and_keeps_what_it_accepted() -> None:
    q = QueueActor(maxsize=2)
    with pytest.raises(QueueFull) as info:
        q.put_batch(["a", "b", "c"], timeout=0.05)
    assert len(info.value.accepted) == 2  # type: ignore[attr-defined]
    assert [d.payload for d in q.get_batch(5)] == ["a", "b"]


def test_put_blocks_until_ack_makes_room() -> None:
    q = QueueActor(maxsize=1)
    q.put_batch(["a"])
    first = q.get_batch(1)
    threading.Timer(0.1, q.ack, args=([first[0].delivery_id],)).start()
    started = time.monotonic()
    q.put_batch(["b"], timeout=5)
    assert time.monotonic() - started >= 0.05


def test_unacked_lease_is_redelivered_then_dead_lettered() -> None:
    q = QueueActor(lease_seconds=0.05, max_deliveries=2)
    q.put_batch(["a"])
    assert q.get_batch(1)[0].deliveries == 1
    assert q.get_batch(1, timeout=0) == []  # leased, not ready
    again = q.get_batch(1, timeout=1)
    assert again[0].payload == "a" and again[0].deliveries == 2
    time.sleep(0.08)
    assert q.get_batch(1, timeout=0) == []
    dead = q.dead_letters()
    assert dead[0]["payload"] == "a" and "2 deliveries" in dead[0]["reason"]
    assert q.stats()["redelivered"] == 1


def test_get_waits_for_a_put() -> None:
    q = QueueActor()
    threading.Timer(0.05, q.put_batch, args=(["late"],)).start()
    got = q.get_batch(1, timeout=5)
    assert got[0].payload == "late"


def test_rejects_non_text_payloads() -> None:
    with pytest.raises(TypeError, match="JSON text"):
        QueueActor().put_batch([b"bytes"])  # type: ignore[list-item]
