"""What the commands of both jobs share: the option types and the list of runs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from worker.cli import display
from worker.cli.display import EXIT_OK, EXIT_USAGE, emit_json, fail_line


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


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
