"""FleetTask's two retry allowances, through a real worker: waits for budget are not
failures, and failures stay bounded however long a task waited for budget."""

from __future__ import annotations

import pytest

from worker.http import TransientError
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
