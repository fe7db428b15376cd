"""Every broker behind one interface, against real backends: in-process, Redis and a Ray actor."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoresearch_ray.brokers import MessageBroker, get_message_broker
from autoresearch_ray.errors import BrokerUnavailable, QueueEmpty, UnknownBrokerError
from autoresearch_ray.messages import PersistClaim, Stop
from autoresearch_ray.models import ClaimDraft, bind_claim

LEASE = 0.5


def claim_message(i: int) -> PersistClaim:
    return PersistClaim(claim=bind_claim("run", 0, "agent", ClaimDraft(content=f"claim {i}")))


@pytest.fixture(params=["memory", "redis", "ray"])
def broker(request: pytest.FixtureRequest) -> Iterator[MessageBroker]:
    name = request.param
    options: dict[str, Any] = {"lease_seconds": LEASE, "max_deliveries": 3}
    url = None
    if name == "redis":
        url = request.getfixturevalue("redis_url")
        options["namespace"] = request.getfixturevalue("redis_namespace")
    if name == "ray":
        request.getfixturevalue("ray_local")
    b = get_message_broker(name, url, **options)
    yield b
    b.close()


def test_seed_surface_publish_and_queue_put_get(broker: MessageBroker) -> None:
    broker.publish(claim_message(1))
    broker.queue.put(claim_message(2))
    assert broker.queue.get(timeout=2) == claim_message(1)
    assert broker.queue.get(timeout=2) == claim_message(2)
    with pytest.raises(QueueEmpty):
        broker.queue.get(timeout=0.1)
    assert broker.stats()["in_flight"] == 0


def test_batch_round_trip_and_ack(broker: MessageBroker) -> None:
    messages = [claim_message(i) for i in range(250)]
    broker.publish_batch(messages)
    got = []
    while len(got) < 250:
        batch = broker.get_batch(100, timeout=2)
        assert batch
        got.extend(batch)
    assert [d.message for d in got] == messages
    assert broker.ack([d.delivery_id for d in got]) == 250
    assert broker.get_batch(10, timeout=0.1) == []


def test_unacked_message_is_delivered_again_after_the_lease(broker: MessageBroker) -> None:
    broker.publish(claim_message(7))
    first = broker.get_batch(10, timeout=2)
    assert [d.deliveries for d in first] == [1]
    assert broker.get_batch(10, timeout=0) == []  # still leased
    time.sleep(LEASE + 0.2)
    again = broker.get_batch(10, timeout=2)
    assert [d.message for d in again] == [claim_message(7)]
    assert again[0].deliveries == 2
    broker.ack([again[0].delivery_id])
    time.sleep(LEASE + 0.2)
    assert broker.get_batch(10, timeout=0.1) == []
    assert broker.stats()["redelivered"] >= 1


def test_malformed_messages_go_to_dead_letters_and_consumer_keeps_going(
    broker: MessageBroker,
) -> None:
    broker.put_raw(["not json", '{"action": "stop", "reason": 3}'])
    broker.publish(Stop(reason="valid"))
    got = broker.get_batch(10, timeout=2)
    assert [d.message for d in got] == [Stop(reason="valid")]
    reasons = [d["reason"] for d in broker.dead_letters()]
    assert len(reasons) == 2
    assert "invalid message" in reasons[0]
    assert "reason: Input should be a valid string" in reasons[1]


def test_poison_message_is_dead_lettered_after_max_deliveries(broker: MessageBroker) -> None:
    broker.publish(claim_message(9))
    for _ in range(3):
        assert broker.get_batch(1, timeout=LEASE + 1.5)  # taken, never acked
        time.sleep(LEASE + 0.1)
    assert broker.get_batch(1, timeout=0.2) == []
    dead = broker.dead_letters()
    assert len(dead) == 1 and "not acknowledged after 3 deliveries" in dead[0]["reason"]


def test_redis_pickle_payload_is_dead_lettered_never_executed(
    redis_url: str, redis_namespace: str
) -> None:
    import redis

    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (exec, ("raise SystemExit('pickle executed')",))

    broker = get_message_broker("redis", redis_url, namespace=redis_namespace)
    raw = redis.Redis.from_url(redis_url)
    raw.xadd(broker.keys.stream, {b"m": pickle.dumps(Boom())})  # type: ignore[attr-defined]
    raw.xadd(broker.keys.stream, {b"other": b"field"})  # type: ignore[attr-defined]
    broker.publish(Stop())
    assert [d.message for d in broker.get_batch(10, timeout=1)] == [Stop()]
    assert len(broker.dead_letters()) == 2
    broker.close()
    raw.close()


def test_unreachable_redis_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(BrokerUnavailable) as info:
        get_message_broker("redis", "redis://user:hunter2@127.0.0.1:1/0", connect_timeout=1)
    message = str(info.value)
    assert "cannot reach Redis at redis://***@127.0.0.1:1/0" in message
    assert "hunter2" not in message


def test_unknown_broker_names_the_allowed_ones() -> None:
    with pytest.raises(UnknownBrokerError, match="'kafka'; allowed: 'memory', 'redis', 'ray'"):
        get_message_broker("kafka")


def test_memory_broker_refuses_to_cross_processes() -> None:
    with pytest.raises(Exception, match="cannot be sent to another"):
        pickle.dumps(get_message_broker("memory"))


def test_dead_letters_can_be_requeued_and_dropped(broker: MessageBroker) -> None:
    valid = Stop(reason="was dead-lettered by mistake").model_dump_json()
    broker.put_raw(["not json"])
    assert broker.get_batch(10, timeout=1) == []
    (poison,) = broker.dead_letters()
    # Requeued as they were and validated again on the way in: still poison, dead again.
    assert broker.requeue_dead_letters([poison["delivery_id"]]) == 1
    assert broker.get_batch(10, timeout=1) == []
    assert len(broker.dead_letters()) == 1
    assert len(broker.take_dead_letters()) == 1 and broker.dead_letters() == []
    broker.put_raw([valid])
    assert [d.message for d in broker.get_batch(10, timeout=1)] == [Stop.model_validate_json(valid)]


@pytest.fixture
def secured_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A private redis-server with an ACL user and a TLS port (a CA and certificate made here)."""
    import subprocess

    from .conftest import free_port, start_redis, stop_process

    certs = tmp_path / "tls"
    certs.mkdir()
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem")),
        ],
        check=True,
        capture_output=True,
    )
    port, tls_port = free_port(), free_port()
    proc = start_redis(
        port,
        tmp_path,
        *("--tls-port", str(tls_port), "--tls-auth-clients", "no"),
        *("--tls-cert-file", str(certs / "cert.pem"), "--tls-key-file", str(certs / "key.pem")),
        *("--tls-ca-cert-file", str(certs / "cert.pem")),
        # The default user is off: only the ACL user below may connect.
        *("--user", "default", "off", "--user", "tester", "on", ">s3cret-pw", "~*", "&*", "+@all"),
    )
    try:
        yield {"port": port, "tls_port": tls_port, "ca": str(certs / "cert.pem")}
    finally:
        stop_process(proc)


def test_acl_user_and_rediss_work_and_the_password_never_shows(
    secured_redis: dict[str, Any],
) -> None:
    acl = f"redis://tester:s3cret-pw@127.0.0.1:{secured_redis['port']}/0"
    tls = (
        f"rediss://tester:s3cret-pw@127.0.0.1:{secured_redis['tls_port']}/0"
        f"?ssl_ca_certs={secured_redis['ca']}"
    )
    for url in (acl, tls):
        broker = get_message_broker("redis", url, namespace="secured")
        try:
            broker.publish(claim_message(1))
            got = broker.get_batch(10, timeout=1)
            assert [d.message for d in got] == [claim_message(1)]
            broker.ack([d.delivery_id for d in got])
            assert "s3cret-pw" not in repr(broker)
        finally:
            broker.close()
    for wrong in (acl.replace("s3cret-pw", "wrong-pw"), acl.replace("tester:s3cret-pw@", "")):
        with pytest.raises(BrokerUnavailable) as info:
            get_message_broker("redis", wrong, namespace="secured", connect_timeout=2)
        assert "pw" not in str(info.value), str(info.value)
