"""A task that outlives its bound, on the shipped pool (prefork enforces time limits):
a customer.io call that hangs longer than the soft time limit is stopped there, and the
records are retried and arrive once the service answers again.

The limits are shortened to 4/6 s only to prove the logic in seconds rather than a
minute; the pool, the worker command and everything else are as shipped."""

from __future__ import annotations

import pytest

from tests.support import wait_for
from tests.support.gis import Truth, assert_clean, wait_run
from tests.support.logs import assert_every_line_parses


@pytest.mark.slow
def test_a_hung_call_is_stopped_by_the_soft_time_limit_and_retried(gis_world, fleet,
                                                                   monkeypatch):
    monkeypatch.setenv("TASK_SOFT_TIME_LIMIT", "4")
    monkeypatch.setenv("TASK_TIME_LIMIT", "6")
    admin = gis_world.admin
    truth = Truth(admin)
    admin.faults("customerio", latency_ms=8_000)  # every call hangs twice the soft limit
    started = fleet.send_task("gis.scan").get(timeout=60)
    records = lambda: assert_every_line_parses(fleet.log(), "logfmt")  # noqa: E731
    stopped = wait_for(lambda: [r for r in records() if "SoftTimeLimitExceeded" in
                                r.get("msg", "") + r.get("exc", "")],
                       "a sync task stopped by its soft time limit", 60)
    admin.clear_faults("customerio")  # the service answers again: the retries get through

    run = wait_run(started["run_id"], timeout=120)
    assert set(admin.customerio_profiles()["profiles"]) == truth.valid_people()
    assert run["status"] in ("finished", "finished_with_errors")
    assert not [e for e in run.get("errors", []) if "gave up" in e["reason"]]
    assert any(r.get("task", "").startswith("gis.sync") for r in stopped)
    assert_clean(admin)
