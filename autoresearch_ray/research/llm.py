"""``llm``: an agent that asks an OpenAI-compatible chat-completions endpoint for claims.

It retrieves passages from the corpus, sends them with the query, and asks for claims in a JSON
schema whose sources must be refs of the passages it was given. Timeouts and retries with
exponential backoff cover a flaky server; anything that comes back invalid raises, which the
runtime records as this agent's error. The API key is read from the environment variable the
config names and never appears in an error message.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..agents.base import AgentContext
from ..agents.registry import register_agent
from ..errors import AgentError
from ..models import AgentOutput, ClaimDraft, QueryState
from .agents import corpus_from, source_of

#: HTTP statuses worth another try: rate limiting and server-side failures.
RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}

CLAIMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["claims"],
    "properties": {
        "claims": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["content", "sources"],
                "properties": {
                    "content": {"type": "string"},
                    "sources": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}


class _LLMClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=4000)
    sources: list[str] = Field(min_length=1)


class _LLMReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    claims: list[_LLMClaim] = Field(max_length=50)


@register_agent("llm")
class LLMAgent:
    """Claims from a language model, grounded in retrieved passages."""

    name = "llm"
    uses_corpus = True

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        top_k: int = 5,
        timeout_s: float = 30.0,
        retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.top_k = top_k
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    def execute(self, state: QueryState, context: AgentContext) -> AgentOutput:
        """Retrieve, ask, validate; sources are mapped back to the passages' locations."""
        hits = corpus_from(context).search(state.query, k=self.top_k)
        if not hits:
            return AgentOutput(summary="no passages retrieved")
        by_ref = {h.passage.ref: h for h in hits}
        passages = "\n\n".join(f"[{h.passage.ref}]\n{h.passage.text[:1500]}" for h in hits)
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {
                    "role": "system",
                    "content": (
                        "Answer with claims supported by the passages. Cite each claim's sources "
                        "by the bracketed refs of the passages only. Reply with JSON."
                    ),
                },
                {"role": "user", "content": f"Question: {state.query}\n\nPassages:\n{passages}"},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "claims", "schema": CLAIMS_SCHEMA},
            },
        }
        reply = self._parse(self._post(body))
        claims = []
        for item in reply.claims:
            unknown = [s for s in item.sources if s not in by_ref]
            if unknown:
                raise AgentError(f"the model cited sources it was not given: {unknown[:3]}")
            claims.append(
                ClaimDraft(
                    content=item.content,
                    kind="thesis",
                    sources=tuple(source_of(by_ref[s]) for s in item.sources),
                    score=max(by_ref[s].score for s in item.sources) / hits[0].score,
                    metadata={"model": self.model},
                )
            )
        return AgentOutput(claims=tuple(claims), summary=f"{len(claims)} claims from {self.model}")

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise AgentError(f"environment variable {self.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload: dict[str, Any] = json.loads(response.read().decode("utf-8"))
                    return payload
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} from {self.url}"
                if exc.code not in RETRYABLE:
                    raise AgentError(last) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}"
            except json.JSONDecodeError:
                raise AgentError(f"{self.url} did not answer with JSON") from None
        raise AgentError(f"{last} (after {self.retries + 1} attempts)")

    def _parse(self, payload: dict[str, Any]) -> _LLMReply:
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise AgentError("the reply has no choices[0].message.content") from None
        try:
            return _LLMReply.model_validate_json(content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "reply"
            raise AgentError(
                f"the model's reply is not valid claims JSON: {where}: {first['msg']}"
            ) from None
