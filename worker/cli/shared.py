"""What the commands of both jobs share: the option types and the list of runs."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from worker.cli import display
from worker.cli.display import EXIT_OK, EXIT_USAGE, emit_json, fail_line


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str) -> int:
    """A span of time as `--since` takes it: a whole number and a unit (30m, 3h, 2d; s, m,
    h, d, w): its seconds."""
    match = re.fullmatch(r"(\d+)([smhdw])", text.strip().lower())
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 3h, 2d)")
    return int(match[1]) * UNITS[match[2]]


def add_run_filters(listing: argparse.ArgumentParser, default_n: int) -> None:
    listing.add_argument("-n", type=positive, default=None,
                         help=f"how many (default: {default_n}, or all with --since)")
    listing.add_argument("--since", type=duration, metavar="AGE",
                         help="only runs started in the last AGE (30m, 3h, 2d)")
    listing.set_defaults(default_n=default_n)


def run_filters(args: argparse.Namespace) -> dict[str, Any]:
    """recent()'s arguments from -n and --since."""
    if args.since is None:
        return {"n": args.n or args.default_n}
    return {"n": args.n, "since": time.time() - args.since}


def print_runs(latest: list[dict[str, Any]], as_json: bool, none_yet: str) -> int:
    """A list of runs (either job's) as JSON or a table."""
    if as_json:
        emit_json(latest)
    elif latest:
        display.runs_table(latest)
    else:
        print(none_yet)
    return EXIT_OK


def confirm(question: str, declined: str) -> None:
    """Go on only if the person at the terminal answers yes; `--yes` answers for a
    script. Without a terminal to ask on (a script, a pipe, cron) the command refuses at
    once (exit 2) rather than read an answer nobody is there to give."""
    if sys.stdin is None or not sys.stdin.isatty():
        fail_line(f"{question} needs a yes, and there is no terminal to ask on: pass --yes",
                  "confirmation", EXIT_USAGE)
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        fail_line(f"{declined} (answer y, or pass --yes)", "declined")
