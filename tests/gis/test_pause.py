"""The GIS schedule paused and resumed through `syncfleet gis pause|resume`, with the
shipped worker and the sandbox: while paused no scan starts (beat's task and `syncfleet
gis scan` alike: GIS and customer.io receive nothing), a backfill asked for by hand
still runs, and after the resume scans run again."""

from __future__ import annotations

from tests.support import wait_for
from tests.support.cli import syncfleet, syncfleet_json
from tests.support.gis import Truth, scan, wait_run
from worker import run_history


def test_a_paused_schedule_starts_no_scan_but_a_backfill_runs(fleet, gis_world):
    admin = gis_world.admin
    truth = Truth(admin)
    fleet.ensure()
    paused = syncfleet("gis", "pause", "--reason", "customer.io maintenance", "--by", "ci")
    assert paused.returncode == 0, paused.stderr
    admin.clear_requests()

    code, answer = syncfleet_json("gis", "scan", "--timeout", "60")
    assert code == 0 and answer["status"] == "skipped", answer
    assert answer["reason"].startswith("GIS sync paused since ") and "by ci" in answer["reason"]
    assert fleet.send_task("gis.scan").get(timeout=60)["status"] == "skipped"  # beat's way
    wait_for(lambda: fleet.log().count("gis.scan skipped: GIS sync paused since") >= 2,
             "the worker's log lines", 30)
    assert admin.requests() == [] and run_history.recent(5, job="gis") == []

    person = sorted(truth.valid_people())[0]  # an operator's backfill still runs
    started = fleet.send_task("gis.backfill", kwargs={"person_ids": [person]}).get(timeout=60)
    assert wait_run(started["run_id"])["people_seen"] == 1
    assert person in admin.customerio_profiles()["profiles"]

    code, resumed = syncfleet_json("gis", "resume")
    assert code == 0 and resumed["was"]["reason"] == "customer.io maintenance"
    assert scan(fleet)["kind"] == "scan"
    assert set(admin.customerio_profiles()["profiles"]) == truth.valid_people()
