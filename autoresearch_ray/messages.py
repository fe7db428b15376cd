"""Wire messages: a discriminated union on ``action``, encoded as JSON and validated on the way in.

Nothing but JSON crosses a broker. :func:`decode` is the one gate every consumer uses; it raises
:class:`MessageDecodeError` with a reason, which the brokers turn into a dead letter.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import MessageDecodeError
from .models import Claim

#: Largest payload accepted from a wire, in bytes. A claim is text plus a few sources; anything
#: this big is a bug or an attack, and rejecting it early keeps one message from exhausting memory.
MAX_MESSAGE_BYTES = 1_048_576

_WIRE = ConfigDict(extra="forbid", frozen=True, strict=True)


class PersistClaim(BaseModel):
    """Ask the claim store to persist one claim. Its ``message_id`` is the claim id (idempotent)."""

    model_config = _WIRE

    action: Literal["persist_claim"] = "persist_claim"
    claim: Claim

    @property
    def message_id(self) -> str:
        """The key the claim store acknowledges: the stable claim id."""
        return self.claim.claim_id


class AgentResultMessage(BaseModel):
    """The outcome of one agent execution, recorded by the claim store next to its claims."""

    model_config = _WIRE

    action: Literal["agent_result"] = "agent_result"
    run_id: str = Field(min_length=1, max_length=256)
    loop: int = Field(ge=0)
    agent: str = Field(min_length=1, max_length=256)
    status: Literal["ok", "error"]
    claim_ids: tuple[str, ...] = ()
    duration_s: float = Field(ge=0)
    error: str | None = Field(default=None, max_length=65536)
    node_id: str | None = None
    pid: int | None = None

    @property
    def message_id(self) -> str:
        """The key the claim store acknowledges: one row per (run, loop, agent)."""
        return result_key(self.run_id, self.loop, self.agent)


class Stop(BaseModel):
    """Tell a consumer to finish what it holds and stop."""

    model_config = _WIRE

    action: Literal["stop"] = "stop"
    reason: str = Field(default="", max_length=1024)

    @property
    def message_id(self) -> str:
        """Stops are not tracked; they share one key."""
        return "stop"


Message = Annotated[PersistClaim | AgentResultMessage | Stop, Field(discriminator="action")]
_ADAPTER: TypeAdapter[PersistClaim | AgentResultMessage | Stop] = TypeAdapter(Message)


_CLAIM_PREFIX = '{"action":"persist_claim",'


def result_key(run_id: str, loop: int, agent: str) -> str:
    """Message id of an agent result: stable, so a redelivered result overwrites its own row."""
    return f"result:{run_id}:{loop}:{agent}"


def encode(message: PersistClaim | AgentResultMessage | Stop) -> str:
    """Serialize a message to its JSON wire form."""
    return message.model_dump_json()


def decode(payload: str | bytes) -> PersistClaim | AgentResultMessage | Stop:
    """Parse and validate a wire payload, or raise :class:`MessageDecodeError` saying why not."""
    size = len(payload) if isinstance(payload, bytes) else len(payload.encode("utf-8", "replace"))
    if size > MAX_MESSAGE_BYTES:
        raise MessageDecodeError(f"oversized: {size} bytes, limit {MAX_MESSAGE_BYTES}")
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A pickle or other binary payload lands here: it is rejected, never unpickled.
            raise MessageDecodeError(f"not UTF-8 JSON: {exc.reason} at byte {exc.start}") from None
    try:
        # Strict JSON mode still takes arrays for tuples; every other type is checked exactly.
        if payload.startswith(_CLAIM_PREFIX):
            # Our encoder writes "action" first. Claims are most of the traffic, and validating
            # with their model directly skips the union's dispatch (~30% of the decode time);
            # the model still checks every field, the action included.
            return PersistClaim.model_validate_json(payload)
        return _ADAPTER.validate_json(payload)
    except ValidationError as exc:
        raise MessageDecodeError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """Condense a pydantic error into one line naming each bad field."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "<message>"
        parts.append(f"{where}: {err['msg']}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "invalid message: " + "; ".join(parts) + more
