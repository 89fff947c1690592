"""A migration through a Redis Sentinel failover, against real servers: a master, a
replica and three sentinels on loopback (scripts/redis_sentinel.py), the shipped worker
as processes configured only by REDIS_SENTINELS and friends. The master is SIGKILLed
mid-run, the sentinels promote the replica, and the run finishes by itself: every
identified profile is a Voucherify customer, upserted once.

Replication is asynchronous: what the master acknowledged just before it died may never
have reached the replica (a held message, a slice's record, a chord's count). The broker's
sweep redelivers the held messages that survived; a slice whose message or report was
lost is found again by the migration's recovery of lost messages (the run engine's).
Only the sentinels' own timings are shortened; the fleet's settings are the shipped ones."""

from __future__ import annotations

import pytest

from tests.support import wait_for
from tests.support.failover import kill_master_and_finish
from tests.support.segment import assert_every_customer_once, start_run
from worker.segment_migration import state

FINISH_BOUND = 150  # seconds from the kill to the run's summary, on a busy machine
UNREPLICATED = 20_000  # bytes of acknowledged writes lost (a migration writes less than a
# GIS scan: the slices' ids stay in Redis, not in the messages)
# The run's shape (as in the crash test): small slices, so the kill lands with
# several slices done and several to do.
RUN_ENV = {"SEGMENT_SLICE_SIZE": "10", "SEGMENT_FETCH_CONCURRENCY": "2"}


@pytest.mark.slow
def test_a_migration_survives_the_masters_death_and_finishes_by_itself(
        seg_env, sentinel_redis, other_fleet, monkeypatch):
    for name, value in RUN_ENV.items():
        monkeypatch.setenv(name, value)
    admin = seg_env.admin
    admin.faults("segment", latency_ms=30)  # a run long enough to be cut in two
    workers = [other_fleet.worker("seg-failover-1"), other_fleet.worker("seg-failover-2")]
    run_id = start_run(other_fleet.app)
    wait_for(lambda: (state.progress(run_id) or {}).get("slices_finished", 0) >= 2,
             "two slices", 90, alive=workers)

    summary, promoted, finished = kill_master_and_finish(
        sentinel_redis, admin, other_fleet, "segment", UNREPLICATED,
        lambda: state.get_summary(run_id), FINISH_BOUND)

    identified = assert_every_customer_once(admin)
    assert summary["status"] == "finished"
    assert summary["customers_upserted"] == len(identified)
    print(f"migration: master killed, replica promoted {promoted:.1f}s later, summary "
          f"{finished:.1f}s after the kill (workers restarted: "
          f"{other_fleet.restarts or 'none'})")
    assert finished < FINISH_BOUND
