#!/usr/bin/env python3
"""Evaluate retrieval and answers on eval/stdlib_questions.json (standard-library questions).

    python scripts/evaluate_research.py            # retrieval and full research runs
    python scripts/evaluate_research.py --retrieval-only

Reports hit@1 and hit@5 of BM25 retrieval (a hit: a passage of an expected module) and, running
the default research agents on each question, the share of answers whose top 3 claims cite an
expected module. Prints JSON; ``--details`` adds one row per question.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from autoresearch_ray.config import load_config
from autoresearch_ray.executors import get_executor
from autoresearch_ray.research.index import module_of, open_index

# An answer line ends "[dotted.ref — file:line] (verdict, support x)"; the text may hold "[".
_CITATION = re.compile(r"\[([\w.]+) — [^\]]*\] \(\w+, support")
QUESTIONS = Path(__file__).resolve().parent.parent / "eval" / "stdlib_questions.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--questions", default=str(QUESTIONS))
    p.add_argument("--retrieval-only", action="store_true")
    p.add_argument("--details", action="store_true")
    p.add_argument("--cache-dir", default="~/.cache/autoresearch_ray/index")
    ns = p.parse_args(argv)
    items = json.loads(Path(ns.questions).read_text())
    index, info = open_index(None, ns.cache_dir)
    rows: list[dict[str, Any]] = []
    for item in items:
        expect = set(item["expect"])
        hits = [module_of(h.passage.ref) for h in index.search(item["question"], k=5)]
        rows.append(
            {
                "question": item["question"],
                "expect": sorted(expect),
                "hit@1": bool(hits[:1]) and hits[0] in expect,
                "hit@5": any(m in expect for m in hits),
                "retrieved": hits,
            }
        )
    result: dict[str, Any] = {
        "questions": len(rows),
        "index": info,
        "hit@1": round(sum(r["hit@1"] for r in rows) / len(rows), 3),
        "hit@5": round(sum(r["hit@5"] for r in rows) / len(rows), 3),
    }
    if not ns.retrieval_only:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(
                None,
                [
                    f"storage.path={tmp}/eval.db",
                    "enabled=false",
                    "message_broker=memory",
                    f"corpus.cache_dir={ns.cache_dir}",
                ],
            )
            with get_executor(cfg) as executor:
                started = time.perf_counter()
                for row in rows:
                    response = executor.run_query(row["question"])
                    top = [
                        line
                        for line in response.answer.splitlines()
                        if line[:2] in ("1.", "2.", "3.")
                    ]
                    cited = [m.group(1) for line in top if (m := _CITATION.search(line))]
                    row["answer_cites"] = [module_of(ref) for ref in cited]
                    row["answer_hit"] = any(module_of(r) in row["expect"] for r in cited)
                elapsed = time.perf_counter() - started
        result["answers_citing_expected_module"] = round(
            sum(r["answer_hit"] for r in rows) / len(rows), 3
        )
        result["seconds_per_run"] = round(elapsed / len(rows), 3)
    if ns.details:
        result["rows"] = rows
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
