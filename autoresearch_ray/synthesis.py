"""Turning the final query state into an answer: claims ranked, each with its sources."""

from __future__ import annotations

from .models import Claim, QueryState, Source


def rank_claims(claims: list[Claim]) -> list[Claim]:
    """Claims by score (highest first), then loop, agent and id: deterministic for equal scores."""
    return sorted(
        claims,
        key=lambda c: (-(c.score if c.score is not None else 0.0), c.loop, c.agent, c.claim_id),
    )


def collect_sources(claims: list[Claim]) -> list[Source]:
    """Distinct sources of the claims, in the claims' order."""
    seen: dict[tuple[str, str | None], Source] = {}
    for claim in claims:
        for source in claim.sources:
            seen.setdefault((source.ref, source.location), source)
    return list(seen.values())


def synthesize_answer(state: QueryState, limit: int = 10) -> str:
    """A readable answer: the top claims, each with its first source."""
    ranked = rank_claims(state.claims)
    if not ranked:
        return f"No claims were produced for {state.query!r}."
    lines = [f"Answer to {state.query!r} from {len(ranked)} claims over {state.loops} loops:"]
    for claim in ranked[:limit]:
        cite = f" [{claim.sources[0].ref}]" if claim.sources else ""
        lines.append(f"- {claim.content}{cite}")
    if len(ranked) > limit:
        lines.append(f"(+{len(ranked) - limit} more claims)")
    return "\n".join(lines)
