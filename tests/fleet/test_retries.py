"""FleetTask's retry allowances, through a real worker: waits for budget and going on
after a checkpoint are not failures, and failures stay bounded however long a task
waited; a long wait is parked in Redis and released when due, not held as a countdown."""

from __future__ import annotations

import time

import pytest

from tests.support.tasks import LONG_WAIT
from worker import parking, retry
from worker.http import RateLimited, TransientError
from worker.ratelimit import NoBudget


def run(app, script: list[str]):
    return app.send_task("tests.scripted", args=(script,)).get(timeout=60)


def test_budget_waits_do_not_use_up_the_failure_allowance(fleet_app, fleet_worker):
    # 4 waits + 2 failures = 6 retries, over max_retries=2, yet within each allowance.
    assert run(fleet_app, ["budget"] * 4 + ["5xx"] * 2 + ["ok"]) == 6


def test_failures_stay_bounded_after_budget_waits(fleet_app, fleet_worker):
    with pytest.raises(TransientError):
        run(fleet_app, ["budget"] * 3 + ["5xx"] * 3 + ["ok"])


def test_budget_waits_have_their_own_bound(fleet_app, fleet_worker):
    with pytest.raises(NoBudget):
        run(fleet_app, ["budget"] * 6 + ["ok"])


def test_continuing_is_not_a_failure_and_has_its_own_bound(fleet_app, fleet_worker):
    assert run(fleet_app, ["continue"] * 3 + ["5xx"] * 2 + ["ok"]) == 5
    with pytest.raises(retry.Continue):
        run(fleet_app, ["continue"] * 4 + ["ok"])


def test_a_wait_longer_than_the_countdown_cap_is_parked_then_released(
        fleet_app, fleet_worker, monkeypatch):
    monkeypatch.setenv("MAX_RETRY_COUNTDOWN", "1")  # LONG_WAIT is longer: it is parked
    started = time.monotonic()
    result = fleet_app.send_task("tests.scripted", args=(["429-long", "ok"],))
    assert run_result(result) == 1
    assert time.monotonic() - started >= LONG_WAIT  # it waited as long as asked
    assert parking.waiting() == 0  # released, nothing left behind


def test_a_parked_task_still_has_only_its_failure_allowance(fleet_app, fleet_worker,
                                                           monkeypatch):
    monkeypatch.setenv("MAX_RETRY_COUNTDOWN", "1")
    with pytest.raises(RateLimited):
        run(fleet_app, ["429-long", "5xx", "429-long", "ok"])  # 3 failures > 2


def run_result(result):
    return result.get(timeout=60)
