"""A GIS cold start through a Redis Sentinel failover, against real servers: a master, a
replica and three sentinels on loopback (scripts/redis_sentinel.py), the shipped worker
as processes configured only by REDIS_SENTINELS and friends. The master is SIGKILLed
mid-run; the sentinels promote the replica, and the run finishes by itself: everyone
identified, every event once, none under two ids.

Replication is asynchronous: what the master acknowledged just before it died may never
have reached the replica (a held message, a chord's count, a part's report). The fleet
heals as it does after a lost message: the broker's sweep redelivers what was held, and
the recovery of lost messages (worker/recovery.py) reads again any part that never reported.
Only the sentinels' own timings are shortened (scripts/redis_sentinel.py); the fleet's
settings are the shipped ones."""

from __future__ import annotations

import pytest

from tests.support import wait_for
from tests.support.failover import kill_master_and_finish
from tests.support.gis import Truth, assert_cold_start_arrived
from worker.gis_sync.run_state import GIS
from worker.settings import get_settings

# Writes the master acknowledges and the replica never sees (scripts/redis_sentinel.py
# stops the replica until the master is this far ahead, then kills the master): what an
# asynchronous failover loses when the replica lags.
UNREPLICATED = 100_000
FINISH_BOUND = 150  # seconds from the kill to the run's summary, on a busy machine


@pytest.mark.slow
def test_a_cold_start_survives_the_masters_death_and_finishes_by_itself(
        gis_world, sentinel_redis, other_fleet):
    settings = get_settings()
    assert settings.redis_sentinels and (settings.visibility_timeout, 20) == (35, 20)
    admin = gis_world.admin
    truth = Truth(admin)
    admin.faults("customerio", latency_ms=60)  # a run long enough to be cut in two
    workers = [other_fleet.worker("failover-1"), other_fleet.worker("failover-2")]
    run_id = other_fleet.send_task("gis.scan").id
    wait_for(lambda: len(admin.requests(api="customerio")) >= 20, "the fan-out under way",
             90, alive=workers)

    run, promoted, finished = kill_master_and_finish(
        sentinel_redis, admin, other_fleet, "customerio", UNREPLICATED,
        lambda: GIS.summary(run_id), FINISH_BOUND)

    # Only unusable records are errors (applications without a known programme).
    assert run["status"] == "finished_with_errors", run
    unusable = {a["id"] for a in truth.apps.values() if not truth.app_usable(a)}
    assert {e["id"] for e in run["errors"]} == unusable
    assert_cold_start_arrived(admin, truth)
    print(f"GIS cold start: master killed, replica promoted {promoted:.1f}s later, run "
          f"finished {finished:.1f}s after the kill (parts redone: "
          f"{run.get('parts_redone', 0)}; events resent under the same id, which "
          f"customer.io ignores: {admin.customerio_events()['duplicates']}; workers "
          f"restarted: {other_fleet.restarts or 'none'})")
    assert finished < FINISH_BOUND
