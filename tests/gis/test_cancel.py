"""A GIS run cancelled on the engine (`GIS.cancel`, what `syncfleet` will call): its walks
read no more pages, its sync tasks not yet started send nothing, what runs finishes, and
the run ends `cancelled`; a scan puts its marks back. The same through `syncfleet cancel`.
The shipped worker, the sandbox."""

from __future__ import annotations

import time

import pytest

from tests.support import wait_for
from tests.support.cli import syncfleet_json
from tests.support.gis import Truth, assert_clean, scan, scope, wait_run, workspace
from worker.gis_sync import failed, state
from worker.gis_sync.run_state import GIS

PAGE = 10  # people per GIS page: the people walk takes 8 pages


def cancel_mid_walk(fleet, admin, task: str) -> dict:
    """Start `task` with slow GIS pages, cancel it once its first part is handed over;
    returns its summary."""
    admin.faults("gis", latency_ms=300)
    run_id = fleet.send_task(task, kwargs={}).get(timeout=60)["run_id"]
    wait_for(lambda: GIS.progress(run_id)["parts_launched"] >= 1, "a part handed over", 60)
    assert GIS.cancel(run_id)
    assert not GIS.cancel(run_id)  # cancelled already
    run = wait_run(run_id, timeout=60)
    admin.clear_faults("gis")
    return run


@pytest.fixture
def paged(gis_world, monkeypatch):
    monkeypatch.setenv("GIS_PAGE_SIZE", str(PAGE))
    return gis_world


def test_a_cancelled_scan_reads_no_more_and_puts_its_marks_back(fleet, paged):
    admin = paged.admin
    truth = Truth(admin)
    run = cancel_mid_walk(fleet, admin, "gis.scan")

    assert run["status"] == "cancelled" and run["kind"] == "scan"
    pages = GIS.walk(run["run_id"], "people")["pages"]
    assert pages < len(truth.valid_people()) // PAGE  # stopped before the list's end
    assert set(admin.customerio_profiles()["profiles"]) < truth.valid_people()
    assert state.marks(scope()) == {}  # a cold start's marks: back to none
    assert not state.has_baseline(scope()) and state.last_success(scope()) is None
    # The next scan is a cold start again, and syncs everyone.
    again = scan(fleet)
    assert again["status"] != "cancelled" and again["cold_start"] is True
    assert set(admin.customerio_profiles()["profiles"]) == truth.valid_people()
    assert_clean(admin)


def test_a_cancelled_backfill_ends_cancelled_and_keeps_no_failed_record(fleet, paged):
    admin = paged.admin
    truth = Truth(admin)
    run = cancel_mid_walk(fleet, admin, "gis.backfill")

    assert run["status"] == "cancelled" and run["kind"] == "backfill"
    assert set(admin.customerio_profiles()["profiles"]) < truth.valid_people()
    assert failed.sizes(workspace()) == {"failed": 0, "dead": 0}
    assert_clean(admin)


def test_syncfleet_cancel_stops_a_running_scan(fleet, gis_world, monkeypatch):
    """The operator's way: `syncfleet cancel RUN_ID --yes` on a scan under way. GIS is
    read no further than the page each walk had asked for, customer.io gets fewer than
    everyone, nothing reaches either once the run has ended, its summary says cancelled."""
    monkeypatch.setenv("GIS_PAGE_SIZE", "5")  # 16 slow pages: the CLI starts well within
    admin = gis_world.admin
    truth = Truth(admin)
    admin.faults("gis", latency_ms=500)
    run_id = fleet.send_task("gis.scan", kwargs={}).get(timeout=60)["run_id"]
    wait_for(lambda: GIS.progress(run_id)["parts_launched"] >= 1, "a part handed over", 60)
    code, answer = syncfleet_json("cancel", run_id, "--yes")
    cancelled_at = time.time()  # the cancel took effect before this
    assert code == 0, answer
    assert answer["status"] == "cancelled" and answer["job"] == "gis"
    run = wait_run(run_id, timeout=60)
    ended_at = time.time()
    admin.clear_faults("gis")

    assert run["status"] == "cancelled"
    walks = [s for s in ("people", "applications", "incoming") if GIS.walk(run_id, s)]
    late_reads = [r for r in admin.requests("gis") if r["ts"] > cancelled_at]
    assert len(late_reads) <= len(walks), late_reads  # at most the page each walk awaited
    identified = set(admin.customerio_profiles()["profiles"])
    assert identified < truth.valid_people()
    print(f"cancelled: {len(identified)} of {len(truth.valid_people())} people identified, "
          f"{len(late_reads)} GIS read(s) after the cancel, {run['parts']} part(s) reported")
    fleet.send_task("gis.runs").get(timeout=60)  # the gis queue has moved on since
    assert [r for r in admin.requests() if r["ts"] > ended_at] == []
    assert_clean(admin)
