"""Research over a local corpus: reading, indexing, caching, the three agents and the answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from autoresearch_ray.errors import BadInputError
from autoresearch_ray.executors import get_executor
from autoresearch_ray.research.corpus import read_directory, read_stdlib
from autoresearch_ray.research.index import corpus_fingerprint, open_index

from .conftest import INDEX_CACHE, make_config

QUESTION = "How do I run several coroutines concurrently and collect their results?"


def test_stdlib_corpus_has_docstrings_with_their_place() -> None:
    passages, stats = read_stdlib()
    assert stats.passages > 3000 and stats.files > 300
    gather = next(p for p in passages if p.ref == "asyncio.tasks.gather")
    assert gather.path == "asyncio/tasks.py" and gather.line > 1 and gather.kind == "function"
    assert "coroutines" in gather.text
    assert not any(p.path.startswith("test/") for p in passages)


def test_directory_corpus_splits_sections_and_skips_what_it_cannot_read(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "leases.md").write_text(
        "# Leases\n\nA lease is a visibility timeout after which a message is delivered again.\n"
        "\n## Acknowledgement\n\nAn acknowledged message is never delivered again by the broker.\n"
    )
    (docs / "sub" / "notes.rst").write_text(
        "Retries\n=======\n\nA retried task runs again when its worker dies mid-task.\n"
    )
    (docs / "blob.txt").write_bytes(b"\x00\x01binary" * 10)
    (docs / "huge.txt").write_text("x" * 1_100_000)
    passages, stats = read_directory(docs)
    refs = {p.ref: p for p in passages}
    assert refs["leases.md#acknowledgement"].line == 7  # where its text begins
    assert refs["sub/notes.rst#retries"].line == 4
    assert "sub/notes.rst#retries" in refs
    assert stats.skipped_binary == 1 and stats.skipped_oversized == 1
    with pytest.raises(BadInputError, match="does not exist"):
        read_directory(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no readable passages"):
        read_directory(tmp_path / "empty")


def test_index_is_built_once_then_loaded_and_rebuilt_when_the_corpus_changes(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha section explains leases and redelivery.\n")
    cache = tmp_path / "cache"
    _, first = open_index(str(docs), cache)
    index, second = open_index(str(docs), cache)
    assert (first["index"], second["index"]) == ("built", "loaded")
    assert index.search("redelivery")[0].passage.ref == "a.md#alpha"
    before = corpus_fingerprint(str(docs))
    time.sleep(0.01)
    (docs / "b.md").write_text("# Beta\n\nBeta explains consumer groups in Redis streams.\n")
    assert corpus_fingerprint(str(docs)) != before
    _, third = open_index(str(docs), cache)
    assert third["index"] == "built"


def test_stdlib_index_timings() -> None:
    index, _ = open_index(None, INDEX_CACHE)
    _, again = open_index(None, INDEX_CACHE)
    assert again["index"] == "loaded" and again["seconds"] < 1.0
    started = time.perf_counter()
    hits = index.search("parse command line arguments", k=5)
    assert time.perf_counter() - started < 0.1
    assert any(h.passage.ref.startswith(("argparse", "getopt")) for h in hits)


@pytest.mark.parametrize("executor", ["ray", "process"])
def test_research_run_answers_with_asyncio_and_marks_verdicts(
    request: pytest.FixtureRequest, tmp_path: Path, executor: str
) -> None:
    broker = "ray" if executor == "ray" else "memory"
    if executor == "ray":
        request.getfixturevalue("ray_local")
    cfg = make_config(tmp_path, f"executor={executor}", f"message_broker={broker}")
    with get_executor(cfg) as ex:
        response = ex.run_query(QUESTION, run_id=f"research-{executor}")
    assert response.metrics.agent_errors == 0
    kinds = {c.kind for c in response.claims}
    assert {"thesis", "antithesis", "verification"} <= kinds
    lines = response.answer.splitlines()
    top = [line for line in lines if line[:2] in ("1.", "2.", "3.")]
    assert sum("[asyncio." in line for line in top) >= 2, response.answer
    assert all(any(v in line for v in ("supported", "contested", "unsupported")) for line in top)
    checks = [c for c in response.claims if c.kind == "verification"]
    assert {c.metadata["verdict"] for c in checks} <= {"supported", "unsupported", "contested"}
    challenges = [c.metadata["challenges"] for c in response.claims if c.kind == "antithesis"]
    ids = {c.claim_id for c in response.claims}
    assert challenges and all(ch in ids for ch in challenges)


def test_same_corpus_query_and_config_give_the_same_answer(tmp_path: Path) -> None:
    answers = []
    for executor in ("process", "local"):
        extra = ["enabled=false"] if executor == "local" else []
        cfg = make_config(tmp_path, "executor=process", "message_broker=memory", *extra)
        with get_executor(cfg) as ex:
            answers.append(ex.run_query(QUESTION).answer)
    assert answers[0] == answers[1]


def test_directory_corpus_run(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leases.md").write_text(
        "# Leases\n\nA lease is a visibility timeout. An unacknowledged message is delivered "
        "again after its lease expires.\n\n# Warnings\n\nWarning: a lease that is too short "
        "causes duplicate deliveries of a message that is still being processed.\n"
    )
    (docs / "acks.md").write_text(
        "# Acknowledgements\n\nAn acknowledged message is deleted and never delivered again, "
        "so acknowledge a message only after its effect is durable.\n"
    )
    cfg = make_config(
        tmp_path, "executor=process", "message_broker=memory", f"corpus.path={docs}", "loops=2"
    )
    with get_executor(cfg) as ex:
        response = ex.run_query("When is an unacknowledged message delivered again?")
    assert response.claims and response.claims[0].sources[0].ref.endswith(".md#leases")


class _FakeLLM(BaseHTTPRequestHandler):
    replies: list[tuple[int, Any]] = []
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        type(self).seen.append({"auth": self.headers.get("Authorization"), "body": body})
        status, reply = type(self).replies.pop(0)
        if callable(reply):
            reply = reply(body)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_llm() -> Iterator[tuple[str, type[_FakeLLM]]]:
    _FakeLLM.replies, _FakeLLM.seen = [], []
    server = HTTPServer(("127.0.0.1", 0), _FakeLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", _FakeLLM
    server.shutdown()
    server.server_close()


def _cite_first(body: dict[str, Any]) -> dict[str, Any]:
    ref = body["messages"][1]["content"].split("[", 1)[1].split("]", 1)[0]
    content = json.dumps({"claims": [{"content": "gather runs awaitables", "sources": [ref]}]})
    return {"choices": [{"message": {"content": content}}]}


def test_llm_agent_against_a_real_http_server(
    fake_llm: tuple[str, type[_FakeLLM]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server = fake_llm
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-123")
    agents = (
        f"agents=[{{name: llm, type: llm, params: {{base_url: '{url}', model: m, "
        "api_key_env: TEST_LLM_KEY, backoff_s: 0.01, retries: 2}}]"
    )
    cfg = make_config(tmp_path, "enabled=false", "message_broker=memory", "loops=3", agents)
    server.replies = [
        (503, {"error": "busy"}),
        (200, _cite_first),  # loop 0: retried, then valid
        (200, {"choices": [{"message": {"content": "not json"}}]}),  # loop 1: invalid reply
        (
            200,
            {
                "choices": [
                    {
                        "message": {
                            "content": json.dumps(
                                {"claims": [{"content": "made up", "sources": ["nowhere.module"]}]}
                            )
                        }
                    }
                ]
            },
        ),  # loop 2
    ]
    with get_executor(cfg) as ex:
        response = ex.run_query(QUESTION)
    assert [c.loop for c in response.claims] == [0]
    assert response.claims[0].sources[0].location  # mapped back to file:line
    errors = {e.loop: e.error for e in response.errors}
    assert "not valid claims JSON" in errors[1]
    assert "cited sources it was not given" in errors[2]
    assert server.seen[0]["auth"] == "Bearer sk-test-123"
    assert server.seen[0]["body"]["response_format"]["type"] == "json_schema"
    assert all("sk-test-123" not in e.error for e in response.errors)


def test_llm_agent_missing_key_is_a_recorded_error(tmp_path: Path) -> None:
    agents = (
        "agents=[{name: llm, type: llm, params: {base_url: 'http://127.0.0.1:9/v1', "
        "model: m, api_key_env: SURELY_UNSET_KEY_VAR}}]"
    )
    cfg = make_config(tmp_path, "enabled=false", "message_broker=memory", "loops=1", agents)
    with get_executor(cfg) as ex:
        response = ex.run_query(QUESTION)
    assert "SURELY_UNSET_KEY_VAR is not set" in response.errors[0].error
