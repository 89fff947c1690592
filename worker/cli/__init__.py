"""`syncfleet` (also `python -m worker`): one CLI for both jobs, for people and scripts.

    syncfleet --version
    syncfleet check                 Redis, and each configured credential (one cheap call)
    syncfleet health                exit 0 or 1 with a one-line reason
    syncfleet metrics               serve Prometheus metrics on METRICS_PORT
    syncfleet runs [-n N]           the latest runs of both jobs
    syncfleet gis runs [-n N]
    syncfleet gis failed [--drop ID | --drop-all]
    syncfleet gis scan [--follow]
    syncfleet gis backfill [--since DATE] [--person ID ...] [--application ID ...] [--follow]
    syncfleet migrate [--follow] [--run-id ID] [--slice-size N] [--timeout S]
    syncfleet status RUN_ID

Every command takes `--json`. Commands read Redis directly (never queued behind work);
`scan`, `backfill` and `migrate` send a task to the fleet (a worker must be running).
Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

from worker.cli import gis, jobs, ops
from worker.cli.display import EXIT_USAGE, Parser, fail_line
from worker.settings import SettingsError


def parser() -> Parser:
    top = Parser(prog="syncfleet", description=__doc__.splitlines()[0])
    top.add_argument("--version", action="version", version=f"syncfleet {package_version()}")
    sub = top.add_subparsers(dest="command", parser_class=Parser, required=True)
    ops.add_commands(sub)
    jobs.add_commands(sub)
    gis.add_commands(sub)
    return top


def package_version() -> str:
    try:
        return version("syncfleet")
    except PackageNotFoundError:  # run from a checkout without installing it
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except SettingsError as exc:
        fail_line(f"syncfleet: {exc}", EXIT_USAGE)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
