"""A worker process SIGKILLed mid-run, and the CLI a person uses, both for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.segment.test_migration import user_id
from tests.support import ROOT, wait_for
from tests.support.segment import (
    PROFILES,
    assert_every_customer_once,
    start_run,
    start_slow_run,
    wait_summary,
)
from worker.segment_migration import state

RECOVERY_BOUND = 90  # the goal is 60 s; the margin is for a busy machine


@pytest.mark.slow
def test_sigkill_mid_run_then_a_new_worker_finishes_every_customer_exactly_once(
        seg_env, fleet_app, worker_process, redis_client, monkeypatch):
    """A whole worker (main process and children) SIGKILLed mid-migration, with the
    shipped settings and pool: another worker redoes what it held within the bound;
    nothing shortened, no sweep forced."""
    admin = seg_env.admin  # small slices: the kill lands with several done, several to do
    run_id, first = start_slow_run(seg_env, fleet_app, worker_process, monkeypatch,
                                   "seg-crash-1", latency_ms=30)
    wait_for(lambda: (state.progress(run_id) or {}).get("slices_finished", 0) >= 2,
             "two slices", 60, alive=[first])
    first.kill()
    killed_at = time.monotonic()
    progress = state.progress(run_id)
    assert progress["slices_finished"] < 12, "the kill came too late to test anything"
    assert redis_client.zcard("unacked_index") > 0  # the kill left work unacknowledged
    admin.clear_faults("segment")
    worker_process(name="seg-crash-2")
    summary = wait_summary(run_id, timeout=RECOVERY_BOUND + 30)
    recovery = time.monotonic() - killed_at

    world = admin.world_profiles()
    # Exactly once: a slice redone after the kill polled the bulk it had sent (its async
    # action id was stored the moment Voucherify accepted it) instead of sending it again.
    identified = assert_every_customer_once(admin)
    assert summary["status"] == "finished"
    assert summary["profiles_seen"] == len(world) and summary["slices"]["total"] == 12
    assert summary["customers_upserted"] == len(identified)
    assert {s["segment_id"] for s in summary["skipped"]} == \
        {p["segment_id"] for p in world if not user_id(p)}
    assert admin.stats()["rejected"]["voucherify"]["schema"] == 0
    print(f"killed after {progress['slices_finished']} of 12 slices; summary "
          f"{recovery:.1f}s after the kill")
    assert recovery < RECOVERY_BOUND


def test_cli_migrate_follow_shows_progress_that_moves_then_the_summary_table(seg_env, fleet):
    # Fetching lasts several of the CLI's 0.5 s looks even on a busy machine: 120 profiles,
    # three slices fetching 8 at a time, 600 ms each, take about 3 s (at 20 ms it was about
    # 1.3 s, and a slow CLI could look only before and after a slice).
    seg_env.admin.faults("segment", latency_ms=600)
    fleet.ensure()  # the shipped worker, with this test's settings
    env = {**os.environ, "COLUMNS": "160"}
    done = subprocess.run([sys.executable, "-m", "worker", "migrate", "--follow",
                           "--slice-size", "40", "--timeout", "90"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:] + out[-2000:]
    # Not a terminal: one line each time the figures change. They move as profiles are
    # fetched, within a slice of 40, not only when a slice ends.
    fetched = [int(n) for n in re.findall(r"^profiles fetched (\d+)/", out, re.M)]
    confirmed = [int(n) for n in re.findall(r"customers confirmed (\d+)/", out)]
    assert fetched == sorted(fetched) and fetched[-1] == PROFILES
    assert {n for n in fetched if n % 40} and len(set(confirmed)) >= 2
    # Both bars end at their total, skipped profiles (no identifier) counted as handled.
    assert confirmed == sorted(confirmed)
    assert re.findall(r"^profiles fetched .*$", out, re.M)[-1] == \
        f"profiles fetched {PROFILES}/{PROFILES}  customers confirmed {PROFILES}/{PROFILES}"
    world = seg_env.admin.world_profiles()
    identified = [p for p in world if user_id(p)]
    assert "Segment -> Voucherify run" in out
    assert "customers upserted" in out and f"│ {len(identified)}" in out
    assert "skipped (no identifier)" in out and "Skipped (" in out
    assert "Warnings by field:" in out and "birthdate" in out
    run_id = out.split("run ", 1)[1].split()[0]
    assert len(seg_env.admin.voucherify_customers()["customers"]) == len(identified)

    status = subprocess.run([sys.executable, "-m", "worker", "status", run_id, "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    shown = json.loads(status.stdout)
    assert shown["summary"]["customers_upserted"] == len(identified)
    assert shown["slices_total"] == shown["slices_done"] == 3


def test_cli_status_of_a_running_migration_is_a_table(seg_env, fleet):
    seg_env.admin.faults("segment", latency_ms=50)  # long enough to be asked while running
    run_id = start_run(fleet)
    wait_for(lambda: (state.progress(run_id) or {}).get("live", {}).get("profiles_fetched"),
             "the first profiles fetched", 60)
    done = subprocess.run([sys.executable, "-m", "worker", "status", run_id], cwd=ROOT,
                          env={**os.environ, "COLUMNS": "160"}, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and done.stderr == ""
    assert f"run {run_id} (running)" in done.stdout
    assert re.search(r"profiles fetched\s+│ [1-9]", done.stdout)
    assert "{" not in done.stdout  # a table, not a Python dict
    seg_env.admin.clear_faults("segment")
    wait_summary(run_id)


def test_migrate_answers_once_the_run_exists(seg_env, fleet):
    # It used to print a run id at once, which `status` then did not know (no worker yet).
    fleet.ensure()
    done = subprocess.run([sys.executable, "-m", "worker", "migrate", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    started = json.loads(done.stdout)
    assert done.returncode == 0 and started["status"] == "started"
    assert state.progress(started["run_id"]) is not None
    wait_summary(started["run_id"])
