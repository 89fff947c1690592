"""`syncfleet` (also `python -m worker`): one CLI for both jobs, for people and scripts.

    syncfleet --version
    syncfleet check                 Redis, and each configured credential (one cheap call)
    syncfleet health [--beat | --worker NODE]   exit 0 or 1 with the reasons
    syncfleet metrics               serve Prometheus metrics on METRICS_PORT
    syncfleet runs [-n N]           the latest runs of both jobs
    syncfleet gis runs [-n N]
    syncfleet gis failed [--drop ID | --drop-all [--yes]]
    syncfleet gis scan [--follow] [--timeout S] [--queue-anyway]
    syncfleet gis backfill [--since DATE] [--person ID ...] [--application ID ...] [--follow]
    syncfleet gis explain person|application ID   one record, "why didn't they get it?"
    syncfleet migrate [--follow] [--run-id ID] [--slice-size N] [--timeout S] [--queue-anyway]
    syncfleet migrate explain SOURCE_ID [--run-id ID]   one profile's fate in a run
    syncfleet status RUN_ID
    syncfleet cancel RUN_ID [--job gis|segment] [--yes] [--wait [--timeout S]]
    syncfleet forget RUN_ID [--job gis|segment] [--yes]
    syncfleet gis pause [--reason TEXT] [--by WHO]
    syncfleet gis resume

Every command takes `--json`. Commands read Redis directly (never queued behind work);
`scan`, `backfill` and `migrate` send a task to the fleet, after checking that a worker
consumes its queue. `cancel`, `forget` and `gis failed --drop-all` ask first (`--yes`
answers; without a terminal to ask on they refuse, exit 2). A failure is one line on
stderr (with `--json`: {"error": {"code", "message", "exit_code"}} on stdout), never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from worker.cli import control, failures, gis, jobs, ops
from worker.cli.display import EXIT_CODES, EXIT_INTERRUPTED, Parser, show_error


def parser() -> Parser:
    codes = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)
    top = Parser(prog="syncfleet", description=__doc__.splitlines()[0],
                 epilog=f"exit status:\n{codes}",
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"syncfleet {package_version()}")
    sub = top.add_subparsers(dest="command", parser_class=Parser, required=True)
    ops.add_commands(sub)
    jobs.add_commands(sub)
    control.add_commands(sub)
    gis.add_commands(sub)
    return top


def package_version() -> str:
    try:
        return version("syncfleet")
    except PackageNotFoundError:  # run from a checkout without installing it
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser().parse_args(argv)
        # The command reads Redis (a malformed REDIS_URL stops at the settings), unless it
        # reports on Redis itself (check, health) or waits for it (metrics).
        if getattr(args, "needs_redis", True):
            failures.require_redis()
        return int(args.run(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one place that turns errors into a line
        error = failures.describe(exc)
        show_error(error, as_json="--json" in argv)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
