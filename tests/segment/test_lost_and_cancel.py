"""A migration that loses a slice's message finishes by itself, and one cancelled stops
handing work over and ends `cancelled`: the shipped worker, Redis, the sandbox over HTTP.
"""

from __future__ import annotations

import time

import pytest

from tests.segment.test_migration import user_id
from tests.support import wait_for
from tests.support.cli import syncfleet_json
from tests.support.queues import remove_one
from tests.support.segment import start_run, start_slow_run, wait_summary
from worker import recovery
from worker.segment_migration import state
from worker.segment_migration.state import SEGMENT

LOST_BOUND = 120  # the two minutes; the recovery itself takes LOST_AFTER + a tick


@pytest.mark.slow
def test_a_slice_message_removed_from_the_queue_is_redone_and_every_customer_arrives_once(
        seg_env, fleet_app, worker_process, redis_client, monkeypatch):
    # Kombu pops a message before it records it as held: a worker killed in that instant
    # loses it. The same loss, made for real: one segment.migrate_slice message taken
    # off the `segment` queue while the worker is busy with the slices before it.
    admin = seg_env.admin  # slices take a while: the others wait queued
    run_id, worker = start_slow_run(seg_env, fleet_app, worker_process, monkeypatch,
                                    "seg-lost", latency_ms=100)
    removed = wait_for(
        lambda: remove_one(redis_client, "segment", "segment.migrate_slice",
                           lambda args, _: args[0] == run_id),
        "a slice waiting in the segment queue", 60, alive=[worker])
    removed_at = time.monotonic()
    admin.clear_faults("segment")
    summary = wait_summary(run_id, timeout=LOST_BOUND)
    took = time.monotonic() - removed_at

    world = admin.world_profiles()
    identified = {user_id(p) for p in world if user_id(p)}
    customers = admin.voucherify_customers()["customers"]
    assert set(customers) == identified  # the removed slice's customers too
    assert {k: c["upserts"] for k, c in customers.items() if c["upserts"] != 1} == {}
    assert summary["status"] == "finished" and summary["parts_redone"] == 1
    # The removed slice's chord never reached its body; the slice was sent again as a
    # chord of its own, whose body ended the run.
    assert summary["written_by"] == "segment.summarize"
    assert summary["profiles_seen"] == len(world) and summary["slices"]["total"] == 12
    assert summary["customers_upserted"] == len(identified) and summary["failed"] == []
    assert {s["segment_id"] for s in summary["skipped"]} == \
        {p["segment_id"] for p in world if not user_id(p)}
    slice_no = removed[0][1]
    redone = set(state.slice_ids(run_id, slice_no))
    assert redone and redone <= {p["segment_id"] for p in world}
    print(f"slice {slice_no} removed from the queue; summary {took:.1f}s later")
    assert recovery.LOST_AFTER <= took < LOST_BOUND


@pytest.mark.slow
def test_a_cancelled_migration_hands_nothing_more_over_ends_cancelled_and_resumes(
        seg_env, fleet_app, worker_process, monkeypatch):
    admin = seg_env.admin
    run_id, worker = start_slow_run(seg_env, fleet_app, worker_process, monkeypatch,
                                    "seg-cancel", latency_ms=100)
    wait_for(lambda: SEGMENT.progress(run_id)["parts_finished"] >= 1, "a slice done", 60,
             alive=[worker])
    assert SEGMENT.cancel(run_id)
    summary = wait_summary(run_id, timeout=60)

    assert summary["status"] == "cancelled"
    results = state.all_results(run_id)
    done = {n for n, r in results.items() if r["ok"]}
    cancelled = {n for n, r in results.items() if r.get("error") == "run cancelled before "
                                                                   "it started"}
    assert done and cancelled and done | cancelled == set(results)  # what ran, finished
    # The slices not started sent nothing: Voucherify has exactly the done slices' people.
    world = {p["segment_id"]: p for p in admin.world_profiles()}
    sent = {user_id(world[sid]) for n in done for sid in state.slice_ids(run_id, n)
            if user_id(world[sid])}
    customers = admin.voucherify_customers()["customers"]
    assert set(customers) == sent
    assert summary["customers_upserted"] == len(sent)

    # Resumed, the run does the rest, each customer still upserted once.
    admin.clear_faults("segment")
    start_run(fleet_app, run_id=run_id)
    wait_for(lambda: (state.get_run(run_id) or {}).get("attempt") == 2, "the resume", 30)
    second = wait_summary(run_id, timeout=60)
    customers = admin.voucherify_customers()["customers"]
    assert second["status"] == "finished"
    assert set(customers) == {user_id(p) for p in world.values() if user_id(p)}
    assert {k: c["upserts"] for k, c in customers.items() if c["upserts"] != 1} == {}


def test_syncfleet_cancel_wait_stops_a_running_migration(seg_env, fleet_app, worker_process,
                                                         monkeypatch):
    """The operator's way: `syncfleet cancel RUN_ID --yes --wait`. The slices not started
    at the cancel never read Segment nor write Voucherify, fewer than everyone arrives,
    nothing reaches either once the run has ended, and the command gives the summary."""
    admin = seg_env.admin
    run_id, worker = start_slow_run(seg_env, fleet_app, worker_process, monkeypatch,
                                    "seg-cli-cancel", latency_ms=100)
    wait_for(lambda: SEGMENT.progress(run_id)["parts_finished"] >= 1, "a slice done", 60,
             alive=[worker])
    code, summary = syncfleet_json("cancel", run_id, "--yes", "--wait", "--timeout", "60")
    ended_at = time.time()
    admin.clear_faults("segment")

    assert code == 0 and summary["status"] == "cancelled" and summary["run_id"] == run_id
    results = state.all_results(run_id)
    not_started = {n for n, r in results.items()
                   if r.get("error") == "run cancelled before it started"}
    assert not_started, results
    never = {sid for n in not_started for sid in state.slice_ids(run_id, n)}
    assert [r["path"] for r in admin.requests("segment")
            if any(sid in r["path"] for sid in never)] == []
    world = admin.world_profiles()
    customers = admin.voucherify_customers()["customers"]
    assert len(customers) < len({user_id(p) for p in world if user_id(p)})
    assert not {user_id(p) for p in world if p["segment_id"] in never} & set(customers)
    print(f"cancelled: {len(not_started)} of {len(results)} slices never started, "
          f"{len(customers)} customers upserted")
    fleet_app.send_task("segment.status", args=(run_id,)).get(timeout=60)  # moved on
    assert [r for r in admin.requests() if r["ts"] > ended_at] == []
