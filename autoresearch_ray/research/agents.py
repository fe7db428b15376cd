"""The dialectical trio over a local corpus: ``synthesizer`` (thesis), ``contrarian``
(antithesis) and ``fact_checker`` (verification). Deterministic for the same corpus, query,
state and parameters: scores come from BM25 and word overlap, ties break on passage ids.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ..agents.base import AgentContext
from ..agents.registry import register_agent
from ..errors import AgentError
from ..models import AgentOutput, Claim, ClaimDraft, QueryState, Source
from .index import CorpusIndex, SearchHit, stems, words

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(\"'])|\n\s*\n")
#: Words that mark a passage as qualifying or contradicting what it is about.
CAVEATS = re.compile(
    r"\b(deprecated|deprecation|warning|caution|unlike|however|instead|cannot|can't|avoid|"
    r"unsafe|must not|should not|no longer|removed|not thread-safe|not safe)\b",
    re.IGNORECASE,
)
#: Content words a caveat must share with the thesis it challenges, to be about the same thing.
MIN_SHARED_WORDS = 2
_CACHE: dict[str, CorpusIndex] = {}


def corpus_from(context: AgentContext) -> CorpusIndex:
    """The run's corpus index, resolved once per worker process from the executor's handle."""
    handle = context.resources.get("corpus")
    if handle is None:
        raise AgentError(f"agent {context.agent!r} needs a corpus, and the executor provided none")
    if isinstance(handle, CorpusIndex):
        return handle
    key = str(handle["fingerprint"])
    index = _CACHE.get(key)
    if index is None:
        if "ray" in handle:
            import ray

            index = ray.get(handle["ray"][0])
        else:
            from pathlib import Path

            index = CorpusIndex.load(Path(handle["path"]))
        _CACHE.clear()  # one corpus per run: keep the current one only
        _CACHE[key] = index
    return index


def source_of(hit: SearchHit) -> Source:
    """A passage as a claim's source: dotted ref, title and file:line."""
    p = hit.passage
    return Source(ref=p.ref, title=p.title[:200], location=f"{p.path}:{p.line}")


def sentences(text: str) -> list[str]:
    """Sentences of a docstring or paragraph, whitespace folded."""
    parts = (" ".join(s.split()) for s in _SENTENCE_END.split(text))
    return [s for s in parts if len(s) > 20]


def best_sentences(
    text: str, terms: set[str], limit: int, prefer: re.Pattern[str] | None = None
) -> str:
    """The ``limit`` sentences sharing most words with ``terms`` (then earliest), in order."""
    candidates = sentences(text) or [" ".join(text.split())]
    scored = []
    for i, sentence in enumerate(candidates):
        overlap = len(terms & set(words(sentence)))
        bonus = 1 if prefer is not None and prefer.search(sentence) else 0
        scored.append((overlap + bonus, -i, sentence))
    top = sorted(scored, reverse=True)[:limit]
    chosen = sorted(top, key=lambda t: -t[1])
    return " ".join(s for _, _, s in chosen)[:1200]


def expanded_query(state: QueryState, extra_terms: int = 8) -> str:
    """The query plus the commonest words of the strongest claims so far (from loop 1 on)."""
    theses = sorted(
        (c for c in state.claims if c.kind == "thesis"),
        key=lambda c: (-(c.score or 0.0), c.claim_id),
    )[:3]
    if not theses:
        return state.query
    asked = set(words(state.query))
    counts = Counter(w for c in theses for w in words(c.content) if w not in asked)
    common = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:extra_terms]]
    return f"{state.query} {' '.join(common)}"


class _CorpusAgent:
    uses_corpus = True
    name = "corpus"

    def __init__(self, top_k: int = 5, sentences: int = 2) -> None:
        if top_k < 1 or sentences < 1:
            raise ValueError("top_k and sentences must be >= 1")
        self.top_k = top_k
        self.sentences = sentences


@register_agent("synthesizer")
class Synthesizer(_CorpusAgent):
    """Thesis: the passages most relevant to the query, reduced to the sentences that answer it."""

    name = "synthesizer"

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput:
        """One thesis claim per retrieved passage, scored relative to the best hit."""
        index = corpus_from(context)
        query = expanded_query(state) if context.loop > 0 else state.query
        terms = set(stems(state.query))
        # Over-fetch, then prefer passages that cover more of the question's words: BM25 alone
        # lets one rare word ("concurrently") outweigh the rest of the question.
        candidates = index.search(query, k=self.top_k * 3)
        top = candidates[0].score if candidates else 1.0
        hits = sorted(
            candidates,
            key=lambda h: (-(h.score / top + _coverage(terms, h.passage.text)), h.passage.pid),
        )[: self.top_k]
        terms = set(words(state.query))
        claims = tuple(
            ClaimDraft(
                content=best_sentences(hit.passage.text, terms, self.sentences),
                kind="thesis",
                sources=(source_of(hit),),
                score=round(hit.score / top, 4),
                metadata={"passage": hit.passage.pid, "rank": rank, "query": query},
            )
            for rank, hit in enumerate(hits)
        )
        return AgentOutput(claims=claims, summary=f"{len(claims)} passages for {query!r}")


