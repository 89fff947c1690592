"""Helpers for the Segment -> Voucherify tests: a small world, runs, summaries."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from worker.segment_migration import state
from worker.segment_migration.tasks import new_run_id

ROOT = Path(__file__).resolve().parents[2]
PROFILES = 120  # small world: every test stays a few seconds


@pytest.fixture
def seg_env(sandbox_env, monkeypatch):
    """The sandbox with a small profile world, generous Segment budgets (the budget tests
    set their own), small slices and several chords per run."""
    sandbox_env.admin.reset({"seed": 1, "profiles": PROFILES, "people": 10,
                             "applications": 10})
    sandbox_env.admin.limits("segment", rps=400)
    for name, value in {"SEGMENT_MAX_RPS": "400", "SEGMENT_SLICE_SIZE": "20",
                        "SEGMENT_SLICES_PER_CHORD": "2", "VOUCHERIFY_MAX_RPM": "600"}.items():
        monkeypatch.setenv(name, value)
    return sandbox_env


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_run(app, run_id: str | None = None, **kwargs: Any) -> str:
    """Send segment.migrate with a run id chosen here (no result subscription needed)."""
    run_id = run_id or new_run_id()
    app.send_task("segment.migrate", kwargs={"run_id": run_id, **kwargs})
    return run_id


def run_migration(app, timeout: float = 60, **kwargs: Any) -> dict[str, Any]:
    """segment.migrate through the fleet, then wait for the run's summary."""
    return wait_summary(start_run(app, **kwargs), timeout)


def wait_summary(run_id: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: state.get_summary(run_id), timeout, f"summary of {run_id}")
