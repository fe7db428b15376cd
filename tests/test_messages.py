"""Wire messages: JSON round trip, and a reason for every payload that is not a valid message."""

from __future__ import annotations

import pickle

import pytest

from autoresearch_ray.errors import MessageDecodeError
from autoresearch_ray.messages import (
    MAX_MESSAGE_BYTES,
    AgentResultMessage,
    PersistClaim,
    Stop,
    decode,
    encode,
)
from autoresearch_ray.models import ClaimDraft, Source, bind_claim, make_claim_id


def claim(content: str = "c", loop: int = 0):  # type: ignore[no-untyped-def]
    draft = ClaimDraft(content=content, sources=(Source(ref="s"),), score=0.5)
    return bind_claim("run", loop, "agent", draft)


def test_round_trip_each_action() -> None:
    messages = [
        PersistClaim(claim=claim()),
        AgentResultMessage(
            run_id="r", loop=1, agent="a", status="ok", claim_ids=("x",), duration_s=0.1
        ),
        Stop(reason="done"),
    ]
    for message in messages:
        assert decode(encode(message)) == message
        assert decode(encode(message).encode()) == message


def test_claim_id_is_stable_and_content_sensitive() -> None:
    d = ClaimDraft(content="x", sources=(Source(ref="s"),))
    assert make_claim_id("r", 0, "a", d) == make_claim_id("r", 0, "a", d)
    assert make_claim_id("r", 0, "a", d) != make_claim_id("r", 1, "a", d)
    assert make_claim_id("r", 0, "a", d) != make_claim_id("r", 0, "b", d)
    assert make_claim_id("r", 0, "a", d) != make_claim_id(
        "r", 0, "a", ClaimDraft(content="x", sources=(Source(ref="t"),))
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("not json", "invalid message"),
        ('{"action": "explode"}', "does not match any of the expected tags"),
        ('{"action": "stop", "reason": 5}', "reason: Input should be a valid string"),
        ('{"action": "stop", "extra": 1}', "extra: Extra inputs are not permitted"),
        (
            '{"action": "agent_result", "run_id": "r", "loop": "1", "agent": "a", '
            '"status": "ok", "duration_s": 0}',
            "loop: Input should be a valid integer",
        ),
        (
            '{"action": "persist_claim", "claim": {"content": "x"}}',
            "claim.claim_id: Field required",
        ),
        ("[1, 2]", "invalid message"),
        ("", "invalid message"),
    ],
)
def test_invalid_payloads_say_why(payload: str, reason: str) -> None:
    with pytest.raises(MessageDecodeError) as info:
        decode(payload)
    assert reason in info.value.reason


def test_pickle_payload_is_rejected_not_unpickled() -> None:
    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (exec, ("raise SystemExit('pickle executed')",))

    payload = pickle.dumps(Boom())
    with pytest.raises(MessageDecodeError, match=r"not UTF-8 JSON|invalid message"):
        decode(payload)


def test_oversized_payload() -> None:
    with pytest.raises(MessageDecodeError, match="oversized"):
        decode("x" * (MAX_MESSAGE_BYTES + 1))