@register_agent("contrarian")
class Contrarian(_CorpusAgent):
    """Antithesis: for the strongest theses, passages from elsewhere that qualify them."""

    name = "contrarian"

    def __init__(self, top_k: int = 10, sentences: int = 1, max_claims: int = 5) -> None:
        super().__init__(top_k, sentences)
        self.max_claims = max_claims

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput:
        """At most one caveat per thesis, linked to the thesis it challenges."""
        index = corpus_from(context)
        challenged = {c.metadata.get("challenges") for c in state.claims if c.kind == "antithesis"}
        theses = [c for c in _strongest(state, "thesis") if c.claim_id not in challenged]
        claims = []
        for thesis in theses[: self.max_claims]:
            own = frozenset(s.ref for s in thesis.sources)
            terms = set(words(thesis.content)) | set(words(state.query))
            hits = index.search(f"{state.query} {thesis.content}", k=self.top_k, exclude_refs=own)
            thesis_words = set(words(thesis.content))
            caveats = [
                h
                for h in hits
                if CAVEATS.search(h.passage.text)
                and len(thesis_words & set(words(h.passage.text))) >= MIN_SHARED_WORDS
            ]
            if not caveats:
                continue
            hit = caveats[0]
            text = best_sentences(hit.passage.text, terms, self.sentences, prefer=CAVEATS)
            marker = CAVEATS.search(text) or CAVEATS.search(hit.passage.text)
            claims.append(
                ClaimDraft(
                    content=text,
                    kind="antithesis",
                    sources=(source_of(hit),),
                    score=round(hit.score / max(h.score for h in hits), 4),
                    metadata={
                        "challenges": thesis.claim_id,
                        "marker": marker.group(0).lower() if marker else "",
                    },
                )
            )
        return AgentOutput(claims=tuple(claims), summary=f"{len(claims)} caveats")


@register_agent("fact_checker")
class FactChecker(_CorpusAgent):
    """Verification: each earlier claim checked against passages from other sources."""

    name = "fact_checker"

    def __init__(
        self,
        top_k: int = 5,
        supported: float = 0.5,
        unsupported: float = 0.25,
        max_claims: int = 20,
    ) -> None:
        super().__init__(top_k, 1)
        if not 0 <= unsupported <= supported <= 1:
            raise ValueError("need 0 <= unsupported <= supported <= 1")
        self.supported = supported
        self.unsupported = unsupported
        self.max_claims = max_claims

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput:
        """A verdict (supported / unsupported / contested) and support score per claim."""
        index = corpus_from(context)
        checked = {c.metadata.get("checks") for c in state.claims if c.kind == "verification"}
        challengers: dict[str, list[Claim]] = {}
        for c in state.claims:
            if c.kind == "antithesis":
                challengers.setdefault(str(c.metadata.get("challenges")), []).append(c)
        todo = [
            c
            for c in _strongest(state, "thesis") + _strongest(state, "antithesis")
            if c.claim_id not in checked
        ][: self.max_claims]
        claims = []
        for claim in todo:
            own = frozenset(s.ref for s in claim.sources)
            terms = set(words(claim.content))
            hits = index.search(claim.content, k=self.top_k, exclude_refs=own)
            support, evidence = 0.0, []
            for hit in hits:
                overlap = len(terms & set(words(hit.passage.text))) / max(1, len(terms))
                if overlap > support:
                    support = overlap
                if overlap >= self.unsupported:
                    evidence.append(hit)
            # Contested means counter-evidence exists; weak support alone is "unsupported".
            if claim.kind == "thesis" and challengers.get(claim.claim_id):
                verdict = "contested"
            elif support >= self.supported:
                verdict = "supported"
            else:
                verdict = "unsupported"
            claims.append(
                ClaimDraft(
                    content=f"{verdict} ({support:.2f}): {claim.content[:300]}",
                    kind="verification",
                    sources=tuple(source_of(h) for h in evidence[:3]),
                    score=round(support, 4),
                    metadata={
                        "checks": claim.claim_id,
                        "verdict": verdict,
                        "support": round(support, 4),
                        "checked_kind": claim.kind,
                    },
                )
            )
        return AgentOutput(claims=tuple(claims), summary=f"{len(claims)} claims checked")


def _coverage(terms: set[str], text: str) -> float:
    """Share of the question's (stemmed) words that a passage contains."""
    return len(terms & set(stems(text))) / max(1, len(terms))


def _strongest(state: QueryState, kind: str) -> list[Claim]:
    """Claims of a kind, one per distinct content (the best-scored), strongest first."""
    best: dict[str, Claim] = {}
    for c in state.claims:
        if c.kind != kind:
            continue
        seen = best.get(c.content)
        if seen is None or (c.score or 0) > (seen.score or 0):
            best[c.content] = c
    return sorted(best.values(), key=lambda c: (-(c.score or 0.0), c.loop, c.claim_id))


def verdicts(claims: list[Claim] | tuple[Claim, ...]) -> dict[str, dict[str, Any]]:
    """Claim id -> the latest verification of it (verdict, support)."""
    out: dict[str, dict[str, Any]] = {}
    for c in sorted(claims, key=lambda c: c.loop):
        if c.kind == "verification" and c.metadata.get("checks"):
            out[str(c.metadata["checks"])] = {
                "verdict": c.metadata.get("verdict"),
                "support": c.metadata.get("support"),
            }
    return out
