"""What the commands of both jobs share: the option types and the list of runs."""

from __future__ import annotations

import argparse
from typing import Any

from worker.cli import display
from worker.cli.display import EXIT_OK, emit_json


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
