"""A walk message of a run this Redis does not know (forgotten, expired, or left over
from a Redis that was restored or flushed) is dropped with a warning: before, it
re-queued itself at once for ever, a hot loop on a worker slot (seen in a full test run:
thousands of redeliveries of one message). Real worker, real Redis, the sandbox."""

from __future__ import annotations

from tests.support import wait_for


def test_a_walk_of_an_unknown_run_is_dropped_not_spun(fleet, gis_world):
    run_id = "no-such-run-0000"
    task_id = f"{run_id}:walk:people"
    fleet.send_task("gis.walk", args=(run_id, "people"), task_id=task_id)
    wait_for(lambda: f"gis.walk[{task_id}] succeeded" in fleet.log(),
             "the walk of an unknown run to end", 60)
    fleet.drain()
    log = fleet.log()
    assert "no such run, message dropped" in log
    assert log.count(f"gis.walk[{task_id}] received") == 1  # not re-queued
    assert f"gis.walk[{task_id}] retry" not in log
    assert gis_world.admin.requests(api="gis") == []  # nothing read for it
