"""A whole worker (main process and children, as when a host dies) SIGKILLed in the
middle of a scan and of a backfill, with the shipped settings and pool: another worker
redoes what it held within 90 s of the kill (the goal is 60 s; the margin is for a busy
machine), everything arrives, and no transition arrives under two different event ids.

Nothing is shortened and nothing is forced: the redelivery is the broker's own
(VISIBILITY_TIMEOUT, kombu's sweep by the live worker)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.support import wait_for
from tests.support.gis import (
    Truth,
    assert_clean,
    assert_cold_start_arrived,
    flat,
    received,
    scope,
    wait_run,
)
from tests.support.queues import remove_one
from worker import recovery, store
from worker.gis_sync import failed, run_state
from worker.gis_sync.planning import BACKFILL
from worker.gis_sync.run_state import GIS
from worker.settings import get_settings

MARGIN = 300
RECOVERY_BOUND = 90
LOST_BOUND = 120  # a lost message: LOST_AFTER of quiet, then a redo


def kill_mid_run(fleet_app, worker_process, admin, task: str, **kwargs) -> tuple[dict, float]:
    """Start `task` on one worker, SIGKILL that worker well into the work it fanned out,
    start another; returns the run's summary and the seconds from the kill to it."""
    admin.faults("customerio", latency_ms=60)  # a scan long enough to be killed in
    first = worker_process(name="crash-1")
    result = fleet_app.send_task(task, kwargs=kwargs)
    wait_for(lambda: len(admin.requests(api="customerio")) >= 20, "the fan-out under way",
             60, alive=[first])
    first.kill()
    killed_at = time.monotonic()
    assert first.died() is not None
    assert store.client().zcard("unacked_index") > 0  # the kill left work unacknowledged
    admin.clear_faults("customerio")
    second = worker_process(name="crash-2")
    run = wait_run(result.id, timeout=RECOVERY_BOUND + 30, alive=(second,))
    return run, time.monotonic() - killed_at


def assert_once_each(admin) -> None:
    # Each transition was recorded once: a repeat carried the same id (a duplicate).
    counts = Counter(e for evs in received(admin).values() for e in evs)
    assert [e for e, n in counts.items() if n > 1] == []
    assert_clean(admin)


@pytest.mark.slow
def test_sigkill_mid_scan_a_new_worker_finishes_within_the_bound(
        fleet_app, gis_world, worker_process):
    defaults = get_settings()
    assert (defaults.visibility_timeout, defaults.task_time_limit) == (35, 20)  # shipped
    admin = gis_world.admin
    truth = Truth(admin)
    run, took = kill_mid_run(fleet_app, worker_process, admin, "gis.scan")

    assert_cold_start_arrived(admin, truth, MARGIN)
    print(f"scan: summary {took:.1f}s after the kill")
    assert took < RECOVERY_BOUND


@pytest.mark.slow
def test_sigkill_mid_backfill_a_new_worker_finishes_within_the_bound(
        fleet_app, gis_world, worker_process):
    admin = gis_world.admin
    truth = Truth(admin)
    run, took = kill_mid_run(fleet_app, worker_process, admin, "gis.backfill")

    assert run["kind"] == "backfill"
    assert set(admin.customerio_profiles()["profiles"]) == truth.valid_people()
    assert flat(received(admin)) == flat(truth.all_events())  # every history, in full
    assert_once_each(admin)
    print(f"backfill: summary {took:.1f}s after the kill")
    assert took < RECOVERY_BOUND


@pytest.mark.slow
def test_a_part_whose_message_was_lost_is_read_again_and_the_run_ends(
        fleet_app, gis_world, worker_process):
    # The loss kombu allows (a worker killed between popping a message and recording it
    # as held; seen in the SIGKILL tests on a busy machine), made on purpose: a run
    # handed a part over, but its chord never reached the broker. Once the broker holds
    # nothing, a worker's recovery reads the part's records again and the run ends.
    admin = gis_world.admin
    people = sorted(Truth(admin).valid_people())[:5]
    run_id = f"lost-{time.time_ns()}"
    lost_at = time.monotonic()
    run_state.start_run(run_id, "backfill", scope(), mode=BACKFILL, since_ts=None,
                        dry_run=False)
    GIS.launch(run_id, {"ids": [failed.name("person", p) for p in people]})
    worker = worker_process(name="recovers")

    run = wait_run(run_id, timeout=RECOVERY_BOUND, alive=(worker,))
    assert run["parts_redone"] == 1 and run["parts"] == 2, run  # the lost one, its redo
    assert set(admin.customerio_profiles()["profiles"]) == set(people)  # those, no other
    assert_clean(admin)
    assert recovery.LOST_AFTER <= time.monotonic() - lost_at < RECOVERY_BOUND


@pytest.mark.slow
def test_a_sync_message_removed_from_the_queue_mid_scan_is_redone_and_the_run_ends(
        fleet_app, gis_world, worker_process, redis_client):
    # The same loss in a real scan: one gis.sync_person message taken off the `gis` queue
    # while the worker is busy with the others; its part (chord) never reports.
    admin = gis_world.admin
    truth = Truth(admin)
    admin.faults("customerio", latency_ms=60)  # the fan-out waits queued for a while
    worker = worker_process(name="gis-lost")
    run_id = fleet_app.send_task("gis.scan").get(timeout=60)["run_id"]
    wait_for(lambda: remove_one(redis_client, "gis", "gis.sync_person",
                                lambda _, kwargs: kwargs.get("run_id") == run_id),
             "a sync task waiting in the gis queue", 60, alive=[worker])
    removed_at = time.monotonic()
    admin.clear_faults("customerio")
    run = wait_run(run_id, timeout=LOST_BOUND, alive=(worker,))
    took = time.monotonic() - removed_at

    assert run["parts_redone"] == 1 and run["status"] != "incomplete"
    assert set(admin.customerio_profiles()["profiles"]) == truth.valid_people()
    assert_once_each(admin)
    print(f"a sync task removed from the queue; summary {took:.1f}s later")
    assert recovery.LOST_AFTER <= took < LOST_BOUND


@pytest.mark.slow
def test_an_upgrade_drains_a_worker_mid_scan_and_the_new_one_finishes(
        fleet_app, gis_world, worker_process, redis_client):
    # README "Upgrading without losing work": SIGTERM (docker compose stop) mid-scan is a
    # warm shutdown: the running tasks finish, what the worker held goes back to the
    # queues at once (nothing waits for VISIBILITY_TIMEOUT), and the new worker finishes.
    admin = gis_world.admin
    truth = Truth(admin)
    admin.faults("customerio", latency_ms=60)
    old = worker_process(name="old-version")
    result = fleet_app.send_task("gis.scan")
    wait_for(lambda: len(admin.requests(api="customerio")) >= 20, "the fan-out under way",
             60, alive=[old])
    old.stop(timeout=60)  # compose's stop_grace_period
    assert old.proc.returncode == 0 and "Warm shutdown" in old.log()
    assert redis_client.hlen("unacked") == 0  # nothing left held by the stopped worker
    admin.clear_faults("customerio")
    new = worker_process(name="new-version")
    wait_run(result.id, timeout=120, alive=(new,))
    assert set(admin.customerio_profiles()["profiles"]) == truth.valid_people()
    assert_once_each(admin)
