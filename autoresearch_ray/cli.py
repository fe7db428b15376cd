"""``autoresearch-ray``: run a query, list a run's claims, list runs.

Exit codes: 0 success, 1 a failed run, 2 bad input (one line on stderr saying what and why).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .brokers import get_message_broker
from .claim_store import ClaimStore
from .config import ConfigModel, load_config
from .errors import AutoresearchError, BadInputError, RunInterrupted
from .executors import BaseExecutor, get_executor
from .progress import ProgressDisplay
from .research.agents import verdicts

#: A command-line word that is a ``key=value`` override rather than a query or a path.
OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInputError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = _Parser(prog="autoresearch-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="answer a query",
        description='autoresearch-ray run [CONFIG.yaml] "query" [key=value ...]',
    )
    run.add_argument("args", nargs="*", metavar="[CONFIG] QUERY [key=value]")
    run.add_argument("--json", action="store_true", help="print the whole QueryResponse as JSON")
    run.add_argument("--run-id", help="run id (re-using one stores no duplicate claims)")
    run.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="continue a stopped or crashed run after its last checkpointed loop",
    )

    claims = sub.add_parser("claims", help="list the stored claims of a run")
    claims.add_argument("run_id")
    claims.add_argument("args", nargs="*", metavar="[CONFIG] [key=value]")
    claims.add_argument("--json", action="store_true")

    dlq = sub.add_parser(
        "dlq",
        help="dead letters of the redis broker: list, requeue or drop them",
        description="autoresearch-ray dlq list|requeue|drop [ID ...] [CONFIG] [key=value ...]",
    )
    dlq.add_argument("action", choices=["list", "requeue", "drop"])
    dlq.add_argument("args", nargs="*", metavar="[ID ...] [CONFIG] [key=value]")
    dlq.add_argument("--all", action="store_true", help="requeue or drop every dead letter")
    dlq.add_argument("--json", action="store_true")

    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("args", nargs="*", metavar="[CONFIG] [key=value]")
    runs.add_argument("--json", action="store_true")
    return parser


def split_args(args: Sequence[str], want_query: bool) -> tuple[str | None, str | None, list[str]]:
    """Split positionals into (config path, query, overrides)."""
    config: str | None = None
    query: str | None = None
    overrides: list[str] = []
    rest = list(args)
    if rest and rest[0].endswith((".yaml", ".yml")) and not OVERRIDE.match(rest[0]):
        config = rest.pop(0)
    for item in rest:
        if OVERRIDE.match(item):
            overrides.append(item)
        elif want_query and query is None:
            query = item
        else:
            raise BadInputError(
                f"unexpected argument {item!r}: give one quoted query and key=value overrides"
            )
    return config, query, overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    try:
        parser = build_parser()
        ns, extra = parser.parse_known_args(argv)
        # Words after a flag (`run "q" --json loops=3`) belong to the command's arguments.
        flags = [e for e in extra if e.startswith("-")]
        if flags:
            parser.error(f"unrecognized arguments: {' '.join(flags)}")
        if extra:
            ns.args = [*getattr(ns, "args", []), *extra]
        if ns.command == "run":
            return _run(ns)
        if ns.command == "claims":
            return _claims(ns)
        if ns.command == "dlq":
            return _dlq(ns)
        return _runs(ns)
    except BadInputError as exc:
        print(f"autoresearch-ray: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunInterrupted as exc:
        print(f"autoresearch-ray: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("autoresearch-ray: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        sys.stderr.close()
        return EXIT_OK
    except AutoresearchError as exc:
        print(f"autoresearch-ray: run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _run(ns: argparse.Namespace) -> int:
    config_path, query, overrides = split_args(ns.args, want_query=True)
    config = load_config(config_path, overrides)
    run_id = ns.resume or ns.run_id
    if ns.resume:
        stored = _stored_run(config, ns.resume)
        if query and query != stored["query"]:
            raise BadInputError(f"run {ns.resume} answered {stored['query']!r}, not {query!r}")
        query = stored["query"]
        if stored["status"] == "completed" and stored["loops_completed"] >= config.loops:
            print(f"run {ns.resume} already completed its {stored['loops_completed']} loops")
            return EXIT_OK
    query = query or config.query
    if not query or not query.strip():
        raise BadInputError('no query given: autoresearch-ray run [CONFIG] "your question"')
    progress = ProgressDisplay(config.loops, len(config.agents))
    with get_executor(config) as executor, _graceful_stop(executor):
        response = executor.run_query(
            query, callbacks=progress, run_id=run_id, resume=bool(ns.resume)
        )
    m = response.metrics
    if ns.json:
        print(response.model_dump_json(indent=2))
    else:
        print(response.answer)
        print()
        print(f"run id:     {response.run_id}")
        print(
            f"agents:     {m.agents} x {m.loops} loops = {m.agent_executions} executions, "
            f"{m.agent_errors} errors"
        )
        print(f"claims:     {m.claims} ({len(response.sources)} sources)")
        print(f"executor:   {m.executor}, {m.message_broker} broker, {m.duration_s:.2f}s")
        print(f"stored in:  {response.storage_path}")
        for err in response.errors[:10]:
            print(f"error:      loop {err.loop} {err.agent}: {err.error}", file=sys.stderr)
        print(
            f"list them:  autoresearch-ray claims {response.run_id} "
            f"storage.path={response.storage_path}"
        )
    failed = m.agent_executions > 0 and m.agent_errors == m.agent_executions
    return EXIT_FAILED if failed else EXIT_OK


def _stored_run(config: ConfigModel, run_id: str) -> dict[str, Any]:
    path = config.storage.resolved()
    if not path.is_file():
        raise BadInputError(f"no claims database at {path}, so no run {run_id!r} to resume")
    store = ClaimStore(path, readonly=True)
    try:
        run = store.run(run_id)
    finally:
        store.close()
    if run is None:
        raise BadInputError(f"no run {run_id!r} in {path}")
    return run


@contextlib.contextmanager
def _graceful_stop(executor: BaseExecutor) -> Iterator[None]:
    """SIGINT/SIGTERM: the first stops the run cleanly (in-flight agents finish, their claims
    are acknowledged, checkpointed loops stay resumable); a second exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        if executor.stop_requested:
            print("\nautoresearch-ray: second signal, exiting now", file=sys.stderr)
            os._exit(130)
        print(
            "\nautoresearch-ray: stopping: in-flight agents finish and their claims are stored "
            "(signal again to exit at once)",
            file=sys.stderr,
        )
        executor.request_stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _open_store(args: Sequence[str]) -> tuple[ClaimStore, ConfigModel]:
    config_path, _, overrides = split_args(args, want_query=False)
    config = load_config(config_path, overrides)
    path = config.storage.resolved()
    if not Path(path).is_file():
        raise BadInputError(f"no claims database at {path} (set storage.path=...)")
    return ClaimStore(path, readonly=True), config


