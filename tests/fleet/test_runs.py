"""One run vocabulary for both jobs (worker/runs.py), on a real Redis, and the CLI that
lists both jobs' runs."""

from __future__ import annotations

import re

from tests.support.cli import syncfleet, syncfleet_json
from worker import runs

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_a_run_is_started_once_halted_with_its_first_reason_and_finished_once(redis_client):
    assert runs.start("gis", "r1", "scan", cold_start=True)
    assert not runs.start("gis", "r1", "scan")  # a second delivery: the run exists
    record = runs.get("gis", "r1")
    assert (record["status"], record["kind"], record["cold_start"]) == ("running", "scan", True)
    assert ISO.match(record["started_at"])
    runs.count("gis", "r1", {"people_seen": 3})
    runs.count("gis", "r1", {"people_seen": 2, "events_sent": 0})
    assert runs.get("gis", "r1")["people_seen"] == 5
    runs.halt("gis", "r1", "customerio: 401 check CUSTOMERIO_API_KEY")
    runs.halt("gis", "r1", "a later reason")
    assert runs.halted("gis", "r1") == "customerio: 401 check CUSTOMERIO_API_KEY"
    summary = {**runs.get("gis", "r1"), "status": runs.HALTED}
    assert runs.finish("gis", "r1", summary)
    assert not runs.finish("gis", "r1", {**summary, "status": "finished"})  # written once
    assert runs.summary("gis", "r1")["status"] == "halted"
    assert ISO.match(runs.get("gis", "r1")["finished_at"])


def test_status_words():
    assert runs.status_of(None, 0) == "finished"
    assert runs.status_of(None, 2) == "finished_with_errors"
    assert runs.status_of("401", 0) == "halted"


def test_recent_lists_both_jobs_newest_first(redis_client):
    runs.start("segment", "m1", "migration")
    runs.start("gis", "s1", "scan")
    runs.finish("gis", "s1", {"run_id": "s1", "status": "finished"})
    latest = runs.recent(10)
    assert [(r["job"], r["run_id"], r["status"]) for r in latest] == [
        ("gis", "s1", "finished"), ("segment", "m1", "running")]
    assert [r["run_id"] for r in runs.recent(10, job="segment")] == ["m1"]


def test_cli_runs_lists_both_jobs(redis_url, redis_client):
    runs.start("gis", "scan-1", "scan")
    runs.finish("gis", "scan-1", {"run_id": "scan-1", "kind": "scan",
                                  "status": "finished_with_errors"})
    runs.start("segment", "mig-1", "migration")
    code, shown = syncfleet_json("runs", REDIS_URL=redis_url)
    assert code == 0
    listed = {(r["job"], r["run_id"], r["status"]) for r in shown}
    assert listed == {("gis", "scan-1", "finished_with_errors"),
                      ("segment", "mig-1", "running")}
    table = syncfleet("runs", REDIS_URL=redis_url).stdout
    assert "scan-1" in table and "mig-1" in table and "finished_with_errors" in table
