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
    """A readable answer: the top claims, each with its first source.

    When the run verified its claims (a ``fact_checker`` ran), the answer is the dialectical
    synthesis instead: supported theses ranked, contested ones flagged with what contests them.
    """
    if any(c.kind == "verification" for c in state.claims):
        return research_answer(state, limit=min(limit, 5))
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


_ORDER = {"supported": 0, "contested": 1, "unverified": 2, "unsupported": 3}
#: Weight of a thesis found in loop n relative to loop 0: n loops of query expansion drift.
RELEVANCE_DECAY = 0.8


def cite(claim: Claim) -> str:
    """``[ref — file:line]`` of a claim's first source."""
    if not claim.sources:
        return ""
    src = claim.sources[0]
    return f"[{src.ref}{' — ' + src.location if src.location else ''}]"


def research_answer(state: QueryState, limit: int = 5) -> str:
    """Theses by verdict (supported first), then support and score; caveats under contested."""
    checks: dict[str, tuple[str, float]] = {}
    for c in sorted(state.claims, key=lambda c: c.loop):
        if c.kind == "verification" and c.metadata.get("checks"):
            verdict = str(c.metadata.get("verdict", "unverified"))
            checks[str(c.metadata["checks"])] = (verdict, float(c.metadata.get("support", 0.0)))
    # Keyed by the challenged claim's content: the same thesis recurs in later loops with
    # another id, and a caveat of any copy applies to all of them.
    content_of = {c.claim_id: c.content for c in state.claims}
    caveats: dict[str, list[Claim]] = {}
    for c in state.claims:
        if c.kind == "antithesis":
            target = content_of.get(str(c.metadata.get("challenges")), "")
            caveats.setdefault(target, []).append(c)
    best: dict[str, Claim] = {}
    for c in sorted(state.claims, key=lambda c: c.loop):
        if c.kind == "thesis" and c.content not in best:
            best[c.content] = c  # the earliest: loop 0 answers the query as asked

    def verdict_of(c: Claim) -> tuple[str, float]:
        verdict, support = checks.get(c.claim_id, ("unverified", 0.0))
        if verdict == "supported" and caveats.get(c.content):
            verdict = "contested"  # a caveat arrived after the check
        return verdict, support

    def key(c: Claim) -> tuple[int, float, str]:
        verdict, _ = verdict_of(c)
        # Relevance to the question first; later loops search an expanded query, which drifts.
        relevance = (c.score or 0.0) * RELEVANCE_DECAY**c.loop
        return (_ORDER.get(verdict, 2), -relevance, c.claim_id)

    theses = sorted(best.values(), key=key)
    if not theses:
        return f"No passages answered {state.query!r}."
    lines = [f"Answer to {state.query!r}:"]
    for i, claim in enumerate(theses[:limit], 1):
        verdict, support = verdict_of(claim)
        lines.append(f"{i}. {claim.content} {cite(claim)} ({verdict}, support {support:.2f})")
        for caveat in caveats.get(claim.content, [])[:1]:
            lines.append(f"   contested by: {caveat.content} {cite(caveat)}")
    rest = [c for c in theses[limit:] if checks.get(c.claim_id, ("",))[0] != "unsupported"]
    if rest:
        lines.append(f"(+{len(rest)} more claims; `autoresearch-ray claims` lists them all)")
    return "\n".join(lines)
