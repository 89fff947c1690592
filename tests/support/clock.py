"""The tests' one clock: every date a test builds by hand is relative to the run's start.

A literal date compared with a window relative to now (the cold-start window, "a
birthdate in the future") passes only while the calendar stands still; build dates
with `ago()` instead. Run the suite under `faketime -f +365d` to check that nothing
else depends on the day (docs/testing.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

RUN_START = datetime.now(UTC).replace(microsecond=0)


def ago(**delta: float) -> datetime:
    """The run's start minus a timedelta(**delta)."""
    return RUN_START - timedelta(**delta)


def iso(moment: datetime) -> str:
    """GIS's timestamp format: ISO-8601 in UTC with a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
