"""`--since AGE` of `syncfleet runs` and `syncfleet gis runs`: how an age is read, and a
bad one refused in one line with the usage status (no Redis needed)."""

from __future__ import annotations

import argparse

import pytest

from tests.support.cli import syncfleet
from worker.cli.display import EXIT_USAGE
from worker.cli.shared import duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("30m", 1800), ("3h", 10800), ("2d", 172800), ("1w", 604800), ("45s", 45),
    ("14D", 14 * 86400), (" 2d ", 172800), ("90m", 5400),
])
def test_an_age_is_a_whole_number_and_a_unit(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["2", "d", "2x", "-2d", "0d", "1.5h", "2 d", "2dd", "",
                                  "2d3h", "two days"])
def test_anything_else_is_refused_with_an_example(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"not a duration: .* \(e\.g\. 30m"):
        duration(text)


@pytest.mark.parametrize("command", [("runs",), ("gis", "runs")])
def test_a_bad_age_is_one_usage_line_and_exit_2(command):
    done = syncfleet(*command, "--since", "2x", REDIS_URL="redis://127.0.0.1:1/0")
    assert done.returncode == EXIT_USAGE == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a duration: '2x' (e.g. 30m, 3h, 2d)" in lines[0], \
        done.stderr
    assert done.stdout == ""