def _claims(ns: argparse.Namespace) -> int:
    store, _ = _open_store(ns.args)
    try:
        if store.run(ns.run_id) is None:
            raise BadInputError(f"no run {ns.run_id!r} in {store.path}")
        claims = store.claims(ns.run_id)
        if ns.json:
            print(json.dumps([c.model_dump(mode="json") for c in claims], indent=2))
            return EXIT_OK
        checked = verdicts(claims)
        print(f"{'claim':<12}  {'loop':<4}  {'agent':<12} {'kind':<12} {'verdict':<11} source")
        for c in claims:
            src = c.sources[0] if c.sources else None
            source = (
                f"{src.ref} ({src.location})" if src and src.location else (src.ref if src else "-")
            )
            verdict = checked.get(c.claim_id, {}).get("verdict") or c.metadata.get("verdict") or "-"
            print(
                f"{c.claim_id[:12]}  {c.loop:<4}  {c.agent:<12} {c.kind:<12} {verdict:<11} {source}"
            )
            print(f"    {c.content[:300]}")
        print(f"{len(claims)} claims of run {ns.run_id} in {store.path}")
    finally:
        store.close()
    return EXIT_OK


def _dlq(ns: argparse.Namespace) -> int:
    ids = [a for a in ns.args if not OVERRIDE.match(a) and not a.endswith((".yaml", ".yml"))]
    rest = [a for a in ns.args if a not in ids]
    config_path, _, overrides = split_args(rest, want_query=False)
    dist = load_config(config_path, overrides).distributed_config
    if dist.message_broker != "redis":
        raise BadInputError(
            f"the {dist.message_broker} broker keeps dead letters in the run's process; only "
            "message_broker=redis keeps them after a run (give its broker_url and namespace)"
        )
    if ns.action != "list" and not ids and not ns.all:
        raise BadInputError(f"dlq {ns.action} needs delivery ids or --all")
    broker = get_message_broker("redis", dist.broker_url, namespace=dist.namespace)
    try:
        selected = None if ns.all or not ids else ids
        if ns.action == "list":
            letters = broker.dead_letters()
            if ns.json:
                print(json.dumps(letters, indent=2))
            for d in [] if ns.json else letters:
                print(f"{d['delivery_id']:<20} deliveries {d['deliveries']:<3} {d['reason']}")
                print(f"    {str(d['payload'])[:200]}")
            if not ns.json:
                print(f"{len(letters)} dead letters in namespace {dist.namespace}")
        elif ns.action == "requeue":
            print(f"requeued {broker.requeue_dead_letters(selected)} dead letters")
        else:
            print(f"dropped {len(broker.take_dead_letters(selected))} dead letters")
    finally:
        broker.close()
    return EXIT_OK


def _runs(ns: argparse.Namespace) -> int:
    store, _ = _open_store(ns.args)
    try:
        runs = store.runs()
    finally:
        store.close()
    if ns.json:
        print(json.dumps(runs, indent=2))
        return EXIT_OK
    for r in runs:
        print(
            f"{r['run_id']:<16} {r['status']:<10} loops {r['loops_completed']}/{r['loops']}  "
            f"claims {r['claims']:<6} {r['query'][:60]}"
        )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
