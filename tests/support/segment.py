"""Helpers for the Segment -> Voucherify tests: a small world, runs, summaries."""

from __future__ import annotations

import json
from typing import Any

from tests.support import wait_for
from worker.segment_migration import state
from worker.segment_migration.start import new_run_id

PROFILES = 120  # small world: every test stays a few seconds


def start_run(app, run_id: str | None = None, **kwargs: Any) -> str:
    """Send segment.migrate with a run id chosen here (no result subscription needed)."""
    run_id = run_id or new_run_id()
    app.send_task("segment.migrate", kwargs={"run_id": run_id, **kwargs})
    return run_id


# Small slices (12 in the small world), each fetching two profiles at once: a run long
# enough to do things to while it works. The fleet's reliability settings stay as shipped.
SMALL_SLICES = {"SEGMENT_SLICE_SIZE": "10", "SEGMENT_FETCH_CONCURRENCY": "2"}


def start_slow_run(seg_env, app, worker_process, monkeypatch, name: str,
                   latency_ms: int) -> tuple[str, Any]:
    """A run of SMALL_SLICES on a worker process of its own (`name`), Segment answering
    `latency_ms` late; returns the run id and the worker."""
    for setting, value in SMALL_SLICES.items():
        monkeypatch.setenv(setting, value)
    seg_env.admin.faults("segment", latency_ms=latency_ms)
    worker = worker_process(name=name)
    return start_run(app), worker


def run_migration(app, timeout: float = 60, **kwargs: Any) -> dict[str, Any]:
    """segment.migrate through the fleet, then wait for the run's summary."""
    return wait_summary(start_run(app, **kwargs), timeout)


def wait_summary(run_id: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: state.get_summary(run_id), f"the summary of {run_id}", timeout)


def chord_leftovers(redis_client) -> list[str]:
    """What the migration's chords left in the result backend: a slice task's stored
    result (its body reads it, then forgets it) or a chord's join state (Celery deletes
    it once the body is sent; only its short-lived `.c` done marker stays)."""
    left = [key for key in redis_client.scan_iter("*celery-taskset-meta-*")
            if not key.endswith(".c")]
    for key in redis_client.scan_iter("*celery-task-meta-*"):
        raw = redis_client.get(key)
        result = json.loads(raw).get("result") if raw else None
        if isinstance(result, dict) and "slice" in result:
            left.append(key)
    return left


def assert_every_customer_once(admin) -> set[str]:
    """Every identified profile (a `user_id`) is a Voucherify customer, upserted once: a
    slice redone after a crash polled the bulk it had sent instead of sending it again.
    Returns the identified user ids."""
    from tests.segment.test_migration import user_id

    identified = {user_id(p) for p in admin.world_profiles() if user_id(p)}
    customers = admin.voucherify_customers()["customers"]
    assert set(customers) == identified
    assert {k: c["upserts"] for k, c in customers.items() if c["upserts"] != 1} == {}
    return identified


def no_nulls(value: Any) -> bool:
    """No null anywhere in a body (Voucherify's schema has no nullable field)."""
    if isinstance(value, dict):
        return all(no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(no_nulls(v) for v in value)
    return value is not None
