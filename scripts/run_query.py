#!/usr/bin/env python3
"""Run one query on the Ray cluster this script runs on; the entrypoint for `ray submit`:

    ray submit cluster.yaml scripts/run_query.py -- How do I run coroutines concurrently [key=value]

`ray submit` copies this file to the head node and runs it there, so the config is looked up on
the head: ``--config PATH`` if given, else ``configs/cluster.yaml`` of the checkout next to this
script, else of ``~/autoresearch_ray`` (where cluster.yaml's file_mounts put the package). The
run joins the cluster (``address: auto``) and leaves it running. Prints the answer, or with
``--json`` the whole response; the exit code is the CLI's (0 ok, 1 failed run, 2 bad input).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoresearch_ray.cli import OVERRIDE
from autoresearch_ray.cli import main as cli

CANDIDATES = (
    Path(__file__).resolve().parent.parent / "configs" / "cluster.yaml",
    Path("~/autoresearch_ray/configs/cluster.yaml").expanduser(),
)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and hand the run to ``autoresearch-ray run``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # `ray submit` hands the arguments to the head's shell joined by spaces, unquoted: so the
    # query may arrive as several words, and every word that is not key=value belongs to it.
    parser.add_argument("words", nargs="+", metavar="QUERY WORDS and key=value")
    parser.add_argument("--config", type=Path, help="application config (default: see above)")
    parser.add_argument("--json", action="store_true", help="print the whole response as JSON")
    parser.add_argument("--run-id")
    args = parser.parse_intermixed_args(argv)  # key=value may follow the options
    overrides = [w for w in args.words if OVERRIDE.match(w)]
    query = " ".join(w for w in args.words if not OVERRIDE.match(w))
    if not query:
        parser.error("no query given (only key=value overrides)")
    config = args.config or next((c for c in CANDIDATES if c.is_file()), None)
    if config is None:
        looked = ", ".join(str(c) for c in CANDIDATES)
        print(
            f"run_query.py: no cluster config found (looked in {looked}); pass --config",
            file=sys.stderr,
        )
        return 2
    command = ["run", str(config), query, *overrides]
    command += ["--json"] if args.json else []
    command += ["--run-id", args.run_id] if args.run_id else []
    return cli(command)


if __name__ == "__main__":
    sys.exit(main())
